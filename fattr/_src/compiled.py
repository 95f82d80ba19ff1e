"""Differentiable on demand under ``torch.compile``: an inference graph whose backward recomputes.

Eager fattr computes an attribution without an autograd graph and attaches one node
whose backward recomputes it with its graph (:mod:`.recompute`). That node cannot be
built the eager way under Dynamo (it walks the autograd graph to find the leaves a
call used), so compiled calls whose result had to stay differentiable traced the
computation with its graph: AOTAutograd then compiled a training graph, 1.5 to 3.3
times slower than eager even when nothing was ever differentiated.

Here the eager cost model is carried into the compiled graph. The values are computed
and detached (no graph leaves the call, so the forward is an inference graph; the
attribution's own inner gradients come from ``torch.func.grad``) and passed through an
``autograd.Function``, which Dynamo traces forward and backward:
its forward is the identity and saves only its inputs; its backward recomputes the
values with their graph (``torch.func.vjp``). Its inputs are the call's tensors that
require grad and the parameters requiring grad of the model the call runs (``owner``),
which the recomputation substitutes (``_reparametrize_module``); of a forward pass (no ``torch.func``
transform inside), only those it reads, found as it runs (:class:`_Read`). Two details matter:

* the recomputation's inputs depend on the incoming cotangents (plus a zero made from
  them), or AOTAutograd's partitioner, which does not recompute convolutions and
  matrix products in a backward, would hoist the recomputation into the forward graph
  and save its activations: the training graph again;
* the values are computed from the inputs and parameters detached (substituted as in the
  recomputation): if they still require grad, the computation reads something else
  requiring grad (a closure over a tensor ``w``, a buffer requiring grad), and it is
  traced with its graph as before. Dynamo knows ``requires_grad`` as it traces, so this
  is decided then, and the values are computed once (a probe computed besides them ran
  for real wherever the graph breaks, across LIME's eager lasso loop: the fit twice).

A model in training mode (the values are about to be differentiated) keeps its graph at
once, as in eager mode: :func:`.recompute.checkpoint` decides that before calling here.

The function a recomputation wraps is traced again for its backward, where Dynamo allows no
side effect: it must be a function of its tensors. What cannot be traced at all (a cache
lookup, a lock, a graph capture: a layer method's split) runs when Dynamo traces the call,
by :func:`at_trace_time`, and the compiled code holds its result as a constant. Functions handed to a
``torch.func`` transform see their inputs through :func:`marked`, so that Dynamo reads them as requiring
grad, as eager code does (else torch's transformer layers take fused kernels without a derivative).
"""
from __future__ import annotations

import itertools
import threading
from typing import Any, Callable, List, Optional, Tuple

import torch
from torch import nn
from torch.nn.utils.stateless import _reparametrize_module
from torch.overrides import TorchFunctionMode

from .base import Tensor, Tensors
from .twice import twice_differentiable

Recompute = Callable[[Tensors], Tensors]


def dynamo_tracing() -> bool:
    """True while Dynamo traces the caller in this thread. (``torch.compiler.is_compiling`` is also
    True in every thread while any thread runs ``torch.export``.)"""
    return bool(torch.compiler.is_dynamo_compiling())


def marked(xs: Tensors) -> Tensors:
    """The inputs a ``torch.func`` transform hands its function, as Dynamo must see them: ``xs`` itself
    eagerly; under Dynamo, a view of each (free), on which Dynamo reads ``requires_grad`` afresh.

    ``torch.func.grad`` and ``vjp`` mark their inputs with an in-place ``requires_grad_()``, which Dynamo
    does not carry over to the tensors it tracks: inside the function they read as not requiring grad
    (torch 2.13). Code that branches on it then takes another path than eagerly: the inference fast paths
    of ``nn.TransformerEncoderLayer`` and ``nn.MultiheadAttention`` run fused kernels that have no
    derivative ("derivative for aten::_transformer_encoder_layer_fwd is not implemented")."""
    return tuple(x.view_as(x) for x in xs) if dynamo_tracing() else xs


_MAX_HELD = 1024  # results of :func:`at_trace_time`; the oldest is dropped first (its graphs then retrace)
_keys = itertools.count()
_lock = threading.Lock()


class _Held:
    """Results of :func:`at_trace_time`, as class attributes: Dynamo reads a class's attributes live
    (a dict would be seen as it was at its first read in a trace) and guards on each one it reads."""

    names: List[str] = []


def at_trace_time(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` run as ordinary Python when Dynamo traces the call (not traced: a cache lookup, a
    lock, a capture); the compiled code holds the result as a constant. Call it only under Dynamo.

    ``args`` must be what Dynamo can hand over as constants: Python scalars, tuples of them, dtypes,
    devices, and objects from outside the compiled function (by identity, guarded). The result is
    held here and read back by name, so Dynamo guards on what the trace reads from it like on any
    other global; when it is dropped (after ``_MAX_HELD`` newer ones), the graphs that read it retrace.
    """
    return getattr(_Held, _hold(fn, *args))


@torch.compiler.assume_constant_result  # type: ignore[untyped-decorator]
def _hold(fn: Callable[..., Any], *args: Any) -> str:
    result = fn(*args)
    with _lock:  # threads may trace at once
        name = f"result_{next(_keys)}"
        setattr(_Held, name, result)
        _Held.names.append(name)
        while len(_Held.names) > _MAX_HELD:
            delattr(_Held, _Held.names.pop(0))
    return name


class _Attached(torch.autograd.Function):
    """The identity on ``values``; its backward recomputes them from ``sources`` and differentiates."""

    @staticmethod
    def forward(ctx: Any, values: Tensors, recompute: Recompute,
                *sources: Tensor) -> Tensors:
        ctx.recompute = recompute
        ctx.floating = [i for i, v in enumerate(values) if v.is_floating_point() or v.is_complex()]
        ctx.save_for_backward(*sources)
        return tuple(v.clone() for v in values)

    @staticmethod
    def backward(ctx: Any, *cotangents: Tensor) -> Tuple[Optional[Tensor], ...]:
        sources = ctx.saved_tensors
        # a zero that depends on the cotangents: the recomputation cannot run before the backward
        # (not ``c * 0``, which Inductor's joint-graph passes fold into a constant)
        floating = [cotangents[i] for i in ctx.floating]  # (integer values, a mask in a head's rest: none)
        if not floating:
            return (None, None) + (None,) * len(sources)
        zero = torch.stack([c.reshape(-1)[:1].abs().neg().clamp(min=0).nan_to_num(0.0, 0.0, 0.0).sum().float()
                            for c in floating]).sum()

        def recompute(*s: Tensor) -> Tensors:
            values = ctx.recompute(s)
            return tuple(values[i] for i in ctx.floating)

        with twice_differentiable():  # the recomputed gradients are differentiated again
            vjp = torch.func.vjp(recompute, *(s + zero.to(s.dtype) for s in sources))[1]
            return (None, None) + tuple(vjp(tuple(floating)))


class _Read(TorchFunctionMode):
    """In the block, every parameter requiring grad an operation reads is read detached and listed in
    ``read`` (first read first). With ``swap``, a list of ``(parameter, tensor)``, those parameters are
    read as their tensor instead (and nothing is listed)."""

    def __init__(self, swap: Tuple[Tuple[Tensor, Tensor], ...] = ()) -> None:
        super().__init__()
        self.swap = swap
        self.read: List[Tensor] = []

    def _arg(self, a: Any) -> Any:
        if isinstance(a, (list, tuple)):
            return type(a)(self._arg(b) for b in a)
        if not isinstance(a, nn.Parameter) or not a.requires_grad:
            return a
        for p, t in self.swap:
            if a is p:
                return t
        if not self.swap and not any(a is p for p in self.read):
            self.read.append(a)
        return a.detach()

    def __torch_function__(self, func: Any, types: Any, args: Tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        return func(*self._arg(args), **{k: self._arg(v) for k, v in (kwargs or {}).items()})


def _parameters(owner: nn.Module) -> Tuple[List[str], List[Tensor]]:
    """``owner``'s parameters requiring grad, and their names."""
    named = [(n, p) for n, p in owner.named_parameters() if p.requires_grad]
    return [n for n, _ in named], [p for _, p in named]


def attached(compute: Recompute, tensors: Tensors, owner: Any, forward: bool = False) -> Optional[Tensors]:
    """``compute(tensors)`` (with its graph when grad mode is on) from an inference graph, differentiable
    by recomputation (see the module docstring); None where that is not known to be right: ``owner``
    (the model ``compute`` runs) is not a module, or the values depend on something else requiring grad.
    Called under Dynamo with grad mode on (:func:`.recompute.checkpoint`'s policy under tracing).

    ``forward``: ``compute`` is a forward pass (no ``torch.func`` transform inside, where Dynamo allows no
    side effect): the sources are then the parameters it reads, found as it runs, not all of ``owner``'s
    (each source is a graph input saved for backward, each parameter looked at a guard)."""
    if not isinstance(owner, nn.Module):
        return None
    tracked = [i for i, t in enumerate(tensors) if t.requires_grad]

    def inputs(sources: Tensors) -> Tensors:
        full = list(tensors)
        for i, s in zip(tracked, sources):
            full[i] = s
        return tuple(full)

    # the backward's mode entered once here: Dynamo then knows the mode stack outside the autograd.Function,
    # whose backward pushes onto it (else "unsafe side effect: mutating TorchFunctionModeStackVariable")
    with twice_differentiable():
        pass
    if forward:
        read = _Read()
        with read:
            values = tuple(compute(tuple(t.detach() for t in tensors)))
        params = read.read

        def recompute(sources: Tensors) -> Tensors:
            with _Read(tuple(zip(params, sources[len(tracked):]))):
                return tuple(compute(inputs(sources)))
    else:
        names, params = _parameters(owner)

        def recompute(sources: Tensors) -> Tensors:
            with _reparametrize_module(owner, dict(zip(names, sources[len(tracked):]))):
                return tuple(compute(inputs(sources)))

        values = recompute(tuple(s.detach() for s in [tensors[i] for i in tracked] + params))
    if any(v is None or v.requires_grad for v in values):  # something else requires grad
        return None
    sources = [tensors[i] for i in tracked] + list(params)
    if not sources:
        return values
    return tuple(_Attached.apply(values, recompute, *sources))  # type: ignore[no-untyped-call]
