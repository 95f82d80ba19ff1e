"""Guided Integrated Gradients (Kapishnikov et al., CVPR 2021), batched over examples.

The path is built as it is walked: at every step the features whose gradient is smallest move
towards the input first, within ``max_dist`` of the straight line. Steps are sequential by
definition (each depends on the gradient at the point the last one reached); every step is one
gradient pass over all examples, and the selection runs on all examples at once. A step's number
of selection passes depends on the values: under ``torch.compile`` they are a ``while_loop`` that
makes only the discrete choices, from which the step's positions are then recomputed with autograd.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Tuple

import torch
from torch._higher_order_ops.while_loop import while_loop

from .. import structure
from ..arguments import boundary
from ..base import (ArgsLike, BaselinesLike, InputsLike, KwargsLike, ModelLike, TargetLike, Tensor, Tensors,
                    WithDelta)
from ..baselines import format_baselines
from ..compiled import dynamo_tracing
from ..delta import delta_at
from ..errors import check_bool, check_number, check_positive_int
from ..gradients import gradients

EPSILON = 1e-9  # PAIR's tolerance on the L1 distance reached by a step
STUCK = "guided_integrated_gradients: a step did not reach its L1 target"
State = Tuple[Tensor, ...]


def _passes(one_pass: Callable[..., State], state: State, limit: int) -> State:
    """``state = one_pass(*state)`` while an example is active (``state[-1]``), at most ``limit`` times: under
    Dynamo a ``while_loop`` (one traced body, not a graph break per pass), eagerly a Python loop."""
    if dynamo_tracing():  # the loop also carries a pass counter
        _, *out = while_loop(lambda i, *s: s[-1].any() & (i < limit), lambda i, *s: (i + 1, *one_pass(*s)),
                             (torch.zeros((), dtype=torch.int64, device=state[0].device), *state))
        torch._assert_async(~out[-1].any(), STUCK)
        return tuple(out)
    for _ in range(limit):
        if not bool(state[-1].any()):
            return state
        state = one_pass(*state)
    raise RuntimeError(STUCK)  # NaN gradients select nothing


def _select(kth: int, x: Tensor, grad: Tensor, active: Tensor, end: Tensor, x_max: Tensor, l1_target: Tensor
            ) -> State:
    """A step's selection passes (PAIR's) from ``x`` (behind features already at ``x_min``), without a graph:
    where a feature ends the step at ``x_max``, and where the last pass moved it part of the way there.
    Every pass moves at least one feature to ``x_max``, or ends its example's step."""
    inf, magnitude = torch.tensor(math.inf, dtype=x.dtype, device=x.device), grad.abs()

    def one_pass(x: Tensor, reached: Tensor, partial: Tensor, active: Tensor) -> State:
        l1_current = (x - end).abs().sum(1)
        scale = torch.maximum(l1_target.abs(), l1_current.abs())
        moving = active & ~((l1_target - l1_current).abs() <= torch.clamp(EPSILON * scale, min=EPSILON))
        masked = torch.where(x == x_max, inf, magnitude)
        threshold = masked.kthvalue(kth + 1, dim=1, keepdim=True).values  # O(D), not a sort
        selected = (masked <= threshold) & (masked != inf) & moving[:, None]
        l1_s = ((x - x_max).abs() * selected).sum(1)
        # the step size gamma > 1 (infinite with nothing to move): the selected reach x_max, the step goes on
        far = (((l1_current - l1_target) / l1_s > 1.0) | (l1_s == 0))[:, None]
        hit = selected & far
        return torch.where(hit, x_max, x), reached | hit, partial | (selected & ~far), moving & far[:, 0]

    # separate tensors: a while_loop's carried state must not alias
    start = (x, torch.zeros_like(x, dtype=torch.bool), torch.zeros_like(x, dtype=torch.bool), active)
    return _passes(one_pass, start, x.shape[1] + 2)[1:3]


def guided_integrated_gradients(f: ModelLike, inputs: InputsLike, baselines: BaselinesLike = None, n_steps: int = 200,
                                *, fraction: float = 0.25, max_dist: float = 0.02, target: TargetLike = None,
                                args: ArgsLike = (), kwargs: KwargsLike = None,
                                return_delta: bool = False) -> WithDelta:
    """Guided Integrated Gradients (Kapishnikov et al., CVPR 2021), PAIR ``saliency``'s definition.

    The path starts at the baseline ``b`` and reaches the input ``x`` in ``n_steps`` steps; step
    ``k`` brings the L1 distance to ``x`` down to ``(1 - k / n_steps) * |x - b|_1`` by moving, again
    and again, the ``fraction`` of the features with the smallest absolute gradient towards ``x``,
    no feature more than ``max_dist`` (in relative path position) ahead of the straight line's
    ``alpha = k / n_steps`` and none behind it by more. The attribution is the left Riemann sum
    along that path, ``attr = sum_k (p_{k+1} - p_k) * grad f(p_k)``: it sums to ``f(x) - f(b)`` up
    to that sum's discretisation error. ``max_dist=0`` is IG on the straight line (left rule).

    Each step is one gradient pass over all examples at once (the steps themselves are sequential);
    the features of all inputs of a tuple are selected together.

    Args:
      f, inputs, baselines: as in :func:`fattr.integrated_gradients`.
      n_steps: number of steps (gradient passes), PAIR's ``x_steps``.
      fraction: share of the features (those with the smallest absolute gradient) moved per
        selection, in [0, 1].
      max_dist: how far (relative L1 path position, in [0, 1]) a feature may move away from the
        straight line; 1 is unbounded Guided IG.
      target, args, kwargs: as in :func:`fattr.integrated_gradients`.
      return_delta: also return the completeness delta ``sum(attr) - (f(x) - f(b))`` per example.

    Returns:
      Attributions shaped like ``inputs``; with ``return_delta``, ``(attributions, delta)``.

    Example:
      >>> import torch, fattr
      >>> g = torch.Generator().manual_seed(0)
      >>> w = torch.randn(6, 2, dtype=torch.float64, generator=g)
      >>> f, x = lambda x: torch.tanh(x @ w), torch.randn(3, 6, dtype=torch.float64, generator=g)
      >>> attr, delta = fattr.guided_integrated_gradients(f, x, n_steps=100, target=0, return_delta=True)
      >>> bool(delta.abs().max() < 0.1)   # completeness, up to the left Riemann sum's error (order 1 / n_steps)
      True
      >>> straight = fattr.integrated_gradients(f, x, n_steps=100, method="riemann_left", target=0)
      >>> torch.allclose(fattr.guided_integrated_gradients(f, x, n_steps=100, max_dist=0.0, target=0), straight)
      True

    References:
      Kapishnikov, Venugopalan, Avci, Wedin, Terry, Bolukbasi. "Guided Integrated Gradients: an
      Adaptive Path Method for Removing Noise". CVPR 2021.
    """
    xs, was_tuple, tgt, args = boundary(f, inputs, target, args, kwargs)
    check_bool("return_delta", return_delta)
    n_steps = check_positive_int("n_steps", n_steps)
    fraction, max_dist = (check_number(name, value, "a number in [0, 1]", lambda v: not 0.0 <= v <= 1.0)
                          for name, value in (("fraction", fraction), ("max_dist", max_dist)))
    bases = format_baselines(baselines, xs)
    n = xs[0].shape[0]
    if n == 0:  # checked like any batch, then nothing to compute
        return structure.empty_result(xs, was_tuple, return_delta)
    sizes = [structure.example_size(x) for x in xs]

    def flat(ts: Any) -> torch.Tensor:
        return torch.cat([t.reshape(n, -1) for t in ts], 1)

    def unflat(v: torch.Tensor) -> Tensors:
        return tuple(p.reshape(x.shape).to(x.dtype) for p, x in zip(v.split(sizes, 1), xs))

    dtype = torch.float64  # the path is walked in float64, as PAIR does; f sees each input's own dtype
    end = flat(xs).to(dtype)
    start = flat(tuple(b.expand_as(x) for b, x in zip(bases, xs))).to(dtype)
    total_diff = end - start
    l1_total = total_diff.abs().sum(1)  # (B,)
    live = l1_total != 0  # an input equal to its baseline gets zeros
    kth = int(math.floor(fraction * (end.shape[1] - 1)))  # numpy's quantile(..., interpolation="lower")
    on_line = total_diff != 0
    safe_diff = torch.where(on_line, total_diff, 1.0)
    x = start
    attr = torch.zeros_like(end)
    for step in range(n_steps):
        grad = flat(gradients(f, unflat(x), tgt, args)).to(dtype)
        alpha = (step + 1.0) / n_steps
        alpha_min, alpha_max = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
        x_min, x_max = start + total_diff * alpha_min, start + total_diff * alpha_max
        l1_target = l1_total * (1 - (step + 1) / n_steps)
        # the choices (behind the line, moved by the passes) are made without a graph, the positions
        # then recomputed from them: differentiable, with no autograd through the while_loop
        behind = torch.where(on_line, (x - start) / safe_diff, alpha_max) < alpha_min
        x_new = torch.where(behind, x_min, x)  # (an example equal to its baseline has no feature behind)
        reached, partial = _select(kth, *(t.detach() for t in (x_new, grad, live, end, x_max, l1_target)))
        x_new = torch.where(reached, x_max, x_new)
        l1_s = ((x_new - x_max).abs() * partial).sum(1)
        gamma = ((x_new - end).abs().sum(1) - l1_target) / torch.where(l1_s > 0, l1_s, 1.0)
        x_new = torch.where(partial, x_new + (x_max - x_new) * gamma[:, None], x_new)
        attr = attr + (x_new - x) * grad
        x = x_new
    attrs = unflat(attr)
    result = structure.restore(attrs, was_tuple)
    return (result, delta_at(f, xs, bases, attrs, tgt, args)) if return_delta else result
