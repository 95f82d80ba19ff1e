"""Dataset-scale attribution (:func:`fattr.attribute_dataset`): a whole dataset through one method, sharded
over ranks, into an on-disk store; one concept per module, each saying which in its first line."""
