"""Many outputs, one forward: the gradient of every output column of a batched function.

:mod:`.gradients` differentiates one value per row. Some methods attribute several
values per row that come out of the *same* forward pass: a causal language model's
log-probabilities of its T output tokens, teacher-forced, all come from one forward
over prompt + target. Their gradients are the cotangents ``e_j`` (one per output
column) of that forward: one forward pass, then ``M`` backward passes over its graph,
evaluated ``cotangent_chunk`` at a time (``torch.autograd.grad(..., is_grads_batched=True)``
batches a chunk's backward passes into one; with a chunk of 1 they run one after another
over the retained graph). Running a forward per output instead repeats the forward
``M`` times.

``reduce`` contracts each chunk's gradients as soon as they exist (for example, times
the activation and summed over an embedding dimension), so memory holds one chunk of
full gradients, not ``M``.

Differentiable on demand like :mod:`.gradients` (:func:`.recompute.checkpoint`'s policy; with their
graph, ``torch.func.vjp``, when grad mode is on as it runs).
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch

from . import recompute
from .calling import call
from .compiled import marked
from .errors import fail
from .gradients import no_inference_mode
from .base import Tensor, Tensors

Select = Callable[[Any], Tensor]
Reduce = Callable[..., Tensors]  # (grads, cols, *operands) -> tensors


def default_chunk(device: torch.device) -> int:
    """Cotangents per backward. On CPU one at a time over the retained graph: on a Llama (hidden 256,
    4 layers, 64 + 16 tokens, IG with 8 points, one busy thread) 4 at a time took 0.91x its time and
    16 at a time 1.04x, within the machine's noise, and ``is_grads_batched`` falls back to a loop (with
    a warning) for ops without a batching rule, such as CPU flash attention's backward. On
    accelerators 16 (batching should pay there; not measured yet)."""
    return 1 if device.type == "cpu" else 16


def _basis(values: Tensor, cols: slice) -> Tensor:
    """Cotangents ``e_j`` for the columns ``cols`` of ``values`` ``(N, M)``: shape ``(m, N, M)``."""
    n, m_all = values.shape
    eye = torch.eye(m_all, dtype=values.dtype, device=values.device)[cols]  # (m, M)
    return eye[:, None, :].expand(eye.shape[0], n, m_all)


def _check_values(values: Any, n_rows: int) -> Tensor:
    if not isinstance(values, Tensor) or values.dim() != 2 or values.shape[0] != n_rows:
        fail("select", f"to return a tensor of shape ({n_rows}, M): M values per row", values,
             kind=ValueError if isinstance(values, Tensor) else TypeError)
    return values


def _plain(f: Callable[..., Any], rows: Tensors, args: Sequence[Any], select: Select, chunk: int,
           reduce: Reduce, operands: Tensors) -> Tuple[Tensor, List[Tensors]]:
    """No graph kept: fresh leaves, one forward, the cotangents chunk by chunk over the retained graph;
    the forward's graph, whose nodes outlive the backward, names what ``f`` read (:func:`.recompute.reads`)."""
    no_inference_mode()
    leaves = tuple(r.detach().requires_grad_() for r in rows)
    with torch.enable_grad():
        values = _check_values(select(call(f, leaves, args)), rows[0].shape[0])
        m = values.shape[1]
        parts: List[Tensors] = []
        for start in range(0, m, chunk):
            cols = slice(start, min(m, start + chunk))
            last = cols.stop == m
            if not values.requires_grad:
                found: Sequence[Optional[Tensor]] = (None,) * len(leaves)
            elif chunk == 1:
                found = torch.autograd.grad(values, leaves, _basis(values, cols)[0], retain_graph=not last,
                                            allow_unused=True)
                found = tuple(None if g is None else g.unsqueeze(0) for g in found)
            else:
                found = torch.autograd.grad(values, leaves, _basis(values, cols), retain_graph=not last,
                                            allow_unused=True, is_grads_batched=True)
            k = cols.stop - cols.start
            full = tuple(torch.zeros((k,) + tuple(x.shape), dtype=x.dtype, device=x.device) if g is None else g
                         for g, x in zip(found, leaves))
            parts.append(tuple(t.detach() for t in reduce(full, cols, *operands)))
    recompute.reads(values, exclude=leaves)
    return values.detach(), parts


def _with_graph(f: Callable[..., Any], rows: Tensors, args: Sequence[Any], select: Select, chunk: int,
                reduce: Reduce, operands: Tensors) -> Tuple[Tensor, List[Tensors]]:
    """With the graph (``torch.func.vjp``): differentiable in whatever rows, args and ``f`` depend on."""
    n_rows = rows[0].shape[0]
    found = torch.func.vjp(lambda *xs: _check_values(select(call(f, marked(xs), args)), n_rows), *rows)
    values, vjp = found[0], found[1]
    m = values.shape[1]
    parts: List[Tensors] = []
    for start in range(0, m, chunk):
        cols = slice(start, min(m, start + chunk))
        basis = _basis(values, cols)
        grads = torch.func.vmap(vjp)(basis) if chunk > 1 else tuple(g.unsqueeze(0) for g in vjp(basis[0]))
        parts.append(tuple(reduce(tuple(grads), cols, *operands)))
    return values, parts


def output_gradients(f: Callable[..., Any], rows: Tensors, select: Select, args: Sequence[Any] = (), *,
                     cotangent_chunk: Optional[int] = None,
                     reduce: Optional[Reduce] = None, operands: Sequence[Tensor] = ()) -> Tuple[Tensor, Tensors]:
    """Values ``(N, M)`` of ``select(f(*rows, *args))`` and the gradient of each of their M columns.

    Args:
      f: the function; ``args`` as made by :func:`.arguments.as_args`, already paired with ``rows``.
      rows: tensors with N rows each, the variables of differentiation.
      select: ``select(f's output) -> (N, M)``: the M values of each row.
      cotangent_chunk: cotangents per backward pass (None: :func:`default_chunk`).
      reduce: ``reduce(grads, cols, *operands) -> tensors``: applied to the gradients of each chunk of
        columns ``cols`` (each gradient ``(m, N, ...)``, row-major like ``rows``); its results, each
        with the chunk's ``m`` along dim 0, are concatenated over the chunks. None keeps the gradients.
      operands: tensors ``reduce`` uses; the results are differentiable with respect to them too
        (``reduce`` must take them from its arguments, not from a closure).

    Returns:
      ``(values, reduced)``: values ``(N, M)``, and the reduced gradients (without ``reduce``, one
      ``(M, N, ...)`` tensor per entry of ``rows``: entry ``[j, n]`` is ``d values[n, j] / d rows[n]``
      when rows are independent examples).
    """
    chunk = cotangent_chunk if cotangent_chunk is not None else default_chunk(rows[0].device)
    contract: Reduce = reduce if reduce is not None else (lambda grads, cols, *operands: grads)
    k = len(rows)

    def run(tensors: Tensors, rest: Tuple[Any, ...]) -> Tensors:
        xs, operands_ = tensors[:k], tensors[k:]
        values, parts = (_with_graph if torch.is_grad_enabled() else _plain)(f, xs, rest, select, chunk,
                                                                             contract, operands_)
        return (values,) + (tuple(torch.cat([p[i] for p in parts]) for i in range(len(parts[0]))) if parts else ())

    out = recompute.checkpoint(run, tuple(rows) + tuple(operands), args=args, module=f, traceable=True)
    return out[0], tuple(out[1:])
