"""Which modules ``layer`` names: a submodule of the model, its dotted name, or a list of them."""
from __future__ import annotations

from typing import Any, Callable, List, Tuple

from torch import nn

from ..calling import submodules
from ..errors import Shown, fail

_HINT = "Pass a submodule of the model or its dotted name, e.g. 'body.1.conv2' (see model.named_modules())."


def submodule(target: str) -> Callable[[nn.Module], nn.Module]:
    """``model.get_submodule(target)``, looked up in the registrations first (per call: live modules)."""
    atoms = target.split(".")

    def get(model: nn.Module) -> nn.Module:
        m = model
        try:
            for atom in atoms:
                m = m._modules[atom]  # type: ignore[assignment]
        except (KeyError, AttributeError):
            return model.get_submodule(target)
        return m if m is not None else model.get_submodule(target)
    return get


def _one(model: nn.Module, layer: Any, name: str) -> nn.Module:
    if isinstance(layer, str):
        try:
            return submodule(layer)(model)
        except AttributeError:
            fail(name, "the dotted name of a submodule of the model", Shown(repr(layer)), _HINT)
    if not isinstance(layer, nn.Module):
        fail(name, "an nn.Module inside the model or its dotted name", layer, _HINT, kind=TypeError)
    if not any([m is layer for m in submodules(model)]):
        fail(name, "a submodule of the model", Shown(f"a {type(layer).__name__} that is not inside the model"), _HINT)
    return layer


def resolve(model: nn.Module, layer: Any, name: str = "layer", *,
            allow_list: bool = True) -> Tuple[Tuple[nn.Module, ...], bool]:
    """``(modules, was_list)``: the module(s) ``layer`` names inside ``model``.

    Raises ``ValueError`` naming ``name`` for a module or name not in the model,
    ``TypeError`` for anything else.
    """
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
