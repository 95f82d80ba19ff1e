"""What every capture of a model shares: the refusal, the side-effect guard, hooks, copies.

A capture (torch.fx in :mod:`.graph`, torch.export in :mod:`.export`) raises :class:`Untraceable`
when its graph would not do what the model does; :mod:`.split` then tries the next one, and last
the substitution fallback (:mod:`.substitute`).
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterable, Iterator, List, Sequence, Tuple

import torch
from torch import nn
from torch.nn.modules import module as _module
from torch.utils import _pytree as pytree


class Untraceable(Exception):
    """The model's graph cannot be used for this split; the reason is the message."""



HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def has_hooks(m: nn.Module) -> bool:
    return any(len(getattr(m, attr, {})) for attr in HOOKS)


_GLOBAL_HOOKS = tuple("_global" + attr for attr in HOOKS)


def global_hook_dicts() -> List[Dict[Any, Any]]:
    return [getattr(_module, name, {}) for name in _GLOBAL_HOOKS]


def global_hooks() -> bool:
    return any(len(d) for d in global_hook_dicts())


def refuse_hooks(traced: Iterable[nn.Module]) -> None:
    """:class:`Untraceable` when a hook would be traced (run once, at capture, not at every call)."""
    if global_hooks() or any(has_hooks(m) for m in traced):
        raise Untraceable("hooks are registered on modules whose forward would be traced")


def _same_value(a: Any, b: Any) -> bool:
    """``a is b``, or equal plain values (not tensors) of one type."""
    if a is b:
        return True
    if type(a) is not type(b) or isinstance(a, (torch.Tensor, nn.Module)):
        return False
    try:
        return bool(a == b)
    except Exception:  # an object whose comparison fails or is ambiguous
        return False


@contextlib.contextmanager
def attributes_kept(modules: Iterable[nn.Module], strict: bool = True) -> Iterator[None]:
    """Undo whatever a forward sets on ``modules``; with ``strict``, :class:`Untraceable` if it set
    anything (a traced graph would then not do what the model does)."""
    saved = [(m, dict(vars(m))) for m in modules]
    changed = False
    try:
        yield
    finally:
        for m, before in saved:
            now = vars(m)
            if now.keys() != before.keys() or any(not _same_value(now.get(k), v) for k, v in before.items()):
                changed = True
            for k in now.keys() - before.keys():  # key by key: another thread may be reading the module
                del now[k]
            for k, v in before.items():
                if now.get(k) is not v:
                    now[k] = v  # the very objects (an export rebuilds equal containers)
    if changed and strict:
        raise Untraceable("the model's forward sets module attributes")


def clone(value: Any) -> Any:
    """Copy every tensor in ``value`` (the tail may modify its inputs in place)."""
    if isinstance(value, torch.Tensor):  # the usual case, without the tree walk
        return value.clone()
    return pytree.tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, value)


def pack(layouts: Iterable[Tuple[bool, int]], flat: Sequence[Any]) -> List[Any]:
    """Flat values grouped per layer (``layouts``: ``(gave a tuple, how many)`` each): a tuple or one value."""
    out, i = [], 0
    for is_tuple, k in layouts:
        out.append(tuple(flat[i:i + k]) if is_tuple else flat[i])
        i += k
    return out
