"""Values computed without an autograd graph, differentiable on demand by recomputation.

Most calls want an attribution as a value (explaining a model); some want it as a
differentiable function of the parameters and inputs (a training loss). Keeping the
graph of a gradient computation (``create_graph=True``) on every call costs time,
and memory that grows with ``n_steps`` even when ``chunk_size`` is set. So fattr
computes the value without that graph and, when grad mode is on and the value
depends on tensors that require grad, attaches it to one autograd node
(:func:`attach`) whose backward recomputes the value with its graph and
differentiates it: activation checkpointing, applied to the attribution. Only calls
that are differentiated pay, with one more forward and backward per chunk (about a
quarter more for a training step; callers that expect a backward pass, a model in
training mode, keep the graph at once instead: :func:`on_demand`'s ``keep``).

The recomputation sees what the first computation saw: the same random state (a
model with dropout draws the same masks) and the same autocast state
(:class:`Context`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import torch

from .base import Run, Tensor, Tensors
from . import compiled, tracing



_ANCHOR = torch.zeros((), requires_grad=True)  # never changed: each mark() makes a new node from it


def mark() -> int:
    """A point in this thread's autograd history: nodes created later have larger sequence numbers."""
    with torch.enable_grad():
        return _sequence_nr(_ANCHOR.view(()).grad_fn)


def _sequence_nr(node: Any) -> int:
    number = getattr(node, "_sequence_nr", None)
    return number() if number is not None else 1 << 62  # unknown: treat as created during the call


def reached_leaves(outputs: Sequence[Tensor], exclude: Sequence[Tensor], since: int) -> Optional[List[Tensor]]:
    """The leaf tensors requiring grad that the graphs of ``outputs`` reach, except ``exclude``; None
    if they also reach an intermediate result computed before ``since`` (see :func:`mark`).

    Those leaves are what a function of fresh leaves (``exclude``) depends on besides them: a
    module's parameters, tensors a closure captured. A tensor computed with a graph before the
    call (a closure over ``w * scale``) cannot be an input of the recomputing node, so that case
    is reported and the caller keeps the graph instead. (Sequence numbers count per thread: a
    tensor computed with a graph in another thread may go unnoticed; its leaves are still found,
    so only differentiating with respect to that intermediate tensor itself would miss this
    call's share.) A walk over the graph's nodes, which outlive the release of their saved
    tensors after a backward pass.
    """
    skip = {id(t) for t in exclude}
    found: List[Tensor] = []
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    seen = set(stack)
    while stack:
        node = stack.pop()
        if type(node).__name__ == "AccumulateGrad":  # the node of a leaf
            variable = getattr(node, "variable")
            if id(variable) not in skip:
                skip.add(id(variable))
                found.append(variable)
            continue
        if _sequence_nr(node) < since:
            return None
        for child, _ in node.next_functions:
            if child is not None and child not in seen:
                seen.add(child)
                stack.append(child)
    return found


@dataclass(frozen=True)
class Context:
    """What a recomputation must share with the first computation: random and autocast states."""

    cpu_rng: Tensor
    cuda_rng: Tuple[Tuple[int, Tensor], ...]
    autocast: Tuple[Tuple[str, bool, torch.dtype], ...]

    @staticmethod
    def capture() -> "Context":
        # every initialised CUDA device: the model may draw on one that no input lives on
        cuda = range(torch.cuda.device_count()) if torch.cuda.is_initialized() else range(0)
        autocast = tuple((d, torch.is_autocast_enabled(d), torch.get_autocast_dtype(d))
                         for d in ("cpu", "cuda") if d == "cpu" or torch.cuda.is_available())
        return Context(torch.get_rng_state(), tuple((i, torch.cuda.get_rng_state(i)) for i in cuda), autocast)

    @contextlib.contextmanager
    def restored(self) -> Iterator[None]:
        """Run the block with the captured states; the caller's random states are left as they were."""
        with torch.random.fork_rng(devices=[i for i, _ in self.cuda_rng]), contextlib.ExitStack() as stack:
            torch.set_rng_state(self.cpu_rng)
            for i, state in self.cuda_rng:
                torch.cuda.set_rng_state(state, i)
            for device, enabled, dtype in self.autocast:
                stack.enter_context(torch.autocast(device, dtype=dtype, enabled=enabled))
            yield


Recompute = Callable[[Tensors], Sequence[Optional[Tensor]]]


class _Recomputed(torch.autograd.Function):
    """Identity on precomputed values; its backward recomputes them with their graph and differentiates."""

    @staticmethod
    def forward(ctx: Any, recompute: Recompute, context: Context, values: Tensors, n_inputs: int,
                *sources: Tensor) -> Tensors:
        ctx.recompute, ctx.context, ctx.n_inputs = recompute, context, n_inputs
        ctx.save_for_backward(*sources)
        ctx.set_materialize_grads(False)
        return tuple(values)

    @staticmethod
    def backward(ctx: Any, *cotangents: Optional[Tensor]) -> Tuple[Optional[Tensor], ...]:
        saved, k = ctx.saved_tensors, ctx.n_inputs
        inputs, leaves = saved[:k], saved[k:]
        higher_order = torch.is_grad_enabled()  # the outer backward runs with create_graph
        none: Tuple[None, ...] = (None,) * 4
        with torch.enable_grad():
            cut = [t.detach().requires_grad_() for t in inputs]
            # the recomputation sees the inputs as leaves (its gradients stop there; the outer backward
            # carries them on through the inputs' own graphs); for higher orders they stay connected
            stand_ins = tuple(c + (t - t.detach()) for c, t in zip(cut, inputs)) if higher_order else tuple(cut)
            with ctx.context.restored():
                values = ctx.recompute(stand_ins)
            pairs = [(v, c) for v, c in zip(values, cotangents)
                     if c is not None and v is not None and v.requires_grad]
            if not pairs:
                return none + (None,) * len(saved)
            # retain_graph: the walk to the leaves may pass through graphs the caller owns
            grads = list(torch.autograd.grad([v for v, _ in pairs], cut + list(leaves), [c for _, c in pairs],
                                             allow_unused=True, retain_graph=True, create_graph=higher_order))
            linked = [(t, g) for t, g in zip(inputs, grads[:k]) if g is not None]
            if higher_order and leaves and linked:
                # connected stand-ins also reach the leaves through the inputs' graphs, which the outer
                # backward follows itself: take that share out
                through = torch.autograd.grad([t for t, _ in linked], list(leaves), [g for _, g in linked],
                                              allow_unused=True, retain_graph=True, create_graph=True)
                grads[k:] = [g if d is None else g - d for g, d in zip(grads[k:], through)]
        return none + tuple(grads)


def attach(values: Tensors, inputs: Sequence[Tensor], leaves: Sequence[Tensor], recompute: Recompute,
           context: Context) -> Tensors:
    """``values``, differentiable with respect to ``inputs`` and ``leaves`` through ``recompute``.

    Args:
      values: tensors computed without a graph.
      inputs: the tensors requiring grad that the computation took as arguments.
      leaves: the leaf tensors requiring grad it used besides them (:func:`reached_leaves`).
      recompute: ``recompute(stand_ins)`` computes the same values with their graph, with
        ``stand_ins`` (same values as ``inputs``, in order) in place of ``inputs``; entries
        may be None where a value depends on nothing that requires grad.
      context: captured before ``values`` were computed.
    """
    unique = list({id(t): t for t in leaves}.values())  # a leaf listed twice would get its gradient twice
    if not inputs and not unique:
        return values
    leaves = unique
    return _Recomputed.apply(recompute, context, tuple(v.detach() for v in values), len(inputs), *inputs, *leaves)


def on_demand(run: Run, inputs: Sequence[Tensor], *, keep: bool = False, owner: Any = None) -> Tensors:
    """The values of ``run``, computed without a graph and differentiable on demand.

    With ``keep`` (the caller expects the values to be differentiated: a model in training
    mode), they are computed once with their graph instead, which is cheaper when a backward
    pass follows.

    ``run(inputs, graph)`` computes a tuple of tensors from ``inputs``. With ``graph=False``
    it keeps no graph and returns ``(values, reached)``: ``reached`` lists the leaf tensors
    requiring grad it used besides ``inputs`` (:func:`reached_leaves`), None when it used a
    tensor whose graph it cannot route through. With ``graph=True`` it returns the values
    with their graph (``reached`` is ignored). Under ``torch.no_grad()`` nothing is attached;
    when ``reached`` is None the values are computed again with their graph, as is.
    """
    inputs = tuple(inputs)
    if tracing.is_traced():  # torch.compile: an inference graph, recomputed on demand (owner: the model run calls)
        return compiled.on_demand(run, inputs, keep=keep, owner=owner)
    if keep and torch.is_grad_enabled():  # one graph, differentiated as is
        return run(inputs, True)[0]
    if not torch.is_grad_enabled():
        return run(inputs, False)[0]
    context = Context.capture()
    values, reached = run(tuple(t.detach() for t in inputs), False)
    if reached is None:
        return run(inputs, True)[0]
    tracked = [i for i, t in enumerate(inputs) if t.requires_grad]

    def again(stand_ins: Tensors) -> Sequence[Optional[Tensor]]:
        full = [t.detach() for t in inputs]
        for i, s in zip(tracked, stand_ins):
            full[i] = s
        return run(tuple(full), True)[0]

    return attach(values, [inputs[i] for i in tracked], reached, again, context)
