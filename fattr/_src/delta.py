"""Completeness delta: how far attributions are from summing to ``f(x) - f(baseline)``."""
from __future__ import annotations

from typing import Any, Sequence, Tuple

import torch

from . import structure
from .arguments import boundary, tile_args
from .base import ArgsLike, Attributions, BaselinesLike, InputsLike, KwargsLike, ModelLike, TargetLike
from .baselines import format_baselines
from .gradients import outputs
from .targets import Target


def completeness_delta(f: ModelLike, inputs: InputsLike, baselines: BaselinesLike, attributions: Attributions, *,
                       target: TargetLike = None, args: ArgsLike = (), kwargs: KwargsLike = None) -> torch.Tensor:
    """Per example: ``sum(attributions) - (f(inputs) - f(baselines))`` at the target.

    Zero for a method that satisfies completeness exactly; for path methods it is
    the quadrature error. Sums run in float64 (float32 for half inputs are upcast too).

    Args:
      f: the attributed callable.
      inputs, baselines: as given to the attribution method (baselines per the usual grammar).
      attributions: a tensor or tuple of tensors shaped like ``inputs``.
      target, args: as given to the attribution method.

    Returns:
      A tensor of shape ``(B,)``.

    Example:
      >>> import torch, fattr
      >>> w = torch.tensor([1.0, -2.0, 3.0])
      >>> f = lambda x: x @ w
      >>> x = torch.ones(4, 3)
      >>> attr = fattr.integrated_gradients(f, x)
      >>> fattr.completeness_delta(f, x, None, attr).abs().max() < 1e-6
      tensor(True)
    """
    xs, was_tuple, tgt, args = boundary(f, inputs, target, args, kwargs)
    attrs = structure.like_inputs(attributions, xs, was_tuple)
    return delta_at(f, xs, format_baselines(baselines, xs), attrs, tgt, args)


def delta_at(f: ModelLike, xs: Sequence[torch.Tensor], bases: Sequence[torch.Tensor],
             attributions: Sequence[torch.Tensor], target: Target, args: Tuple[Any, ...]) -> torch.Tensor:
    """:func:`completeness_delta` of normalised arguments (``attributions`` of any shapes): one forward
    over the inputs and baselines together."""
    n = xs[0].shape[0]
    rows = tuple(torch.cat([x, b.expand_as(x)]) for x, b in zip(xs, bases))
    out = outputs(f, rows, target.tile(2), tile_args(args, n, 2)).to(torch.float64)
    return row_totals(attributions) - (out[:n] - out[n:])


def row_totals(attributions: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(N,)`` float64: each row's attributions summed over every tensor and element (the left side of
    completeness, ``sum(attr) = f(x) - f(baseline)``)."""
    zero = torch.zeros(attributions[0].shape[0], dtype=torch.float64, device=attributions[0].device)
    return sum((structure.flat(a).to(torch.float64).sum(1) for a in attributions), zero)
