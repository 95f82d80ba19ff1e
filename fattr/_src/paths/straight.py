"""Points on the straight line ``b + a * (x - b)`` for many alphas at once, folded step-major."""
from __future__ import annotations

import torch

from ..structure import Tensors


def line_points(alphas: torch.Tensor, bases: Tensors, diffs: Tensors) -> Tensors:
    """``(K, B, ...)`` per input: ``bases + alphas[k] * diffs`` (alphas in float64, cast to each input)."""
    return tuple(torch.addcmul(b, alphas.to(d.dtype).reshape((-1,) + (1,) * d.dim()), d)
                 for b, d in zip(bases, diffs))
