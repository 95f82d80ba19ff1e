"""Gradient of the selected output with respect to the inputs, for a batch of rows.

Rows are independent examples, so the gradient of the *sum* of the selected
outputs gives every row's own gradient in one backward pass: one batched forward
and backward, the floor for any gradient method.

Eager calls run exactly that: ``torch.autograd.grad`` on fresh leaves, keeping no
graph, so saved activations are freed as the backward pass goes and memory follows
the rows of one call. When grad mode is on and the result depends on something that
requires grad (the model's parameters, inputs that require grad, tensors in
``args``), it is attached to an autograd node that recomputes it with its graph if,
and only if, it is differentiated (:mod:`.recompute`). Never touches the caller's
``requires_grad`` or ``.grad``; the same values under an outer ``torch.no_grad()``.
Under ``torch.compile`` or a ``torch.func`` transform the gradient is
``torch.func.grad``, which both trace (:mod:`.tracing`).
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch

from . import recompute, tracing
from .calling import call
from .structure import Tensors
from .targets import Target

Tensor = torch.Tensor


def _total(out: Tensor) -> Tensor:
    low_precision = out.dtype in (torch.float16, torch.bfloat16)
    return out.sum(dtype=torch.float32) if low_precision else out.sum()


def _traced(f: Callable[..., Any], rows: Tensors, target: Target, args: Sequence[Any]) -> Tensors:
    n_rows = rows[0].shape[0]

    def total(*xs: Tensor) -> Tensor:
        return _total(target.select(call(f, xs, args), n_rows))

    return tuple(torch.func.grad(total, argnums=tuple(range(len(rows))))(*rows))


def _grads(f: Callable[..., Any], leaves: Tensors, target: Target, args: Sequence[Any], *,
           create_graph: bool) -> Tuple[Tensors, Tensor]:
    """Gradients of the selected outputs with respect to ``leaves`` (tensors requiring grad), and the outputs."""
    with torch.enable_grad():
        out = target.select(call(f, leaves, args), leaves[0].shape[0])
        total = _total(out)
        found: Sequence[Optional[Tensor]] = ((None,) * len(leaves) if not total.requires_grad else
                                             torch.autograd.grad(total, leaves, allow_unused=True,
                                                                 create_graph=create_graph))
    return tuple(torch.zeros_like(x) if g is None else g for g, x in zip(found, leaves)), out


def gradient_pass(f: Callable[..., Any], rows: Tensors, target: Target, args: Sequence[Any],
                  graph: bool) -> Tuple[Tensors, Optional[List[Tensor]]]:
    """Per-row gradients, as a :data:`.recompute.Run`: with their graph (``graph``), or without it
    together with the leaves requiring grad that ``f`` used (None: a tensor with an outside graph)."""
    if graph:
        if tracing.is_traced():
            return _traced(f, rows, target, args), []
        leaves = tuple(r if r.requires_grad else r.detach().requires_grad_() for r in rows)
        return _grads(f, leaves, target, args, create_graph=True)[0], []
    tracking = torch.is_grad_enabled()
    since = recompute.mark() if tracking else 0
    leaves = tuple(r.detach().requires_grad_() for r in rows)
    grads, out = _grads(f, leaves, target, args, create_graph=False)
    return grads, (recompute.reached_leaves((out,), leaves, since) if tracking else [])


def split_args(args: Sequence[Any]) -> Tuple[Tensors, Callable[[Tensors], Tuple[Any, ...]]]:
    """``(tensors, rebuild)``: the tensors among ``args``, and ``rebuild(new_tensors) -> args`` with them replaced."""
    where = [i for i, a in enumerate(args) if isinstance(a, Tensor)]

    def rebuild(tensors: Tensors) -> Tuple[Any, ...]:
        out = list(args)
        for i, t in zip(where, tensors):
            out[i] = t
        return tuple(out)

    return tuple(args[i] for i in where), rebuild


def gradients(f: Callable[..., Any], rows: Tensors, target: Target, args: Sequence[Any] = ()) -> Tensors:
    """Per-row gradients of ``f(rows)[target]`` with respect to each tensor in ``rows``.

    ``target`` and the per-example entries of ``args`` must already match ``rows``.
    """
    arg_tensors, rebuild = split_args(args)
    k = len(rows)

    def run(tensors: Tensors, graph: bool) -> Tuple[Tensors, Optional[List[Tensor]]]:
        return gradient_pass(f, tensors[:k], target, rebuild(tensors[k:]), graph)

    return recompute.on_demand(run, tuple(rows) + arg_tensors)


def outputs(f: Callable[..., Any], rows: Tensors, target: Target, args: Sequence[Any] = ()) -> torch.Tensor:
    """``f(rows)[target]``, one value per row."""
    return target.select(call(f, rows, args), rows[0].shape[0])
