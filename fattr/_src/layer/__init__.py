"""Layer attribution: :func:`split` a model at a layer (``split``: captured by ``graph`` or ``export``, else
``substitute``), then attribute to the activation (``view``, and one module per method)."""
