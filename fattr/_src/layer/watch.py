"""A fingerprint re-checked in microseconds, by the version tags of the dicts it read.

CPython gives every dict a version tag (PEP 509; torch.compile's guards read it through the function used
here) that changes at every write and is never shared by two dict states. :func:`record` notes the versions
of the dicts a :func:`.fingerprint.fingerprint` read (a module's ``__dict__``, registrations, parameters,
buffers and hooks; a config's ``__dict__``; a plain dict), the classes and ``forward`` functions it compared
by identity, and the summary of values without a version (a list, a set). When :func:`unchanged` is true,
the fingerprint would come out the same; a false answer may be spurious (a dict written back with the same
content), and the caller then computes the fingerprint. Where the tags do not behave as this relies on,
:func:`record` returns None: every check computes the fingerprint.
"""
from __future__ import annotations

import enum
import functools
import numbers
import operator
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from torch import Tensor, nn

from .capture import HOOKS, global_hook_dicts
from .fingerprint import _BY_IDENTITY, _MODULE_STATE, _SCALARS, inplace, read_outside, summary

try:  # (private to torch, as is the whole of torch.compile's guard machinery)
    from torch._C._dynamo.guards import dict_version as dict_version  # (re-exported: the one source of tags)
except ImportError:  # pragma: no cover
    dict_version = None  # type: ignore[assignment]
_version = dict_version

Watch = Tuple[Any, ...]


def _works() -> bool:
    """Whether version tags change with every write this module relies on, and differ between dicts."""
    if _version is None:  # pragma: no cover
        return False
    try:
        m = nn.Module()
        seen = [_version(m.__dict__)]
        writes: List[Callable[[], None]] = [lambda: setattr(m, "training", False), lambda: setattr(m, "extra", 1),
                                            lambda: setattr(m, "extra", 2), lambda: delattr(m, "extra")]
        for write in writes:
            write()
            seen.append(_version(m.__dict__))
        seen += [_version({}), _version({})]
        return len(set(seen)) == len(seen)
    except Exception:  # pragma: no cover
        return False


WORKS = _works()


def _ref(obj: Any) -> Callable[[], Any]:
    try:
        return weakref.ref(obj)
    except TypeError:  # a builtin function (its forward): holds no model
        return lambda: obj


def _value(v: Any, memo: Set[int]) -> Optional[Tuple[Any, ...]]:
    """How to check ``v`` again, beyond its identity (None: nothing more, its container's version covers it)."""
    t = type(v)
    if t in _SCALARS or isinstance(v, _BY_IDENTITY) or id(v) in memo:  # (an object seen earlier: checked there)
        return None
    memo.add(id(v))
    if t is dict and all([type(k) in _SCALARS for k in v]):
        return ("dict", _version(v), _deep(v, memo))
    if t is tuple or t is frozenset or (isinstance(v, tuple) and hasattr(t, "_fields")):  # immutable containers
        deep = tuple([(i, n) for i, x in enumerate(v) for n in [_value(x, memo)] if n is not None])
        return ("items", deep) if deep else None
    attributes = getattr(v, "__dict__", None)
    if type(attributes) is dict and not isinstance(v, (numbers.Number, enum.Enum, functools.partial)):
        return ("object", weakref.ref(t), _version(attributes), _deep(attributes, memo))
    return ("content", summary(v))  # a list, a set, an OrderedDict, a partial, a number: summarised again


def _deep(d: Dict[Any, Any], memo: Set[int]) -> Tuple[Tuple[Any, Tuple[Any, ...]], ...]:
    return tuple([(k, n) for k, x in d.items() for n in [_value(x, memo)] if n is not None])


def _same(v: Any, node: Tuple[Any, ...]) -> bool:
    kind = node[0]
    if kind == "dict":
        return type(v) is dict and _version(v) == node[1] and _all_same(v, node[2])
    if kind == "items":
        items = tuple(v)
        return all([_same(items[i], n) for i, n in node[1]])
    if kind == "object":
        attributes = getattr(v, "__dict__", None)
        return (type(v) is node[1]() and type(attributes) is dict and _version(attributes) == node[2]
                and _all_same(attributes, node[3]))
    try:
        return bool(summary(v) == node[1])
    except Exception:  # (no longer summarisable: not the same)
        return False


def _all_same(d: Dict[Any, Any], deep: Tuple[Tuple[Any, Tuple[Any, ...]], ...]) -> bool:
    return all([_same(d[k], n) for k, n in deep])


_STATE = operator.itemgetter("_modules", "_parameters", "_buffers", *HOOKS)  # the dicts of a traced module


def record(roots: Sequence[nn.Module], traced: Set[int]) -> Optional[Watch]:
    """The watch of a fingerprint of ``roots`` just computed (``traced``: the ids of the modules whose state it
    summarised); None where versions are not usable. One entry per module, referred to weakly: the modules
    are still those of the tree when every parent's registrations are unchanged. An untraced module: its
    registrations and ``inplace``; a traced one: its own dicts, its class's ``forward``, its attributes."""
    if not WORKS:
        return None
    memo: Set[int] = set()
    entries: List[Tuple[Any, ...]] = []
    stack: List[Any] = list(reversed(roots))
    seen: Set[int] = set()
    try:
        while stack:
            m = stack.pop()
            if m is None or id(m) in seen:
                continue
            seen.add(id(m))
            d, cls = m.__dict__, type(m)
            if id(m) in traced:
                attributes = {k: v for k, v in d.items() if k not in _MODULE_STATE}
                entries.append((weakref.ref(m), weakref.ref(cls), tuple(map(_version, _STATE(d))) + (_version(d),),
                                _ref(cls.forward), _deep(attributes, memo), read_outside(cls)))
            else:
                entries.append((weakref.ref(m), weakref.ref(cls), (_version(d["_modules"]),), None, inplace(m), ()))
            stack.extend(reversed(m._modules.values()))
    except (KeyError, TypeError):  # a module without nn.Module's own dicts (or with other mappings in their place)
        return None
    return tuple([weakref.ref(r) for r in roots]), tuple(entries), tuple([_version(d) for d in global_hook_dicts()])


def _still(where: Any, name: str, value: Any) -> bool:
    """Whether a class attribute or global (:func:`.fingerprint.read_outside`) still holds ``value``: the same
    tensor, or a scalar of the same type and value."""
    now = (where if type(where) is dict else where.__dict__).get(name, _still)
    return now is value or type(now) is type(value) and not isinstance(value, Tensor) and bool(now == value)


def unchanged(watch: Watch, roots: Sequence[nn.Module]) -> bool:
    """Whether the fingerprint :func:`record` watched would come out the same for ``roots`` now."""
    refs, entries, hooks = watch
    if (tuple([_version(d) for d in global_hook_dicts()]) != hooks or len(refs) != len(roots)
            or not all([r() is root for r, root in zip(refs, roots)])):
        return False
    try:
        for ref, kind, versions, forward, extra, outside in entries:
            m, cls = ref(), kind()
            if m is None or type(m) is not cls:
                return False
            d = m.__dict__
            if forward is None:
                if _version(d["_modules"]) != versions[0] or inplace(m) != extra:
                    return False
            elif (tuple(map(_version, _STATE(d))) + (_version(d),) != versions or cls.forward is not forward()
                  or extra and not _all_same(d, extra) or outside and not all([_still(*o) for o in outside])):
                return False
    except (KeyError, TypeError):  # a module's own dict removed or replaced
        return False
    return True
