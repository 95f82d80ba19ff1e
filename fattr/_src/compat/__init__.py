"""Captum-compatible classes over fattr's functions (public as :mod:`fattr.captum`)."""
