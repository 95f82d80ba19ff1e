"""What every capture of a model shares: the refusal, the side-effect guard, hooks, copies.

A capture (torch.fx in :mod:`.graph`, torch.export in :mod:`.export`) raises :class:`Untraceable`
when its graph would not do what the model does; :mod:`.split` then tries the next one, and last
the substitution fallback (:mod:`.substitute`).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterable, Iterator, List, Sequence, Set, Tuple

import torch
from torch import nn
from torch.fx.node import Node
from torch.nn.modules import module as _module
from torch.utils import _pytree as pytree

from ..errors import Shown, fail


class Untraceable(Exception):
    """The model's graph cannot be used for this split; the reason is the message."""


HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOKS = tuple("_global" + attr for attr in HOOKS)


def global_hook_dicts() -> List[Dict[Any, Any]]:
    return [getattr(_module, name, {}) for name in _GLOBAL_HOOKS]


def refuse_hooks(traced: Iterable[nn.Module]) -> None:
    """:class:`Untraceable` when a hook would be traced (run once, at capture, not at every call)."""
    if any(global_hook_dicts()) or any(getattr(m, attr, None) for m in traced for attr in HOOKS):
        raise Untraceable("hooks are registered on modules whose forward would be traced")


def check_called_once(label: str, layer: nn.Module, calls: int) -> None:
    """A ValueError naming ``label`` unless ``layer`` ran exactly once in the forward pass."""
    if calls != 1:
        what = "is never called" if not calls else f"is called {calls} times"
        fail(label, "a layer that runs exactly once in the model's forward pass",
             Shown(f"a {type(layer).__name__} that {what}"),
             "Attribute to a module used once (e.g. wrap one of the calls in its own module).")


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


def upstream(targets: Iterable[Node]) -> Set[Node]:
    """``targets`` and every node they read, directly or through each other."""
    found: Set[Node] = set()
    stack = list(targets)
    while stack:
        n = stack.pop()
        if n not in found:
            found.add(n)
            stack.extend(n.all_input_nodes)
    return found


def tail_and_rest(start: Iterable[Node], skip: Callable[[Node], bool], recomputed: Callable[[Node], bool],
                  reads: Callable[[Node], Iterable[Node]]) -> Tuple[Set[Node], Set[Node]]:
    """From what the output needs (``start``) back to the cut (``skip``): the nodes the tail computes
    (``recomputed``) and the values it reads from the head (the rest, where the walk stops)."""
    tail: Set[Node] = set()
    rest: Set[Node] = set()
    stack = list(start)
    while stack:
        n = stack.pop()
        if n in tail or n in rest or skip(n):
            continue
        if recomputed(n):
            tail.add(n)
            stack.extend(reads(n))
        else:
            rest.add(n)
    return tail, rest
