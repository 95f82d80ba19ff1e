"""The rescale rule as autograd functions with two backward modes.

Each covered nonlinearity of the inputs' forward pass becomes an ``autograd.Function``
whose forward is the op itself (same values) and whose backward depends on a flag of
the attribution call that created it (:class:`Phase`):

* while fattr computes the multipliers (``phase.multipliers`` is True), the backward is
  DeepLift's: the linear map of the rule, built from coefficients computed beforehand
  from the input ``x`` and the baseline's input ``ref`` (the rescale slope
  ``(f(x) - f(ref)) / (x - ref)``, the max-pool and softmax rules' terms);
* afterwards (an outer backward through the attributions), it is the op's true
  derivative.

The coefficients are ordinary tensors computed outside the function, with the graph
to the parameters when the result must be differentiable, and the multipliers'
backward is written in differentiable operations. So ``create_graph`` makes the
multipliers exact functions of the parameters, inputs and baselines: an outer backward
differentiates through the coefficients, and through the forward values with the true
derivatives.

Where ``|x - ref| < eps`` the multiplier is the op's own gradient at ``x`` (Captum's rule).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch

from .catalog import Call

Tensor = torch.Tensor


class Phase:
    """Which backward the rule functions of one attribution call use (``multipliers``: DeepLift's)."""

    def __init__(self) -> None:
        self.multipliers = True


def _safe(d_in: Tensor, small: Tensor) -> Tensor:
    return d_in.masked_fill(small, 1)


# ------------------------------------------------------------------ elementwise: the rescale rule

class _Elementwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, phase: Phase, call: Call, x: Tensor, out: Tensor, slope: Tensor) -> Tensor:
        ctx.phase, ctx.call = phase, call
        ctx.save_for_backward(x, slope)
        return out.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Any, ...]:
        x, slope = ctx.saved_tensors
        if ctx.phase.multipliers:
            return None, None, grad * slope, None, None
        return None, None, grad * ctx.call.deriv(x, ctx.call.op(x)), None, None


def elementwise(phase: Phase, call: Call, x: Tensor, ref: Tensor, ref_out: Optional[Tensor], graph: bool,
                eps: float) -> Tensor:
    """Multiplier ``(f(x) - f(ref)) / (x - ref)`` per element."""
    a = x if graph else x.detach()
    f_a = call.op(a)
    f_ref = call.op(ref) if ref_out is None else ref_out
    d_in = a - ref
    small = d_in.abs() < eps
    assert call.deriv is not None
    slope = torch.where(small, call.deriv(a, f_a), (f_a - f_ref) / _safe(d_in, small))
    return _Elementwise.apply(phase, call, x, f_a, slope)


# ------------------------------------------------------------------ softmax

class _Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, phase: Phase, dim: int, x: Tensor, s: Tensor, slope: Tensor, small: Tensor) -> Tensor:
        ctx.phase, ctx.dim, ctx.dtype = phase, dim, x.dtype
        ctx.save_for_backward(s, slope, small)
        return s.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Any, ...]:
        s, slope, small = ctx.saved_tensors
        dim = ctx.dim
        g = grad.to(s.dtype)
        true = s * (g - (s * g).sum(dim, keepdim=True))  # the softmax's own vector-Jacobian product
        if not ctx.phase.multipliers:
            return None, None, true.to(ctx.dtype), None, None, None
        u = torch.where(small, true, slope * g)
        u = u - u.mean(dim, keepdim=True)
        return None, None, u.to(ctx.dtype), None, None, None


def softmax(phase: Phase, call: Call, x: Tensor, ref: Tensor, ref_out: Optional[Tensor], graph: bool,
            eps: float) -> Tensor:
    """Captum's softmax rule, per example: rescale multipliers centred along the softmax dim.

    Backward: ``u = g * (s(x) - s(ref)) / (x - ref)`` (the softmax's own gradient where
    ``|x - ref| < eps``), then ``u - mean(u)`` along the dim. (Captum subtracts the mean
    over the whole batch of inputs and baselines, so an example's attributions depend on the
    other examples; for one example, the two agree.)
    """
    a = x if graph else x.detach()
    s = call.op(a)
    s_ref = call.op(ref) if ref_out is None else ref_out
    d_in = a - ref
    small = d_in.abs() < eps
    slope = ((s - s_ref) / _safe(d_in, small)).masked_fill(small, 0)
    return _Softmax.apply(phase, call.dim, x, s, slope, small)


# ------------------------------------------------------------------ max pooling

def _gather(values: Tensor, indices: Tensor, n_spatial: int) -> Tensor:
    flat = values.flatten(values.dim() - n_spatial)
    return torch.gather(flat, -1, indices.flatten(indices.dim() - n_spatial)).reshape(indices.shape)


def _scatter(values: Tensor, indices: Tensor, like: Tensor, n_spatial: int) -> Tensor:
    """The adjoint of :func:`_gather`: ``values`` added at ``indices`` into zeros shaped like ``like``."""
    flat = torch.zeros_like(like).flatten(like.dim() - n_spatial)
    flat = flat.scatter_add(-1, indices.flatten(indices.dim() - n_spatial),
                            values.flatten(values.dim() - n_spatial).to(flat.dtype))
    return flat.reshape(like.shape)


class _MaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, phase: Phase, n_spatial: int, x: Tensor, out: Tensor, idx: Tensor, idx_ref: Tensor,
                to_x: Tensor, to_ref: Tensor, inv: Tensor, small: Tensor) -> Tensor:
        ctx.phase, ctx.n = phase, n_spatial
        ctx.save_for_backward(x, idx, idx_ref, to_x, to_ref, inv, small)
        return out.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Any, ...]:
        x, idx, idx_ref, to_x, to_ref, inv, small = ctx.saved_tensors
        n = ctx.n
        plain = _scatter(grad, idx, x, n)  # the max-pool's own gradient
        if ctx.phase.multipliers:
            spread = _scatter(grad * to_x, idx, x, n) + _scatter(grad * to_ref, idx_ref, x, n)
            g = torch.where(small, plain, spread * inv)
        else:
            g = plain
        return (None, None, g) + (None,) * 7


def maxpool(phase: Phase, call: Call, x: Tensor, ref: Tensor, ref_out: Optional[Tuple[Tensor, Tensor]],
            graph: bool, eps: float) -> Tuple[Tensor, Tensor]:
    """Captum's max-pool rule; returns ``(output, indices)``.

    With ``m = max(pool(x), pool(ref))``, the output change ``pool(x) - pool(ref)`` is split
    into ``m - pool(ref)``, sent to the input's argmax, and ``pool(x) - m``, sent to the
    baseline's argmax; each input position divides what it receives by its own ``x - ref``
    (where ``|x - ref| < eps`` it passes the max-pool's own gradient). Positions picked by
    several windows accumulate (Captum's ``max_unpool`` keeps one of them, which breaks
    summation for overlapping windows).
    """
    a = x if graph else x.detach()
    out, idx = call.op(a)
    out_ref, idx_ref = call.op(ref) if ref_out is None else ref_out
    d_in = a - ref
    small = d_in.abs() < eps
    top = torch.maximum(out, out_ref)
    inv = (1 / _safe(d_in, small)).masked_fill(small, 0)
    y = _MaxPool.apply(phase, call.n_spatial, x, out, idx, idx_ref, top - out_ref, out - top, inv, small)
    return y, idx


def apply(phase: Phase, call: Call, x: Tensor, ref: Tensor, ref_out: Any, graph: bool, eps: float) -> Any:
    """The rule function of ``call`` applied to ``x`` (with the structure the call returns).

    ``ref_out``: the op's output on ``ref`` if already computed (``(output, indices)`` for
    max pooling), else None. ``graph``: compute the coefficients with the graph to the
    parameters (for a differentiable result).
    """
    if call.kind == "elementwise":
        return elementwise(phase, call, x, ref, ref_out, graph, eps)
    if call.kind == "softmax":
        return softmax(phase, call, x, ref, ref_out, graph, eps)
    out, idx = maxpool(phase, call, x, ref, ref_out, graph, eps)
    return (out, idx) if call.with_indices else out
