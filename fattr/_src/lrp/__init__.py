"""Layer-wise relevance propagation: rules (:mod:`.rules`), which module gets which (:mod:`.plan`), the rules
swapped in for the layers' operations (:mod:`.propagation`), the methods (:mod:`.lrp`)."""
