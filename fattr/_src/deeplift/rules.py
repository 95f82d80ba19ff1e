"""The rescale rule as ordinary operations, and the pass that differentiates them.

A modified-gradient rule replaces a nonlinearity ``y = f(x)`` of the inputs' forward pass by

    ``y = f(x0) + L(x - x0)``

where ``x0`` is ``x`` made a constant of the rule pass's differentiation (:func:`rule_pass`) and
``L`` is linear (its value at ``x - x0 = 0`` is 0): the values are the op's, the rule pass
differentiates ``L`` (the rule), and every other differentiation, an outer backward through the
attributions (a training loss), sees ``x - x0`` as the zero it is and ``f(x0)`` with the op's true
derivative. ``L``'s coefficients (the rescale slope ``(f(x) - f(ref)) / (x - ref)``, the max-pool
and softmax rules' terms) are computed from ``x0`` and the baseline's input ``ref``, so they carry
the graph to the parameters when the result must be differentiable.

:func:`rule_pass` makes ``x0`` in one of two ways, with the same values:

* without a graph (grad mode off): ``x.detach()``, differentiated by ``torch.autograd.grad`` on
  fresh leaves (the forward's graph names what the pass read: :func:`..recompute.reads`);
* with its graph (grad mode on: ``torch.compile``, ``torch.func`` transforms, the recomputation,
  a model in training mode): ``torch.func.vjp``, with ``x0`` the tensor one functorch level
  below ``x`` (``x`` without the rule pass's level, with everything else's), which Dynamo traces.

Where ``|x - ref| < eps`` the multiplier is the op's own gradient at ``x`` (Captum's rule).
"""
from __future__ import annotations

from typing import Any, Callable, Tuple

import torch
from torch._C._functorch import _unwrap_for_grad
from torch._functorch.pyfunctorch import retrieve_current_functorch_interpreter

from ..compiled import marked
from ..gradients import leaf_gradients
from ..base import Tensor, Tensors
from .catalog import Call

Constant = Callable[[Tensor], Tensor]  # x -> x0: x as a constant of the rule pass's differentiation


def rule_pass(forward: Callable[[Tensors, Constant], Tensor], rows: Tensors) -> Tuple[Tensor, Tensors]:
    """``(out, grads)``: ``out = forward(points, constant)``, one value per row, and the gradients of its
    sum with respect to ``rows`` (the rules' gradients, rows as given), with their graph when grad mode
    is on (see the module docstring)."""
    if torch.is_grad_enabled():
        def inner(*points: Tensor) -> Tensor:
            level = retrieve_current_functorch_interpreter().level()
            return forward(marked(points), lambda t: _unwrap_for_grad(t, level))

        pair = torch.func.vjp(inner, *rows)  # (out, vjp_fn)
        out, vjp = pair[0], pair[1]
        return out, tuple(vjp(torch.ones_like(out)))
    return leaf_gradients(lambda leaves: forward(leaves, Tensor.detach), rows)


def _safe(d_in: Tensor, small: Tensor) -> Tensor:
    return d_in.masked_fill(small, 1)


def elementwise(call: Call, x: Tensor, x0: Tensor, f_a: Tensor, f_ref: Tensor, d_in: Tensor, small: Tensor) -> Tensor:
    """Multiplier ``(f(x) - f(ref)) / (x - ref)`` per element."""
    assert call.deriv is not None
    return f_a + torch.where(small, call.deriv(x0, f_a), (f_a - f_ref) / _safe(d_in, small)) * (x - x0)


def softmax(call: Call, x: Tensor, x0: Tensor, s: Tensor, s_ref: Tensor, d_in: Tensor, small: Tensor) -> Tensor:
    """Captum's softmax rule, per example: rescale multipliers centred along the softmax dim.

    Backward: ``u = g * (s(x) - s(ref)) / (x - ref)`` (the softmax's own gradient where
    ``|x - ref| < eps``), then ``u - mean(u)`` along the dim. (Captum subtracts the mean
    over the whole batch of inputs and baselines, so an example's attributions depend on the
    other examples; for one example, the two agree.) ``L`` is that map's adjoint.
    """
    slope = ((s - s_ref) / _safe(d_in, small)).masked_fill(small, 0)
    dim = call.dim
    d = (x - x0).to(s.dtype)
    d = d - d.mean(dim, keepdim=True)  # the centring is its own adjoint
    near = d.masked_fill(~small, 0)
    return s + s * (near - (s * near).sum(dim, keepdim=True)) + slope * d


def _gather(values: Tensor, indices: Tensor, n_spatial: int) -> Tensor:
    flat = values.flatten(values.dim() - n_spatial)
    return torch.gather(flat, -1, indices.flatten(indices.dim() - n_spatial)).reshape(indices.shape)


def maxpool(call: Call, x: Tensor, x0: Tensor, pooled: Tuple[Tensor, Tensor], pooled_ref: Tuple[Tensor, Tensor],
            d_in: Tensor, small: Tensor) -> Tuple[Tensor, Tensor]:
    """Captum's max-pool rule; returns ``(output, indices)``.

    With ``m = max(pool(x), pool(ref))``, the output change ``pool(x) - pool(ref)`` is split
    into ``m - pool(ref)``, sent to the input's argmax, and ``pool(x) - m``, sent to the
    baseline's argmax; each input position divides what it receives by its own ``x - ref``
    (where ``|x - ref| < eps`` it passes the max-pool's own gradient). Positions picked by
    several windows accumulate (Captum's ``max_unpool`` keeps one of them, which breaks
    summation for overlapping windows). ``L`` gathers: its adjoint scatters.
    """
    (out, idx), (out_ref, idx_ref) = pooled, pooled_ref
    top = torch.maximum(out, out_ref)
    n = call.n_spatial
    d = x - x0
    scaled = (d / _safe(d_in, small)).masked_fill(small, 0)  # d / (x - ref): exactly 0 at d = 0
    change = (_gather(d.masked_fill(~small, 0), idx, n) + (top - out_ref) * _gather(scaled, idx, n)
              + (out - top) * _gather(scaled, idx_ref, n))
    return out + change, idx


def apply(call: Call, x: Tensor, x0: Tensor, ref: Tensor, ref_out: Any, eps: float) -> Any:
    """The rule function of ``call`` applied to ``x`` (``x0``: its constant), with the structure the call
    returns; ``ref_out``: the op's output on ``ref`` if already computed (``(output, indices)`` for max
    pooling), else None. Each rule gets the op's outputs on ``x0`` and ``ref``, ``x0 - ref`` and where
    ``|x0 - ref| < eps``."""
    d_in = x0 - ref
    common = (call.op(x0), call.op(ref) if ref_out is None else ref_out, d_in, d_in.abs() < eps)
    if call.kind == "elementwise":
        return elementwise(call, x, x0, *common)
    if call.kind == "softmax":
        return softmax(call, x, x0, *common)
    out, idx = maxpool(call, x, x0, *common)
    return (out, idx) if call.with_indices else out
