"""IDGI (Yang et al., CVPR 2023): Integrated Decision Gradients, the gradient of every step of the
partition projected on its own direction, so that only the output change of that step is attributed."""
from __future__ import annotations

from typing import Any, Optional

import torch

from .. import structure
from ..arguments import boundary, tile_args
from ..base import ArgsLike, BaselinesLike, InputsLike, KwargsLike, ModelLike, TargetLike, WithDelta
from ..baselines import format_baselines
from ..delta import delta_at
from ..errors import check_bool, check_optional_positive_int, fail
from ..gradients import gradients, outputs
from ..path import accumulation_dtype, line_points
from ..quadrature import quadrature

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def idgi(f: ModelLike, inputs: InputsLike, baselines: BaselinesLike = None, n_steps: int = 50,
         method: str = "riemann_left", *, target: TargetLike = None, args: ArgsLike = (), kwargs: KwargsLike = None,
         chunk_size: Optional[int] = None, return_delta: bool = False) -> WithDelta:
    """Integrated Decision Gradients (Yang et al., CVPR 2023).

    The straight line from ``b`` to ``x`` is cut into segments ``[a_s, a_{s+1}]``; on each, the
    output change ``f(a_{s+1}) - f(a_s)`` is shared among the features in proportion to the squared
    gradient ``g`` at the segment's Riemann node (its projection on its own direction)::

        attr_i = sum_s g_{s,i}^2 / sum_j g_{s,j}^2 * (f(b + a_{s+1} (x - b)) - f(b + a_s (x - b)))

    ``riemann_left`` (the paper's rule) takes the gradient at the segment's start,
    ``riemann_right`` at its end, ``riemann_middle`` at its midpoint (``n_steps`` segments);
    ``riemann_trapezoid`` averages the projections at both ends of ``n_steps - 1`` segments.
    Completeness is exact for every rule: the attributions sum to ``f(x) - f(b)`` (a step
    whose gradient is zero everywhere gets nothing). All gradient nodes of all examples go
    through one batched forward and backward pass (``chunk_size`` nodes at a time), the
    partition's outputs through one forward pass.

    Args:
      f, inputs, baselines: as in :func:`fattr.integrated_gradients` (the projection runs over all the
        inputs' features).
      n_steps: number of gradient nodes (>= 1; >= 2 for ``riemann_trapezoid``).
      method: ``"riemann_left"`` (default), ``"riemann_right"``, ``"riemann_middle"`` or
        ``"riemann_trapezoid"``.
      target, args, kwargs: as in :func:`fattr.integrated_gradients`.
      chunk_size: evaluate at most this many path points (each a batch of B rows) at once.
      return_delta: also return the completeness delta per example (zero up to rounding).

    Returns:
      Attributions shaped like ``inputs``; with ``return_delta``, ``(attributions, delta)``.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
      >>> x = torch.randn(4, 3, dtype=torch.float64)
      >>> attr, delta = fattr.idgi(model, x, target=1, n_steps=16, return_delta=True)
      >>> attr.shape, bool(delta.abs().max() < 1e-12)      # exact completeness
      (torch.Size([4, 3]), True)

    References:
      Yang, Wang, Bilen. "IDGI: A Framework to Eliminate Explanation Noise from Integrated
      Gradients". CVPR 2023.
    """
    xs, was_tuple, tgt, args = boundary(f, inputs, target, args, kwargs)
    check_bool("return_delta", return_delta)
    chunk_size = check_optional_positive_int("chunk_size", chunk_size)
    if not isinstance(method, str):
        fail("method", "one of " + ", ".join(repr(r) for r in RULES), method, kind=TypeError)
    if method not in RULES:
        fail("method", "a Riemann rule: one of " + ", ".join(repr(r) for r in RULES), method,
             "IDGI needs a partition of the path; Gauss-Legendre nodes do not make one.")
    trapezoid = method == "riemann_trapezoid"
    if trapezoid and isinstance(n_steps, int) and not isinstance(n_steps, bool) and n_steps < 2:
        fail("n_steps", "at least 2 for riemann_trapezoid (one segment between two nodes)", n_steps)
    bases = format_baselines(baselines, xs)
    n, device = xs[0].shape[0], xs[0].device
    alphas, _ = quadrature(method, n_steps, device=device)
    if n == 0:  # checked like any batch, then nothing to compute
        return structure.empty_result(xs, was_tuple, return_delta)
    partition = alphas if trapezoid else torch.linspace(0.0, 1.0, n_steps + 1, dtype=torch.float64, device=device)
    diffs = tuple(x - b for x, b in zip(xs, bases))
    acc = accumulation_dtype(xs[0].dtype)
    step = n_steps + 1 if chunk_size is None else chunk_size

    values = []  # f at the partition points, (S + 1, B)
    for a in torch.split(partition, step):
        rows = tuple(structure.fold(p) for p in line_points(a, bases, diffs))
        values.append(outputs(f, rows, tgt.tile(a.shape[0]), tile_args(args, n, a.shape[0])).reshape(-1, n))
    change = torch.cat(values).to(acc).diff(dim=0)  # (S, B): f(a_{s+1}) - f(a_s)
    if trapezoid:  # node k closes segment k - 1 and opens segment k, half of each
        zero = change.new_zeros((1, n))
        change = 0.5 * (torch.cat([zero, change]) + torch.cat([change, zero]))

    total: Any = (0,) * len(xs)  # per input, the sum over the chunks
    for a, d in zip(torch.split(alphas, step), torch.split(change, step)):
        k = a.shape[0]
        pts = line_points(a, bases, diffs)
        grads = gradients(f, tuple(structure.fold(p) for p in pts), tgt.tile(k), tile_args(args, n, k))
        squares = tuple(structure.unfold(g, k).to(acc) ** 2 for g in grads)
        norm = sum(s.reshape(k, n, -1).sum(-1) for s in squares)  # (k, B)
        assert isinstance(norm, torch.Tensor)
        nonzero = norm > 0
        scale = torch.where(nonzero, d / torch.where(nonzero, norm, torch.ones_like(norm)), torch.zeros_like(norm))
        terms = tuple((s * scale.reshape(scale.shape + (1,) * (s.dim() - 2))).sum(0) for s in squares)
        total = tuple(t + u for t, u in zip(total, terms))
    attr = tuple(t.to(x.dtype) for t, x in zip(total, xs))
    result = structure.restore(attr, was_tuple)
    return (result, delta_at(f, xs, bases, attr, tgt, args)) if return_delta else result
