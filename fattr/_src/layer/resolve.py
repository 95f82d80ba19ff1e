"""Which modules ``layer`` names: a submodule of the model, its dotted name, or a list of them."""
from __future__ import annotations

import threading
import weakref
from typing import Any, Dict, Hashable, List, Optional, Sequence, Tuple

from torch import nn

from ..errors import Shown, fail
from . import locking

_HINT = "Pass a submodule of the model or its dotted name, e.g. 'body.1.conv2' (see model.named_modules())."


def _one(model: nn.Module, layer: Any, name: str) -> nn.Module:
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            fail(name, "the dotted name of a submodule of the model", Shown(repr(layer)), _HINT)
    if not isinstance(layer, nn.Module):
        fail(name, "an nn.Module inside the model or its dotted name", layer, _HINT, kind=TypeError)
    if not any(m is layer for m in model.modules()):
        fail(name, "a submodule of the model", Shown(f"a {type(layer).__name__} that is not inside the model"), _HINT)
    return layer


# model (weakly) -> {(layer spec, allow_list): (per module (path atoms, weak reference), was_list)}
_RESOLVED: "weakref.WeakKeyDictionary[nn.Module, Dict[Hashable, Any]]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _spec(layer: Any) -> Optional[Hashable]:
    """A key for ``layer``: names as they are, modules by id (checked by identity on use); None: not kept."""
    if isinstance(layer, str):
        return layer
    if isinstance(layer, nn.Module):
        return id(layer)
    if isinstance(layer, (list, tuple)):
        keys = tuple(_spec(item) for item in layer)
        return None if None in keys else ("list",) + keys
    return None


def _at(model: nn.Module, atoms: Sequence[str]) -> Optional[nn.Module]:
    m: Optional[nn.Module] = model
    for atom in atoms:
        m = m._modules.get(atom) if m is not None else None
    return m


def resolve(model: nn.Module, layer: Any, name: str = "layer", *,
            allow_list: bool = True) -> Tuple[Tuple[nn.Module, ...], bool]:
    """``(modules, was_list)``: the module(s) ``layer`` names inside ``model``.

    A resolution is remembered per model (weakly) and reused while every module is still
    registered where it was found (a walk of a few ``_modules`` dicts instead of a scan of the model).

    Raises ``ValueError`` naming ``name`` for a module or name not in the model,
    ``TypeError`` for anything else.
    """
    key = (_spec(layer), allow_list)
    try:
        with _LOCK:
            kept = _RESOLVED.get(model, {}).get(key) if key[0] is not None else None
    except TypeError:  # a model that cannot be a weak key (unhashable)
        key, kept = (None, allow_list), None
    if kept is not None:
        items = layer if kept[1] else [layer]
        found = [ref() for _, ref in kept[0]]
        if all(m is not None and _at(model, atoms) is m and (isinstance(item, str) or item is m)
               for (atoms, _), m, item in zip(kept[0], found, items)):
            return tuple(found), kept[1]
    with locking.reading():  # not while torch.export swaps submodules
        modules, was_list = _resolve(model, layer, name, allow_list)
        items = layer if was_list else [layer]
        paths = [item.split(".") if isinstance(item, str) else registrations(model, m)[0].split(".")
                 for item, m in zip(items, modules)]
    if key[0] is not None:
        with _LOCK:
            _RESOLVED.setdefault(model, {})[key] = (
                tuple(([a for a in atoms if a], weakref.ref(m)) for atoms, m in zip(paths, modules)), was_list)
    return modules, was_list


def _resolve(model: nn.Module, layer: Any, name: str, allow_list: bool) -> Tuple[Tuple[nn.Module, ...], bool]:
    if not isinstance(model, nn.Module):
        fail("model", "a torch.nn.Module (layer methods split the module at the layer)", model, kind=TypeError)
    if isinstance(layer, (list, tuple)) and not isinstance(layer, str):
        if not allow_list:
            fail(name, "one module or dotted name (this method takes a single layer)", layer, kind=TypeError)
        if len(layer) == 0:
            fail(name, "a non-empty list of modules or dotted names", layer)
        modules: List[nn.Module] = [_one(model, item, f"{name}[{i}]") for i, item in enumerate(layer)]
        for i, m in enumerate(modules):
            if any(m is other for other in modules[:i]):
                fail(f"{name}[{i}]", "distinct layers",
                     Shown(f"the same module as an earlier entry ({type(m).__name__})"))
        return tuple(modules), True
    return (_one(model, layer, name),), False


def registrations(model: nn.Module, layer: nn.Module) -> List[str]:
    """Every dotted name under which ``layer`` is registered in ``model`` (``''`` for the model itself)."""
    return [n for n, m in model.named_modules(remove_duplicate=False) if m is layer]


def resolve_in(f: Any, roots: List[nn.Module], layer: Any, name: str = "layer", *,
               allow_list: bool = True) -> Tuple[Tuple[nn.Module, ...], bool]:
    """``(modules, was_list)`` for a function ``f`` that is not a module: ``layer`` must be module
    objects (there is no module to look a dotted name up in); ``roots`` are the modules ``f`` exposes."""
    if not callable(f):
        fail("model", "an nn.Module or a callable whose computation calls the layer", f, kind=TypeError)
    items = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    was_list = isinstance(layer, (list, tuple))
    if was_list and not allow_list:
        fail(name, "one module (this method takes a single layer)", layer, kind=TypeError)
    if was_list and not items:
        fail(name, "a non-empty list of modules", layer)
    for i, item in enumerate(items):
        label = f"{name}[{i}]" if was_list else name
        if isinstance(item, str):
            fail(label, "a module object when the model is a function (a dotted name needs an nn.Module "
                 "as the first argument)", Shown(repr(item)),
                 "Pass the submodule itself, e.g. model.bert.embeddings.", kind=TypeError)
        if not isinstance(item, nn.Module):
            fail(label, "an nn.Module that the function calls", item, kind=TypeError)
        if any(item is other for other in items[:i]):
            fail(label, "distinct layers", Shown(f"the same module as an earlier entry ({type(item).__name__})"))
    return tuple(items), was_list
