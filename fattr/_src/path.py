"""The path integral: ``attr_i = sum_k w_k * d f(gamma(a_k)) / d x_i * gamma_i'(a_k)``.

:func:`weighted_gradient_sum` is the engine every path method shares: the path
points of a chunk of steps, folded into dim 0 next to the examples, get one
batched gradient per chunk (:mod:`.gradients`), and it accumulates the weighted sum.
There is no Python loop over steps; with ``chunk_size`` there is one over chunks,
so memory follows ``chunk_size``, not ``n_steps``. :func:`path_attribution` is the
public primitive for any differentiable path (velocity by ``torch.func.jvp``).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch

from .base import ArgsLike, KwargsLike, ModelLike, PointsFn, TargetLike, WithDelta
from . import structure
from .arguments import as_args, tile_args
from .errors import check_bool, check_optional_positive_int, check_callable, fail
from .gradients import gradient_pass
from .recompute import checkpoint, reads
from .quadrature import Method, rule
from .structure import Tensors, TensorOrTensors
from .targets import Target, as_target


def accumulation_dtype(dtype: torch.dtype, device: Optional[torch.device] = None) -> torch.dtype:
    """The dtype of every sum over steps, samples or baselines: float64 for float32 values (a float32
    sum of ``n`` terms loses ~``n * 6e-8`` relative accuracy: 5e-5 at 10 000 steps) on devices with
    float64 (not MPS), float32 for half-precision values, the values' own dtype otherwise. The result
    is cast back by the caller."""
    if dtype is torch.float32:
        return torch.float32 if device is not None and getattr(device, "type", device) == "mps" else torch.float64
    return torch.float32 if dtype is torch.float16 or dtype is torch.bfloat16 else dtype


def line_points(alphas: torch.Tensor, bases: Tensors, diffs: Tensors) -> Tensors:
    """``(K, B, ...)`` per input: ``bases + alphas[k] * diffs`` (alphas cast to each input's dtype)."""
    return tuple(torch.addcmul(b, (alphas if alphas.dtype is d.dtype else alphas.to(d.dtype)).reshape(
        (-1,) + (1,) * d.dim()), d) for b, d in zip(bases, diffs))


def at(values: torch.Tensor, steps: slice) -> torch.Tensor:
    """``values[steps]`` (a chunk's nodes or weights); ``values`` itself when that is all of them (one chunk)."""
    return values if steps.start == 0 and steps.stop == values.shape[0] else values[steps]


def weighted_gradient_sum(f: Callable[..., Any], points: PointsFn, tensors: Tensors, n_steps: int,
                          weights: Optional[torch.Tensor], *, target: Target, args: Tuple[Any, ...],
                          n_examples: int, chunk_size: Optional[int]) -> Tensors:
    """``sum_k weights[k] * grad f(points(k)) [* velocity(k)]`` over ``n_steps`` steps (``weights`` None: a
    plain sum), chunked over k.

    ``points(steps, tensors)`` builds the path points of the steps ``steps`` (a ``slice``) from ``tensors``
    (the inputs, the baselines: whatever the result is differentiated with respect to), folded into rows
    (:func:`.structure.fold`), and their velocities shaped like them or None, under the chunk's grad mode:
    without grad in a graph-free pass (a path that closes over other tensors enables grad to build them,
    and names what they read: :func:`.recompute.reads`). Each chunk's share is computed without a graph
    and is differentiable on demand (:mod:`.recompute`), so memory follows ``chunk_size`` whether or not
    the result is differentiated later. Returned per input in the accumulation dtype, shaped ``(B, ...)``.
    """
    step = n_steps if chunk_size is None else chunk_size
    total: Tensors = ()
    for start in range(0, n_steps, step):
        def chunk(inputs: Tensors, rest: Tuple[Any, ...],
                  steps: slice = slice(start, min(start + step, n_steps))) -> Tensors:
            k = steps.stop - steps.start
            rows, vel, *carried = points(steps, inputs)  # carried: per-row args (a split's rest)
            per_row = tuple(carried[0]) if carried else ()
            grads = gradient_pass(f, tuple(rows), target.tile(k), tile_args(rest, n_examples, k) + per_row)
            terms = []
            for i, g in enumerate(grads):
                acc = accumulation_dtype(g.dtype, g.device)
                if vel is not None:  # the product in the values' dtype, at least float32 (half: in the sum's)
                    g = (g if g.dtype.itemsize >= 4 else g.to(acc)) * vel[i]
                # the weighted sum over steps as one product (BLAS: a broadcast product and a sum over a
                # mixed-dtype (k, B, ...) tensor costs 2-4x more at a real model's sizes); unweighted: ones
                w = (at(weights, steps).to(g.device, acc) if weights is not None
                     else torch.ones(k, dtype=acc, device=g.device))
                terms.append(torch.mm(w.reshape(1, k), g.reshape(k, -1).to(acc))
                             .reshape((g.shape[0] // k,) + g.shape[1:]))
            return tuple(terms)

        terms = checkpoint(chunk, tensors, args=args, module=f, traceable=True,
                           memory_first=chunk_size is not None)  # chunked: memory first, whatever the mode
        total = terms if start == 0 else tuple(t + s for t, s in zip(total, terms))
    return total


def path_attribution(f: ModelLike, path: Callable[[torch.Tensor], TensorOrTensors], n_steps: int = 50,
                     method: Method = "gausslegendre", *, target: TargetLike = None, args: ArgsLike = (),
                     kwargs: KwargsLike = None, chunk_size: Optional[int] = None,
                     return_delta: bool = False) -> WithDelta:
    """Attributions along any differentiable path: ``sum_k w_k * grad f(path(a_k)) * path'(a_k)``.

    The general path integral, for research on new path methods. ``path(alpha)``
    takes a 0-d tensor in [0, 1] and returns a point: a tensor (or tuple of
    tensors) shaped like the inputs, examples along dim 0. fattr vectorises over
    the alphas with ``torch.func.vmap`` and gets the velocity ``path'(alpha)`` by
    forward-mode AD (``torch.func.jvp``). Completeness:
    ``sum(attributions) == f(path(1)) - f(path(0))`` up to quadrature error.

    Args:
      f: callable ``f(*inputs, *args) -> (B, ...)`` tensor, examples along dim 0.
      path: ``alpha -> point``; must be differentiable in ``alpha`` and vmap-compatible.
      n_steps: number of quadrature nodes.
      method: quadrature rule name (see :func:`fattr.quadrature`) or a callable
        ``n_steps -> (alphas, weights)``.
      target: which output to attribute (see the README's target grammar).
      args: extra positional arguments of ``f``; tensors with B rows are paired with their example.
      chunk_size: at most this many path points are evaluated at once (memory bound).
      return_delta: also return ``sum(attr) - (f(path(1)) - f(path(0)))`` per example.

    Returns:
      Attributions shaped like ``path(alpha)``; with ``return_delta``, ``(attributions, delta)``.

    Example:
      >>> import torch, fattr
      >>> f = lambda x: (x ** 2).sum(1)
      >>> x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
      >>> curve = lambda a: x * a ** 2          # a non-straight path from 0 to x
      >>> attr = fattr.path_attribution(f, curve, n_steps=8)
      >>> [round(v, 12) for v in attr[0].tolist()]   # completeness: sums to f(x) - f(0) = 5
      [1.0, 4.0]
    """
    check_callable("f", f)
    check_callable("path", path)
    chunk_size = check_optional_positive_int("chunk_size", chunk_size)
    check_bool("return_delta", return_delta)
    args = as_args(args, kwargs)
    alphas, weights = rule(method, n_steps)
    with torch.no_grad():  # only to learn the point's structure, shape, dtype and device
        probe = path(torch.zeros((), dtype=torch.float64))
    probe_t, was_tuple = structure.as_tuple(probe, "path(alpha)")
    dtype, device, n = probe_t[0].dtype, probe_t[0].device, probe_t[0].shape[0]
    tgt = as_target(target, n, device)

    def tangent_point(alpha: torch.Tensor) -> Tuple[Tensors, Tensors]:
        result = torch.func.jvp(path, (alpha,), (torch.ones_like(alpha),))
        point, velocity = result[0], result[1]
        return structure.as_tuple(point, "path(alpha)")[0], structure.as_tuple(velocity, "path'(alpha)")[0]

    def points(steps: slice, _: Tensors) -> Tuple[Tensors, Tensors]:
        with torch.enable_grad():  # path may close over tensors that require grad
            pts, vel = torch.func.vmap(tangent_point)(at(alphas, steps).to(device=device))
        reads(*pts, *vel)  # their graphs name what they read
        for p, ref in zip(pts, probe_t):
            if p.shape[1:] != ref.shape:
                fail("path", f"points of one shape for every alpha, {tuple(ref.shape)}", p[0])
        return tuple(map(structure.fold, pts)), tuple(map(structure.fold, vel))

    attr = weighted_gradient_sum(f, points, (), alphas.shape[0], weights, target=tgt, args=args, n_examples=n,
                                 chunk_size=chunk_size)
    attr = tuple(a.to(dtype) for a in attr)
    result = structure.restore(attr, was_tuple)
    if not return_delta:
        return result
    from .delta import completeness_delta
    start = path(torch.zeros((), dtype=torch.float64, device=device))
    end = path(torch.ones((), dtype=torch.float64, device=device))
    return result, completeness_delta(f, end, start, result, target=target, args=args)
