"""Implementation of :mod:`fattr.metrics`: every perturbation batched, differentiable where defined."""
