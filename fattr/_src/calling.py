"""Calling the user's ``f`` without side effects.

An ``nn.Module`` in training mode may write its buffers during a forward pass
(BatchNorm's running statistics). fattr runs such a module through
``torch.func.functional_call`` with copies of its buffers, so the module's own
buffers are never written. Parameters are not copied: gradients with respect to
them still flow. (A plain function that closes over a module cannot be protected
this way; pass the module itself as ``f`` when it has buffers in training mode.)
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn


def _writes_buffers(module: nn.Module) -> bool:
    for m in module.modules():
        if m.training and m._buffers and any(b is not None for b in m._buffers.values()):
            return True
    return False


def call(f: Callable[..., Any], inputs: Sequence[torch.Tensor], args: Sequence[Any] = ()) -> Any:
    """``f(*inputs, *args)``, leaving every buffer of ``f`` (if a module) untouched."""
    if isinstance(f, nn.Module) and _writes_buffers(f):
        buffers = {name: b.clone() for name, b in f.named_buffers()}
        return torch.func.functional_call(f, buffers, tuple(inputs) + tuple(args), strict=False)
    return f(*inputs, *args)
