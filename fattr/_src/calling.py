"""Calling the user's ``f`` without side effects.

An ``nn.Module`` in training mode may write its buffers during a forward pass
(BatchNorm's running statistics). fattr runs such a module through
``torch.func.functional_call`` with copies of its buffers, so the module's own
buffers are never written. Parameters are not copied: gradients with respect to
them still flow. (A plain function that closes over a module cannot be protected
this way; pass the module itself as ``f`` when it has buffers in training mode.)

:func:`tensors_read` lists what a module may read that requires grad, for results made
differentiable on demand (:mod:`.recompute`) without a graph to walk.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, List, Optional, Sequence

import torch
from torch import nn

from .arguments import unpack
from .diagnose import explain
from .tracing import is_compiling


def _writes_buffers(module: nn.Module) -> bool:
    for m in module.modules():
        if m.training and m._buffers and any(b is not None for b in m._buffers.values()):
            return True
    return False


def module_of(f: Any) -> Optional[nn.Module]:
    """The module behind ``f``: ``f`` itself, the owner of a bound method, or the model of a split's tail."""
    if isinstance(f, nn.Module):
        return f
    owner = getattr(f, "__self__", None)
    if isinstance(owner, nn.Module):
        return owner
    owner = getattr(f, "fattr_model", None)
    return owner if isinstance(owner, nn.Module) else None


def in_training(f: Any) -> bool:
    """Whether ``f`` is (the function of) a module in training mode."""
    module = module_of(f)
    return module is not None and module.training


def tensors_read(module: nn.Module) -> Optional[List[torch.Tensor]]:
    """What ``module`` may read that requires grad: its parameters, buffers and tensor attributes,
    a superset of what a forward pass uses; None when one of them has a graph of its own."""
    found: List[torch.Tensor] = []
    seen = set()
    for m in module.modules():
        attributes = (v for v in vars(m).values() if isinstance(v, torch.Tensor))
        for t in itertools.chain(m._parameters.values(), m._buffers.values(), attributes):
            if t is None or not t.requires_grad or id(t) in seen:
                continue
            if t.grad_fn is not None:
                return None
            seen.add(id(t))
            found.append(t)
    return found


def call(f: Callable[..., Any], inputs: Sequence[torch.Tensor], args: Sequence[Any] = ()) -> Any:
    """``f(*inputs, *args, **kwargs)`` (``args`` as made by :func:`.arguments.as_args`), leaving every
    buffer of ``f`` (if a module) untouched. When ``f`` fails for a cause :mod:`.diagnose` recognises
    (model and inputs of different dtypes, ...), the error names it."""
    if is_compiling():  # Dynamo traces the plain call
        return _call(f, inputs, args)
    try:
        return _call(f, inputs, args)
    except (RuntimeError, ValueError) as error:
        explained(error, f, module_of(f), inputs, args)
        raise


def explained(error: BaseException, f: Callable[..., Any], module: Optional[nn.Module],
              inputs: Sequence[torch.Tensor], args: Sequence[Any]) -> None:
    """Raise :func:`.diagnose.explain`'s clearer error for ``error`` (chained to it), if there is one."""
    clearer = explain(error, f, module, inputs, args)
    if clearer is not None:
        raise clearer from error


def _call(f: Callable[..., Any], inputs: Sequence[torch.Tensor], args: Sequence[Any]) -> Any:
    positional, keywords = unpack(args)
    if isinstance(f, nn.Module) and _writes_buffers(f):
        buffers = {name: b.clone() for name, b in f.named_buffers()}
        return torch.func.functional_call(f, buffers, tuple(inputs) + positional, keywords, strict=False)
    return f(*inputs, *positional, **keywords)
