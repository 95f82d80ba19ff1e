"""Differentiable on demand, under ``torch.compile``: an inference graph whose backward recomputes.

Eager fattr computes an attribution without an autograd graph and attaches one node
whose backward recomputes it with its graph (:mod:`.recompute`). Under Dynamo that
node cannot be built the eager way (it walks the autograd graph to find the leaves a
call used), so a compiled call whose result had to stay differentiable used to trace
the computation with its graph: AOTAutograd then compiled a training graph (its
forward decomposed for double differentiation and saving what a backward needs), 1.5
to 3.3 times slower than eager, even when nothing was ever differentiated.

Here the same cost model is carried into the compiled graph: an ``autograd.Function``
(which Dynamo traces, forward and backward) computes the values under ``no_grad`` (an
inference computation, with the attribution's own inner gradients from
``torch.func.grad``) and saves only its inputs; its backward recomputes the values with
their graph by ``torch.func.vjp``. The leaves a call may read besides its inputs (the
parameters requiring grad) are found before the trace reaches the computation: the
modules its function reaches (:func:`.calling.modules_of`), their parameters passed to
the ``Function`` explicitly and substituted in the recomputation. Where that cannot
account for everything that requires grad (a tensor requiring grad that is not a
module's parameter, such as a closure over ``w``), the computation is traced with its
graph as before.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .base import Run, Tensor, Tensors
from .tracing import is_compiling

Recompute = Callable[[Tensors], Tensors]


class _Values(torch.autograd.Function):
    """``recompute(tensors)`` computed without a graph; differentiated by recomputing it with one."""

    @staticmethod
    def forward(ctx: Any, compute: Callable[[], Tensors], recompute: Recompute,  # type: ignore[override]
                *tensors: Tensor) -> Tensors:
        with torch.no_grad():
            values = tuple(compute())
        ctx.recompute = recompute
        ctx.save_for_backward(*tensors)
        return values

    @staticmethod
    def backward(ctx: Any, *cotangents: Tensor) -> Tuple[Optional[Tensor], ...]:  # type: ignore[override]
        tensors = ctx.saved_tensors
        _, vjp = torch.func.vjp(lambda *t: tuple(ctx.recompute(t)), *tensors)
        return (None, None) + tuple(vjp(tuple(cotangents)))


def _parameters(owner: Any) -> Optional[List[Tuple[nn.Module, List[str], List[Tensor]]]]:
    """For the module ``owner``, the names and tensors of its parameters requiring grad; None when
    ``owner`` is not a module or may read something else requiring grad (a buffer or a tensor
    attribute requiring grad)."""
    from .calling import tensors_read

    if not isinstance(owner, nn.Module):
        return None
    found = []
    for module in (owner,):
        read = tensors_read(module)
        if read is None:
            return None
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if len(named) != len(read):
            return None
        found.append((module, [n for n, _ in named], [p for _, p in named]))
    return found


def _reparametrized(groups: Sequence[Tuple[nn.Module, List[str], List[Tensor]]], tensors: Sequence[Tensor],
                    compute: Callable[[], Tensors]) -> Tensors:
    if not groups:
        return compute()
    (module, names, params), rest = groups[0], groups[1:]
    values: Dict[str, Tensor] = dict(zip(names, tensors[:len(names)]))
    with torch.nn.utils.stateless._reparametrize_module(module, values):
        return _reparametrized(rest, tensors[len(names):], compute)


def on_demand(run: Run, inputs: Sequence[Tensor], owner: Any = None) -> Tensors:
    """The values of ``run`` (see :func:`.recompute.on_demand`) under a trace; ``owner`` is the model
    ``run`` calls (the ``f`` of the method), if known."""
    inputs = tuple(inputs)
    if not is_compiling() or not torch.is_grad_enabled():
        return run(inputs, True)[0]
    groups = _parameters(owner)
    if groups is None:
        return run(inputs, True)[0]
    params = [p for _, _, ps in groups for p in ps]
    k = len(inputs)

    def recompute(tensors: Tensors) -> Tensors:
        return tuple(_reparametrized(groups, tensors[k:], lambda: run(tuple(tensors[:k]), True)[0]))

    # what else requires grad? the values computed with every known source detached must not
    # (traced only: unused, so the compiled graph drops it)
    probe = recompute(tuple(t.detach() for t in inputs) + tuple(p.detach() for p in params))
    if any(v is not None and v.requires_grad for v in probe):
        return run(inputs, True)[0]
    if not params and not any(t.requires_grad for t in inputs):
        return probe
    return _Values.apply(lambda: run(inputs, True)[0], recompute, *inputs, *params)
