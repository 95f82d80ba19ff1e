"""Gradient of the selected output with respect to the inputs, for a batch of rows.

Rows are independent examples, so the gradient of the *sum* of the selected
outputs gives every row's own gradient in one backward pass: one batched forward
and backward, the floor for any gradient method.

There are two ways to run it, with the same values and the same derivatives; grad mode
chooses (:func:`gradient_pass`), and :func:`.recompute.checkpoint` chooses grad mode:

* **no graph** (grad mode off): ``torch.autograd.grad`` on
  fresh leaves, keeping nothing, so saved activations are freed as the backward pass
  goes; when grad mode is on and the result depends on something that requires grad,
  :mod:`.recompute` makes it differentiable on demand. The default: it costs the floor,
  and memory follows ``chunk_size``.
* **with its graph** (grad mode on): ``torch.func.grad``, whose result is differentiable
  with respect to whatever the rows, ``args`` and ``f`` depend on. Used under
  ``torch.compile`` and ``torch.func`` transforms (:mod:`.tracing`), to recompute on
  demand, and when ``f`` is a model in training mode (its result is about to be
  differentiated: one pass with the graph is cheaper than a pass and a recomputation).

Neither touches the caller's ``requires_grad`` or ``.grad``; both give the same values
under an outer ``torch.no_grad()``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

import torch

from . import compiled, recompute
from .calling import call
from .structure import Tensors
from .targets import Target

Tensor = torch.Tensor
_run_backward = torch.autograd.graph._engine_run_backward  # what torch.autograd.grad calls


def total_sum(out: Tensor) -> Tensor:
    """``out.sum()``, accumulated in float32 for half-precision values."""
    return out.sum(dtype=torch.float32) if out.dtype in (torch.float16, torch.bfloat16) else out.sum()


def _vjp(total: Tensor, leaves: Tensors) -> Sequence[Optional[Tensor]]:
    """``torch.autograd.grad(total, leaves, allow_unused=True)`` without its argument handling (~30 calls) for
    plain real tensors; tensor subclasses (and complex totals: its error) take the public path."""
    if type(total) is not Tensor or not total.is_floating_point() or torch._C._has_torch_function(leaves):
        return torch.autograd.grad(total, leaves, allow_unused=True)
    return _run_backward((total,), (torch.ones_like(total),), False, False, leaves, True, accumulate_grad=False)


def no_inference_mode() -> None:
    """Refuse to differentiate under ``torch.inference_mode()``: it records no graph even where grad mode is
    switched on, so every gradient would come out as zeros."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError("fattr: this method computes gradients, which torch.inference_mode() does not record "
                           "(not even under torch.enable_grad()): call it under torch.no_grad() instead.")


def leaf_gradients(forward: Callable[[Tensors], Tensor], rows: Tensors) -> Tuple[Tensor, Tensors]:
    """``forward(rows)`` (one value per row), detached, and its per-row gradients, without a graph: fresh
    leaves, and the forward's graph, whose nodes outlive the backward pass, names what it read
    (:func:`.recompute.reads`)."""
    no_inference_mode()
    enabled = torch.is_grad_enabled()
    torch._C._set_grad_enabled(True)  # (not a context manager: this runs on every call)
    try:
        leaves = tuple([r.detach().requires_grad_() for r in rows])
        out = forward(leaves)
        summed = total_sum(out)
        found: Sequence[Optional[Tensor]] = (None,) * len(leaves) if not summed.requires_grad else _vjp(summed, leaves)
    finally:
        torch._C._set_grad_enabled(enabled)
    recompute.reads(out, exclude=leaves)
    return out.detach(), tuple([g if g is not None else torch.zeros_like(x) for g, x in zip(found, leaves)])


def gradient_pass(f: Callable[..., Any], rows: Tensors, target: Target, args: Sequence[Any]) -> Tensors:
    """Per-row gradients: with their graph when grad mode is on, else without it (:func:`leaf_gradients`)."""
    if torch.is_grad_enabled():  # torch.func.grad: differentiable in whatever rows, args and f depend on
        def total(*xs: Tensor) -> Tensor:
            return total_sum(target.select(call(f, compiled.marked(xs), args), rows[0].shape[0]))

        return tuple(torch.func.grad(total, argnums=tuple(range(len(rows))))(*rows))
    _, grads = leaf_gradients(lambda leaves: target.select(call(f, leaves, args), leaves[0].shape[0]), rows)
    return grads


def gradients(f: Callable[..., Any], rows: Tensors, target: Target, args: Sequence[Any] = ()) -> Tensors:
    """Per-row gradients of ``f(rows)[target]`` with respect to each tensor in ``rows``.

    ``target`` and the per-example entries of ``args`` must already match ``rows``.
    """
    return recompute.checkpoint(lambda xs, rest: gradient_pass(f, xs, target, rest), rows, args=args, module=f,
                                traceable=True)


def outputs(f: Callable[..., Any], rows: Tensors, target: Target, args: Sequence[Any] = ()) -> torch.Tensor:
    """``f(rows)[target]``, one value per row: a forward pass (:func:`.recompute.checkpoint`'s ``forward``:
    compiled, from an inference graph, recomputed if it is differentiated)."""
    return recompute.checkpoint(lambda xs, rest: (target.select(call(f, xs, rest), rows[0].shape[0]),), rows,
                                args=args, module=f, forward=True)[0]
