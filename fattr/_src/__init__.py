"""fattr's implementation. The public API is re-exported by ``fattr/__init__.py``."""
