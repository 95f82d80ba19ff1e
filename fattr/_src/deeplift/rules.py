"""The rescale rule as differentiable surrogates: right values, DeepLift multipliers as gradients.

Each rule gets three tensors of the same shape:

* ``x``: the nonlinearity's input for the inputs' rows, as it flows in the gradient pass
  (it depends on the tensors whose multipliers we want);
* ``ref``: its input for the baselines' rows (paired row by row);
* ``anchor``: the same values as ``x`` without the dependence on those tensors (either
  ``x.detach()`` or the same pre-activation from a separate forward pass that kept the
  graph to the parameters).

and returns ``f(anchor) + L(x - anchor)``: the value is ``f(x)`` because ``x - anchor`` is
zero; the derivative with respect to ``x`` is the linear map ``L`` of DeepLift's
multipliers; the derivative with respect to anything else (model parameters) is the true
one ``f'(x)``, because ``x - anchor`` does not depend on it. So one backward pass gives
the multipliers, and an outer backward (``create_graph``) differentiates them exactly.

Where ``|x - ref| < eps`` the multiplier falls back to the gradient at ``x`` (Captum's rule).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .catalog import Call

Tensor = torch.Tensor


def _safe(d_in: Tensor, small: Tensor) -> Tensor:
    return torch.where(small, torch.ones_like(d_in), d_in)


def elementwise(f: Callable[[Tensor], Tensor], x: Tensor, ref: Tensor, anchor: Tensor, eps: float) -> Tensor:
    """Rescale rule: multiplier ``(f(x) - f(ref)) / (x - ref)`` per element."""
    f_anchor, f_ref = f(anchor), f(ref)
    d_in = anchor - ref
    small = d_in.abs() < eps
    slope = (f_anchor - f_ref) / _safe(d_in, small)
    return torch.where(small, f(x), f_anchor + slope * (x - anchor))


def softmax(f: Callable[[Tensor], Tensor], dim: int, x: Tensor, ref: Tensor, anchor: Tensor, eps: float) -> Tensor:
    """Captum's softmax rule per example: rescale multipliers, centred along ``dim``.

    Backward: ``u = g * (s(x) - s(ref)) / (x - ref)`` (the softmax's own gradient where
    ``|x - ref| < eps``), then ``u - mean(u)`` along ``dim``. (Captum subtracts the mean
    over the whole batch of inputs and baselines, so an example's attributions depend on the
    other examples; per example, the two agree.)
    """
    s_anchor, s_ref = f(anchor), f(ref)
    d_in = anchor - ref
    small = d_in.abs() < eps
    slope = (s_anchor - s_ref) / _safe(d_in, small)
    e = x - anchor
    e = e - e.mean(dim, keepdim=True)  # centring, the adjoint of ``u - mean(u)``
    e_small = torch.where(small, e, torch.zeros_like(e))
    jvp = s_anchor * (e_small - (s_anchor * e_small).sum(dim, keepdim=True))  # softmax's Jacobian on them
    lin = jvp + torch.where(small, torch.zeros_like(e), slope * e)
    return s_anchor + lin.to(s_anchor.dtype)


def _gather(values: Tensor, indices: Tensor, n_spatial: int) -> Tensor:
    flat = values.flatten(values.dim() - n_spatial)
    picked = torch.gather(flat, -1, indices.flatten(indices.dim() - n_spatial))
    return picked.reshape(indices.shape)


def maxpool(pool: Callable[[Tensor], Any], n_spatial: int, x: Tensor, ref: Tensor, anchor: Tensor,
            eps: float) -> tuple:
    """Captum's max-pool rule; returns ``(output, indices)``.

    With ``m = max(pool(x), pool(ref))``, the output change ``pool(x) - pool(ref)`` is split
    into ``m - pool(ref)``, sent to the input's argmax, and ``pool(x) - m``, sent to the
    baseline's argmax; each input position divides what it receives by its own ``x - ref``.
    Positions that several windows pick accumulate (Captum's ``max_unpool`` keeps one of them,
    which breaks summation for overlapping windows).
    """
    out, idx = pool(anchor)
    out_ref, idx_ref = pool(ref)
    d_in = anchor - ref
    small = d_in.abs() < eps
    top = torch.maximum(out, out_ref)
    e = x - anchor
    scaled = torch.where(small, torch.zeros_like(e), e / _safe(d_in, small))
    plain = torch.where(small, e, torch.zeros_like(e))  # the max-pool's own gradient where x ~ ref
    lin = (_gather(scaled, idx, n_spatial) * (top - out_ref) + _gather(scaled, idx_ref, n_spatial) * (out - top)
           + _gather(plain, idx, n_spatial))
    return out + lin, idx


def apply(call: Call, x: Tensor, ref: Tensor, anchor: Tensor, eps: float) -> Any:
    """The surrogate of ``call`` (its result has the structure the call returns)."""
    if call.kind == "elementwise":
        return elementwise(call.op, x, ref, anchor, eps)
    if call.kind == "softmax":
        return softmax(call.op, call.dim, x, ref, anchor, eps)
    out, idx = maxpool(call.op, call.n_spatial, x, ref, anchor, eps)
    return (out, idx) if call.with_indices else out
