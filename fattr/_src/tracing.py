"""Whether fattr is being traced: by ``torch.compile`` or by a ``torch.func`` transform.

Eager calls take the fast path of :mod:`.gradients` (plain ``torch.autograd.grad``,
no graph kept, differentiable on demand by :mod:`.recompute`). Under a trace that
path would break the graph (Dynamo does not trace ``torch.autograd.grad``) or
mix autograd levels (``vmap``/``grad`` around fattr), so traced calls use
``torch.func.grad``, which both understand: decided in :func:`.recompute.checkpoint`.
"""
from __future__ import annotations

import torch


def is_compiling() -> bool:
    """True while Dynamo traces the caller (``torch.compile``)."""
    is_compiling_ = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    if is_compiling_ is None:  # torch < 2.3
        import torch._dynamo as dynamo
        is_compiling_ = dynamo.is_compiling
    return bool(is_compiling_())


def in_functorch_transform() -> bool:
    """True inside ``torch.func.vmap``, ``grad``, ``jvp``, ... (a functorch interpreter is active)."""
    peek = getattr(torch._C._functorch, "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


def is_traced() -> bool:
    return is_compiling() or in_functorch_transform()
