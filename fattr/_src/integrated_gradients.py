"""Integrated Gradients: the path integral on the straight line from baseline to input."""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch

from . import structure
from .arguments import boundary
from .base import ArgsLike, BaselinesLike, InputsLike, KwargsLike, ModelLike, TargetLike, WithDelta
from .baselines import format_baselines
from .delta import delta_at
from .errors import check_bool, check_optional_positive_int
from .path import accumulation_dtype, at, line_points, weighted_gradient_sum
from .quadrature import Method, rule
from .structure import Tensors
from .targets import Target


def integrated_gradients(f: ModelLike, inputs: InputsLike, baselines: BaselinesLike = None, n_steps: int = 50,
                         method: Method = "gausslegendre", *, target: TargetLike = None, args: ArgsLike = (),
                         kwargs: KwargsLike = None, chunk_size: Optional[int] = None, multiply_by_inputs: bool = True,
                         return_delta: bool = False) -> WithDelta:
    """Integrated Gradients (Sundararajan et al., 2017).

    ``attr_i = (x_i - b_i) * sum_k w_k * d f(b + a_k (x - b)) / d x_i`` with the
    quadrature rule ``method``. The ``n_steps`` path points of every example are
    evaluated in one batched forward and backward pass (or ``chunk_size`` points
    at a time); results do not depend on ``chunk_size``.

    Args:
      f: callable ``f(*inputs, *args)`` returning a tensor with examples along dim 0.
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      baselines: ``None`` (zeros), a number, a tensor shaped like the input or
        with a batch of 1, or a tuple of these (one per input).
      n_steps: number of quadrature nodes (>= 1).
      method: ``"gausslegendre"``, ``"riemann_left"``, ``"riemann_right"``,
        ``"riemann_middle"``, ``"riemann_trapezoid"`` (textbook weights, summing to
        1; Captum's are ``(n-1)/n`` of these), or a callable ``n_steps -> (alphas, weights)``.
      target: the output to attribute: None, int, tuple, or one entry per example.
      args: extra arguments of ``f``; tensors with B rows stay paired with their example.
      chunk_size: evaluate at most this many path points (each a batch of B rows) at once.
      multiply_by_inputs: if False, return the path-averaged gradient (local attribution).
      return_delta: also return the completeness delta per example.

    Returns:
      Attributions shaped like ``inputs``; with ``return_delta``, ``(attributions, delta)``.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
      >>> x = torch.randn(4, 3)
      >>> attr, delta = fattr.integrated_gradients(model, x, target=1, return_delta=True)
      >>> attr.shape, delta.shape
      (torch.Size([4, 3]), torch.Size([4]))
    """
    xs, was_tuple, tgt, args = boundary(f, inputs, target, args, kwargs)
    structure.require_floating(xs)
    chunk_size = check_optional_positive_int("chunk_size", chunk_size)
    check_bool("multiply_by_inputs", multiply_by_inputs)
    check_bool("return_delta", return_delta)
    bases = format_baselines(baselines, xs)
    attr = integrate(f, xs, bases, n_steps, method, tgt, args, chunk_size, multiply_by_inputs)
    result = structure.restore(attr, was_tuple)
    return (result, delta_at(f, xs, bases, attr, tgt, args)) if return_delta else result


def integrate(f: Callable[..., Any], xs: Tensors, bases: Tensors, n_steps: int, method: Method, tgt: Target,
              args: Tuple[Any, ...], chunk_size: Optional[int], multiply_by_inputs: bool) -> Tensors:
    """:func:`integrated_gradients` of checked arguments (its callers checked them: layer IG calls it on the
    tail with every call): flat attributions, one per input."""
    device, dtype = xs[0].device, xs[0].dtype  # the nodes in the inputs' dtype, the weights in the sum's:
    one = all(x.dtype == dtype for x in xs)    # cast once (cached), not per chunk; mixed dtypes: float64
    alphas, weights = rule(method, n_steps, dtype=dtype if one else torch.float64, device=device,
                           weights_dtype=accumulation_dtype(dtype, device) if one else torch.float64)
    diffs = tuple(x - b for x, b in zip(xs, bases))

    def points(steps: slice, ends: Tensors) -> Tuple[Tensors, Optional[Tensors]]:
        k = len(ends) // 2
        return tuple(map(structure.fold, line_points(at(alphas, steps), ends[:k], ends[k:]))), None

    grads = weighted_gradient_sum(f, points, bases + diffs, alphas.shape[0], weights, target=tgt, args=args,
                                  n_examples=xs[0].shape[0], chunk_size=chunk_size)
    if multiply_by_inputs:
        return tuple((g * d).to(x.dtype) for g, d, x in zip(grads, diffs, xs))  # in g's (the sum's) dtype
    return tuple(g.to(x.dtype) for g, x in zip(grads, xs))
