"""Fingerprints: a comparable summary of what a captured graph read from a model.

A plan is reused while the model's fingerprint is unchanged (:mod:`.split`'s shared cache); parameter
and buffer values are not part of it (graphs read them at call time), so weight updates never retrace,
while a replaced submodule, ``train()``/``eval()``, a hook, or a changed flag or config value does.
"""
from __future__ import annotations

import enum
import functools
import numbers
import types
import weakref
from collections import OrderedDict
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Set, Tuple

import torch
from torch import nn

from .capture import HOOKS, global_hook_dicts


class Uncacheable(Exception):
    """A traced module holds an attribute :func:`fingerprint` cannot summarise (its plans are not shared)."""


class Same:
    """Equal to another ``_Same`` of the same live object; refers to it weakly (never keeps a model alive)."""

    __slots__ = ("_ref", "_id")

    def __init__(self, obj: Any) -> None:
        self._id = id(obj)
        try:
            self._ref: Callable[[], Any] = weakref.ref(obj)
        except TypeError:
            owner = getattr(obj, "__self__", None)
            builtin = isinstance(obj, types.BuiltinFunctionType)
            if not (builtin and (owner is None or isinstance(owner, types.ModuleType))):
                raise Uncacheable(f"a {type(obj).__name__} attribute") from None
            self._ref = lambda: obj  # a builtin function (torch.tanh) holds no model

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Same) or other._id != self._id:
            return False
        obj = self._ref()
        return obj is not None and obj is other._ref()

    def __hash__(self) -> int:
        return self._id


# Attribute values compared by value (with their type: 1, 1.0 and True differ) and by identity.
_SCALARS = frozenset({bool, int, float, complex, str, bytes, type(None), type(Ellipsis), range, slice,
                      torch.dtype, torch.device, torch.layout, torch.memory_format})
_BY_IDENTITY = (torch.Tensor, nn.Module, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
_CONTAINERS = frozenset({tuple, list, torch.Size, dict, OrderedDict, set, frozenset})
_MODULE_STATE = frozenset(vars(nn.Module()))  # nn.Module's own bookkeeping (summarised separately)
_MAX_ITEMS = 20000  # attribute values per fingerprint; a model with more is not cached
_MAX_DEPTH = 8


def _value(v: Any, budget: List[int], depth: int, memo: Dict[int, Hashable]) -> Hashable:
    """A comparable summary of an attribute value holding no strong reference to anything mutable.

    Scalars by value; tensors, modules, classes and functions by identity; containers by content;
    other objects (a model's config, a ``functools.partial``) by their type and attributes, each
    summarised once per fingerprint (``memo``).
    """
    budget[0] -= 1
    if budget[0] < 0 or depth > _MAX_DEPTH:
        raise Uncacheable("too many or too deeply nested attribute values")
    t = type(v)
    if t in _SCALARS or isinstance(v, (numbers.Number, enum.Enum)):  # numbers: numpy scalars too
        return (t, v)
    if isinstance(v, _BY_IDENTITY):
        return Same(v)
    if t in _CONTAINERS or (isinstance(v, tuple) and hasattr(t, "_fields")):  # namedtuples too
        if isinstance(v, dict):
            return (t, tuple((_value(k, budget, depth + 1, memo), _value(x, budget, depth + 1, memo))
                             for k, x in v.items()))
        items = tuple(_value(x, budget, depth + 1, memo) for x in v)
        return (t, frozenset(items) if isinstance(v, (set, frozenset)) else items)
    if id(v) in memo:
        return memo[id(v)]
    memo[id(v)] = ("cycle", id(v))
    if isinstance(v, functools.partial):
        summary: Hashable = (Same(t), _value((v.func, v.args, v.keywords), budget, depth + 1, memo))
    elif hasattr(v, "__dict__") and not isinstance(v, types.ModuleType):  # by type and content
        summary = (Same(t), tuple((k, _value(x, budget, depth + 1, memo)) for k, x in vars(v).items()))
    else:
        raise Uncacheable(f"a {t.__name__} attribute")
    memo[id(v)] = summary
    return summary


def summary(value: Any) -> Hashable:
    """:func:`_value` of one value, with a fresh budget."""
    return _value(value, [_MAX_ITEMS], 0, {})


def inplace(m: nn.Module) -> bool:
    """Whether ``m`` (untraced) works in place: the flag the in-place check reads."""
    d = m.__dict__
    return (d["inplace"] if "inplace" in d else getattr(type(m), "inplace", False)) is True


def read_outside(cls: type) -> Tuple[Tuple[Any, str, Any], ...]:
    """What tracing ``cls.forward`` may read besides the module itself and bake into the graph: the scalar
    and tensor attributes of ``cls`` and its bases (torch's own classes aside), and the scalar and tensor
    globals its ``forward`` names. ``(where, name, value)``, ``where`` a class or a globals dict. (Globals
    that other functions ``forward`` calls read are not covered.)"""
    found: List[Tuple[Any, str, Any]] = [
        (klass, name, v) for klass in cls.__mro__ if not klass.__module__.startswith(("torch.", "builtins"))
        for name, v in vars(klass).items() if not name.startswith("__") and _plain(v)]
    forward = getattr(cls, "forward", None)
    names, where = getattr(getattr(forward, "__code__", None), "co_names", ()), getattr(forward, "__globals__", None)
    if type(where) is dict and not str(where.get("__name__", "")).startswith("torch."):
        found += [(where, name, where[name]) for name in names if name in where and _plain(where[name])]
    return tuple(found)


def _plain(v: Any) -> bool:
    return type(v) in _SCALARS or isinstance(v, torch.Tensor)


def _traced_state(m: nn.Module, budget: List[int], memo: Dict[int, Hashable], pins: List[Any]) -> Hashable:
    """What tracing ``m.forward`` reads from ``m`` (parameter and buffer values are read at call time);
    its class and the class's ``forward`` by identity (their ids, the objects added to ``pins``), and
    what it reads from its class and globals (:func:`read_outside`)."""
    cls, d = type(m), m.__dict__
    forward: Any = cls.forward
    pins.append(cls)
    if type(forward) is types.FunctionType:
        pins.append(forward)
        forward = id(forward)
    else:  # (a builtin or a callable object: it may not be referred to weakly)
        forward = Same(forward)
    return (id(cls), forward, m.training, tuple([tuple(d[h]) if h in d else () for h in HOOKS]),
            tuple([(k, p is None) for k, p in m._parameters.items()]),
            tuple([(k, b is None) for k, b in m._buffers.items()]),
            tuple([(k, _value(v, budget, 0, memo)) for k, v in d.items() if k not in _MODULE_STATE]),
            tuple([(name, _value(v, budget, 0, memo)) for _, name, v in read_outside(cls)]))


def fingerprint(model: nn.Module, layers: Sequence[nn.Module], *, everything: bool = False,
                traced_ids: Optional[Set[int]] = None) -> Tuple[Hashable, ...]:
    """A summary, compared with ``==``, of everything :func:`plan` reads from ``model`` for ``layers``.

    It covers the module tree (every registration: name and module identity), each
    untraced module's ``inplace`` flag (the in-place check reads it), the ids of the
    global module hooks, and for each traced module (one containing a layer): its
    class and the class's ``forward``, ``training``, its hooks' ids, which parameters
    and buffers are ``None``, and every other instance attribute (an instance-level
    ``forward`` included): scalars by value, containers by content, tensors,
    modules and functions by identity. Parameter and buffer values are not in it:
    head and tail read them at call time. Objects are referred to weakly: modules, classes
    and forwards appear as their ids, with a weak reference to each alongside, so two
    fingerprints are equal when the ids are and the objects still live (a weak reference
    to a collected object equals no other, and a live object's id is never reused). Also
    the scalar and tensor class attributes and globals of each traced ``forward``
    (:func:`read_outside`); what the traced code reads from elsewhere (globals of the functions
    it calls, the grad mode) is not covered.

    ``traced_ids``, when given, receives the ids of the traced modules (for :func:`.watch.record`).

    Raises:
      Uncacheable: a traced module has an attribute of another type (a mutable
        object that cannot be summarised), or very many values.
    """
    layer_ids = {id(layer) for layer in layers}
    contains: Dict[int, bool] = {}
    parts: List[Hashable] = []
    pins: List[Any] = []
    budget = [_MAX_ITEMS]
    memo: Dict[int, Hashable] = {}

    def visit(m: nn.Module) -> bool:  # whether m is or contains a layer (runs per call: kept lean)
        key = id(m)
        if key in contains:  # registered twice (or a cycle)
            return contains[key]
        contains[key] = False
        children = tuple([(name, None if c is None else id(c)) for name, c in m._modules.items()])
        live = [c for c in m._modules.values() if c is not None]
        pins.extend(live)
        traced = any([visit(c) for c in live]) or everything  # (every child visited)
        if traced:
            parts.append((children, _traced_state(m, budget, memo, pins)))
            if traced_ids is not None:
                traced_ids.add(key)
        else:
            parts.append((children, inplace(m)))
        contains[key] = traced or key in layer_ids
        return contains[key]

    visit(model)
    parts.append(tuple([tuple(d) for d in global_hook_dicts()]))
    return tuple(parts), tuple(map(weakref.ref, pins))


def of_function(roots: Sequence[nn.Module], traced_ids: Optional[Set[int]] = None) -> Hashable:
    """What an export of a function reads from its modules ``roots`` (every module's forward is traced)."""
    return tuple(fingerprint(root, (), everything=True, traced_ids=traced_ids) for root in roots)


def code_key(f: Any) -> Hashable:
    """``f``'s identity for the cache: a module by its fingerprint (None here); a function by its code
    and what its closure holds, so that a lambda made anew for every call shares its plans."""
    if isinstance(f, nn.Module):
        return None
    code = getattr(f, "__code__", None)
    if code is None:
        return Same(f)
    try:
        cells = tuple(c.cell_contents for c in (getattr(f, "__closure__", None) or ()))
        g = getattr(f, "__globals__", None) or {}
        named = tuple([(n, g[n]) for n in code.co_names if n in g and _plain(g[n])])  # the globals it reads
        return (Same(code), summary((cells, getattr(f, "__defaults__", None), getattr(f, "__kwdefaults__", None),
                                     named)))
    except (Uncacheable, ValueError):
        return Same(f)
