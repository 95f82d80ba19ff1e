"""The fallback split for models torch.fx cannot trace: run the model with the layer substituted.

Every call builds a shallow copy of the modules on the path from the model to
the layer (they share parameters, buffers and every other submodule with the
model) in which the layer is replaced by a :class:`_Slot`. The head runs the
whole model through the copy and records the activation; the tail runs the
whole model again with the slot returning the given activation (or feeding it
to the layer, for the layer's input). The model itself is never modified and no
hook is registered, so concurrent calls do not interfere.

This path is correct for any model Captum's hooks handle, but slower: the prefix
is not separated, so the tail is a full forward pass per path step, and ``rest``
is the inputs and args themselves.
"""
from __future__ import annotations

import copy
import types
from typing import Any, Dict, List, Sequence, Tuple

from torch import nn

from ..calling import call
from ..errors import Shown, fail
from . import locking
from .graph import clone
from .resolve import registrations

_CAPTURE = object()


class _Slot(nn.Module):
    """Stands in for the layer: records its activation, or substitutes one."""

    def __init__(self, layer: nn.Module, to_input: bool, activation: Any = _CAPTURE) -> None:
        super().__init__()
        self.layer = layer
        self.to_input = to_input
        self.activation = activation
        self.captured: Any = None
        self.calls = 0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.activation is _CAPTURE:
            if self.to_input and self.calls == 1:
                self.captured = clone(args[0] if len(args) == 1 else tuple(args))
            out = self.layer(*args, **kwargs)
            if not self.to_input and self.calls == 1:
                self.captured = clone(out)
            return out
        if self.to_input:
            a = self.activation
            return self.layer(*clone(a if isinstance(a, tuple) else (a,)), **kwargs)
        return clone(self.activation)


def _rebound(m: nn.Module, c: nn.Module) -> Any:
    """``m``'s instance-level ``forward``, bound to its copy ``c`` (which holds the slot)."""
    forward = vars(m)["forward"]
    if isinstance(forward, types.MethodType) and forward.__self__ is m:
        return types.MethodType(forward.__func__, c)
    fail("model", "a forward defined on the module's class, or a method bound to the module itself",
         Shown(f"{type(m).__name__}.forward set on the instance to {forward!r}"),
         "fattr cannot route a layer's activation through a function that holds the original module; "
         "subclass the module and override forward there.")


def _substituted(model: nn.Module, layers: Sequence[nn.Module], slots: Sequence[_Slot]) -> nn.Module:
    """A shallow copy of ``model`` with each layer replaced by its slot at every registration."""
    copies: Dict[int, nn.Module] = {}

    def copy_of(m: nn.Module) -> nn.Module:
        c = copies.get(id(m))
        if c is None:
            c = copy.copy(m)
            c.__dict__["_modules"] = type(m._modules)(m._modules)
            if "forward" in vars(m):
                c.__dict__["forward"] = _rebound(m, c)
            copies[id(m)] = c
        return c

    for layer, slot in zip(layers, slots):
        if layer is model:
            return slot
        for path in registrations(model, layer):
            atoms = path.split(".")
            original, duplicate = model, copy_of(model)
            for atom in atoms[:-1]:
                child = original.get_submodule(atom)
                child_copy = copy_of(child)
                duplicate._modules[atom] = child_copy
                original, duplicate = child, child_copy
            duplicate._modules[atoms[-1]] = slot
    return copy_of(model)


def _check_calls(slots: Sequence[_Slot], labels: Sequence[str]) -> None:
    for slot, label in zip(slots, labels):
        if slot.calls != 1:
            what = "is never called" if not slot.calls else f"is called {slot.calls} times"
            fail(label, "a layer that runs exactly once in the model's forward pass",
                 Shown(f"a {type(slot.layer).__name__} that {what}"),
                 "Attribute to a module used once (e.g. wrap one of the calls in its own module).")


def _run(model: nn.Module, layers: Sequence[nn.Module], slots: List[_Slot], values: Sequence[Any],
         labels: Sequence[str]) -> Any:
    if any(layer is model for layer in layers) and len(layers) > 1:
        fail(labels[0].split("[")[0], "layers inside the model (not the model itself) when giving several",
             Shown("the model itself"))
    root = _substituted(model, layers, slots)
    with locking.reading():
        out = call(root, tuple(values))
    _check_calls(slots, labels)
    return out


def run_head(model: nn.Module, layers: Sequence[nn.Module], labels: Sequence[str], to_input: bool,
             values: Sequence[Any]) -> Tuple[List[Any], Tuple[Any, ...]]:
    """``(activations, rest)``: the recorded activations; ``rest`` is ``values`` (inputs and args)."""
    slots = [_Slot(layer, to_input) for layer in layers]
    _run(model, layers, slots, values, labels)
    return [s.captured for s in slots], tuple(values)


def run_tail(model: nn.Module, layers: Sequence[nn.Module], labels: Sequence[str], to_input: bool,
             activations: Sequence[Any], rest: Sequence[Any]) -> Any:
    """The model's output on ``rest`` with the layers' activations replaced."""
    slots = [_Slot(layer, to_input, a) for layer, a in zip(layers, activations)]
    return _run(model, layers, slots, rest, labels)
