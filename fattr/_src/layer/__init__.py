"""Layer attribution: :func:`split` a model at a layer, then attribute to the activation.

Each module holds one concept: ``resolve`` (which modules ``layer`` names),
``graph`` (the split from the model's torch.fx graph), ``substitute`` (the
fallback split for models fx cannot trace), ``split`` (the public entry),
``view`` (a split as a function of the activation for the core engine) and one
module per method.
"""
