"""Which rule each module of a model gets, read once per call without touching the model.

As in Captum, the leaf modules (modules without children) are the layers: a rule given for the module
(``rules={module or dotted name: rule}``, else a ``rule`` attribute a Captum user set on it), else the
default of its type (:data:`EPSILON_TYPES`: the epsilon rule; :data:`PASS_TYPES`: relevance passed
through unchanged); a leaf of any other type is refused, naming it. A rule on a pass-through module is
ignored, as in Captum.

A module with parameters is recognised in the forward pass by its weight (:attr:`Plan.weighted`); a
module without (pooling, Captum's ``Addition_Module``) with a rule other than the default of its operation
is recognised by the module call on the Python stack (:attr:`Plan.by_module`), which only an eager call can
read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from torch import nn

from ..calling import modules_of
from ..errors import Shown, fail
from .rules import EPSILON, EpsilonRule, Resolved, normalise

_WEIGHTED: Tuple[type, ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm1d, nn.BatchNorm2d,
                               nn.BatchNorm3d)
_POOLING: Tuple[type, ...] = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                              nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                              nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
EPSILON_TYPES = _WEIGHTED + _POOLING  # and Captum's ``Addition_Module`` (by name: fattr never imports Captum)
PASS_TYPES: Tuple[type, ...] = (nn.ReLU, nn.Tanh, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                                nn.Identity, nn.Flatten, nn.Unflatten)
ADDITION = "Addition_Module"


@dataclass(frozen=True)
class Plan:
    """The rules of one model.

    Attributes:
      weighted: ``(module, rule)`` for the modules with a weight (recognised by ``module.weight`` as the forward
        pass reads it: a recomputation may swap the parameters, ``torch.func.functional_call`` style).
      by_module: ``id(module) -> rule`` for modules without parameters whose rule is not their operation's
        default (found by the module call on the stack).
      layers: ``(name, module, rule)`` of every leaf with a rule, the rule as given (the default: an
        :class:`.rules.EpsilonRule`), in order (Captum's ``verbose`` lines).
    """

    weighted: Tuple[Tuple[nn.Module, Resolved], ...]
    by_module: Dict[int, Resolved]
    layers: Tuple[Tuple[str, nn.Module, Any], ...]


def _leaves(roots: List[nn.Module]) -> List[Tuple[str, nn.Module]]:
    found: Dict[int, Tuple[str, nn.Module]] = {}
    for root in roots:
        leaves = [(n, m) for n, m in root.named_modules() if next(iter(m.children()), None) is None]
        for name, m in leaves or [("", root)]:
            found.setdefault(id(m), (name, m))
    return list(found.values())


def _given(roots: List[nn.Module], rules: Optional[Mapping[Any, Any]]) -> Dict[int, Tuple[str, Any]]:
    """``id(module) -> (where, rule)`` from ``rules`` (keys: submodules or dotted names)."""
    if rules is None:
        return {}
    if not isinstance(rules, Mapping):
        fail("rules", "a mapping from a module (or its dotted name) to an LRP rule", rules, kind=TypeError)
    names = {id(m): name for root in reversed(roots) for name, m in root.named_modules()}
    by_name = {name: m for root in reversed(roots) for name, m in root.named_modules()}
    out: Dict[int, Tuple[str, Any]] = {}
    for key, rule in rules.items():
        if isinstance(key, str):
            if key not in by_name:
                fail("rules", "keys that are submodules of the model or their dotted names", Shown(f"{key!r}"),
                     "See model.named_modules() for the names.")
            module = by_name[key]
        elif isinstance(key, nn.Module) and id(key) in names:
            module = key
        else:
            fail("rules", "keys that are submodules of the model or their dotted names", key, kind=TypeError)
        out[id(module)] = (f"rules[{names[id(module)] or 'model'!r}]", rule)
    return out


def plan(model: Any, rules: Optional[Mapping[Any, Any]] = None) -> Plan:
    """The :class:`Plan` of ``model`` (an ``nn.Module``, or a function of modules: the modules it reaches,
    :func:`..calling.modules_of`) with the user's ``rules``."""
    roots = [model] if isinstance(model, nn.Module) else modules_of(model) if callable(model) else []
    if not roots:
        fail("model", "an nn.Module, or a function calling modules (LRP gives rules to their leaf modules)", model,
             kind=TypeError)
    given = _given(roots, rules)
    weighted: List[Tuple[nn.Module, Resolved]] = []
    by_module: Dict[int, Resolved] = {}
    layers: List[Tuple[str, nn.Module, Any]] = []
    for name, module in _leaves(roots):
        label = f"module {name or 'model'!r} ({type(module).__name__})"
        where, rule = given.get(id(module), (label, getattr(module, "rule", None)))
        resolved = normalise(rule, where)
        if isinstance(module, PASS_TYPES):
            continue  # relevance passes through (a rule there is ignored, as in Captum)
        addition = type(module).__name__ == ADDITION
        if resolved is None and not (isinstance(module, EPSILON_TYPES) or addition):
            fail("model", "leaf modules that have an LRP rule: a default one (Linear, Conv1d-3d, BatchNorm1d-3d, "
                 "max/average pooling, Addition_Module; ReLU, Tanh, Dropout, Identity and Flatten pass relevance "
                 "through) or one given", Shown(f"{label} without one"),
                 "Give it a rule with rules={module: fattr.EpsilonRule()} if a z-rule fits what it computes.",
                 kind=TypeError)
        if resolved is not None and not (isinstance(module, EPSILON_TYPES) or addition):
            fail("model", "rules on modules fattr can apply them to (Linear, Conv1d-3d, BatchNorm1d-3d, max/average "
                 "pooling, Addition_Module)", Shown(f"a rule on {label}"),
                 "fattr applies rules to the operations of these modules only.", kind=TypeError)
        layers.append((name, module, EpsilonRule() if resolved is None else rule))
        resolved = resolved or EPSILON
        weight = getattr(module, "weight", None) if isinstance(module, _WEIGHTED) else None
        if isinstance(weight, nn.Parameter):
            weighted.append((module, resolved))
        elif resolved != EPSILON or addition:
            by_module[id(module)] = resolved
    return Plan(tuple(weighted), by_module, tuple(layers))
