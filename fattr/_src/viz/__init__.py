"""Implementation of :mod:`fattr.viz`; matplotlib is imported only when a picture is drawn."""
