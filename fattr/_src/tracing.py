"""Whether fattr is being traced: by ``torch.compile`` or by a ``torch.func`` transform.

Eager calls take the fast path of :mod:`.gradients` (plain ``torch.autograd.grad``,
no graph kept, differentiable on demand by :mod:`.recompute`). Under a trace that
path would break the graph (Dynamo does not trace ``torch.autograd.grad``) or
mix autograd levels (``vmap``/``grad`` around fattr), so traced calls use
``torch.func.grad``, which both understand: decided in :func:`.recompute.checkpoint`.
"""
from __future__ import annotations

import torch

# True while Dynamo traces the caller (``torch.compile``); torch's own function, not a wrapper: it runs on
# every call, and Dynamo folds it to a constant
is_compiling = torch.compiler.is_compiling
_peek = torch._C._functorch.peek_interpreter_stack


def is_traced() -> bool:
    """True under ``torch.compile`` or inside ``torch.func.vmap``, ``grad``, ``jvp``, ... (a functorch
    interpreter is active)."""
    return is_compiling() or _peek() is not None
