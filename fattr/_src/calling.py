"""Calling the user's ``f`` without side effects.

An ``nn.Module`` in training mode may write its buffers during a forward pass
(BatchNorm's running statistics). fattr runs such a module through
``torch.func.functional_call`` with copies of its buffers, so the module's own
buffers are never written. Parameters are not copied: gradients with respect to
them still flow. (A plain function that closes over a module cannot be protected
this way; pass the module itself as ``f`` when it has buffers in training mode.)
"""
from __future__ import annotations

import inspect
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import torch
from torch import nn

from .arguments import unpack
from .diagnose import explain
from .tracing import is_compiling


class PerModule(Dict[int, Tuple["weakref.ref[nn.Module]", Any]]):
    """Values remembered per module, ``{id(module): (weak reference, value)}``: keyed by identity (never the
    module's own ``__eq__`` or ``__hash__``), an entry dropped when its module is collected. The values must
    not refer to the module."""

    def of(self, module: nn.Module) -> Any:
        entry = self.get(id(module))
        return entry[1] if entry is not None and entry[0]() is module else None

    def put(self, module: nn.Module, value: Any) -> None:
        key = id(module)

        def drop(ref: Any) -> None:  # (when the module is collected; no lock: it may run inside one)
            if self.get(key, (None,))[0] is ref:
                self.pop(key, None)
        self[key] = (weakref.ref(module, drop), value)


def submodules(module: nn.Module) -> List[nn.Module]:
    """``module`` and its submodules, each once: a walk of ``_modules``, cheaper than ``modules()`` (it
    runs on every call)."""
    found: List[nn.Module] = []
    stack: List[Optional[nn.Module]] = [module]
    seen: Set[int] = set()
    while stack:
        m = stack.pop()
        if m is not None and id(m) not in seen:
            seen.add(id(m))
            found.append(m)
            stack.extend(m._modules.values())
    return found


def writes_buffers(module: nn.Module) -> bool:
    """Whether a call of ``module`` would write a buffer (one of its modules is in training mode)."""
    return any([m.training and m._buffers and any(b is not None for b in m._buffers.values())
                for m in (submodules(module) if module._modules else (module,))])


class Bound:
    """``fn``, whose parameters and training mode are ``module``'s (a split's tail, a neuron). (A plain
    class: Dynamo does not trace the ``__init__`` of a frozen dataclass made inside a compiled call.)"""

    __slots__ = ("fn", "module")

    def __init__(self, fn: Callable[..., Any], module: Optional[nn.Module]) -> None:
        self.fn, self.module = fn, module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def module_of(f: Any) -> Optional[nn.Module]:
    """The module behind ``f``: ``f`` itself, the owner of a bound method, or a :class:`Bound`'s module."""
    if isinstance(f, nn.Module):
        return f
    if isinstance(f, Bound):
        return f.module
    owner = getattr(f, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def modules_of(f: Callable[..., Any]) -> List[nn.Module]:
    """The ``nn.Module`` objects ``f`` can reach directly: itself, a bound ``self``, a partial's
    arguments, its closure cells, defaults and the globals its code names (outermost first)."""
    found: List[nn.Module] = []
    seen: Set[int] = set()

    def add(obj: Any, depth: int) -> None:
        if isinstance(obj, nn.Module):
            if id(obj) not in seen:
                seen.add(id(obj))
                found.append(obj)
            return
        if depth > 2 or isinstance(obj, (str, bytes, int, float, bool, torch.Tensor, type(None))):
            return
        if isinstance(obj, (list, tuple, dict)):
            for item in list(obj.values() if isinstance(obj, dict) else obj)[:16]:
                add(item, depth + 1)
            return
        owner = getattr(obj, "__self__", None)
        if owner is not None and not inspect.ismodule(owner):
            add(owner, depth + 1)
        if hasattr(obj, "func") and hasattr(obj, "args"):  # functools.partial: each part one level down
            add([obj.func, obj.args, getattr(obj, "keywords", {})], depth)
        code = getattr(obj, "__code__", None)
        if code is not None:
            for cell in getattr(obj, "__closure__", None) or ():
                try:
                    add(cell.cell_contents, depth + 1)
                except ValueError:  # an empty cell
                    pass
            add(getattr(obj, "__defaults__", None) or (), depth + 1)
            names = getattr(obj, "__globals__", {})
            for name in code.co_names:
                if name in names:
                    add(names[name], depth + 1)
        elif callable(obj) and not isinstance(obj, type) and hasattr(type(obj), "__call__"):
            add(getattr(type(obj), "__call__"), depth + 1)
            add(vars(obj) if hasattr(obj, "__dict__") else {}, depth + 1)

    add(f, 0)
    # keep the outermost: a module inside another found one is reached through it
    inner = {id(sub) for m in found for sub in submodules(m) if sub is not m}
    return [m for m in found if id(m) not in inner]


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
    if not args and not (isinstance(f, nn.Module) and writes_buffers(f)):  # the common case, unpacked
        return f(*inputs)
    positional, keywords = unpack(args)
    if isinstance(f, nn.Module) and writes_buffers(f):
        buffers = {name: b.clone() for name, b in f.named_buffers()}
        return torch.func.functional_call(f, buffers, tuple(inputs) + positional, keywords, strict=False)
    return f(*inputs, *positional, **keywords)
