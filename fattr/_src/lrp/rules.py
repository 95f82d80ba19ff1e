"""LRP propagation rules: what a layer does with the relevance it receives (Captum's rule classes).

Every rule but :class:`IdentityRule` is a z-rule: a layer ``z = layer'(a)`` (its weights changed by the
rule) gives its input ``a`` the relevance ``R_in = a * J'^T (R_out / (z' + eps * sign(z')))``, with
``sign(0) = 1``. The rules differ in ``layer'``:

* :class:`EpsilonRule`: the layer itself; ``epsilon`` absorbs weak or contradictory relevance;
* :class:`GammaRule`: weights ``w + gamma * max(w, 0)`` (favours positive contributions);
* :class:`Alpha1Beta0Rule`: weights ``max(w, 0)`` (only positive contributions; deep Taylor, "z+");
* ``set_bias_to_zero``: the bias left out of ``z'`` (Gamma and Alpha1Beta0, as in Captum);
* :class:`IdentityRule`: ``R_in = R_out`` (a layer whose input and output have the same shape).

:func:`normalise` also reads Captum's own rule objects (``captum.attr._utils.lrp_rules``) by class name
and attributes, so a model whose modules carry Captum rules needs no change; fattr never imports Captum.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from ..errors import fail


@dataclass(frozen=True)
class EpsilonRule:
    """The epsilon rule: ``R_in = a * W^T (R_out / (z + epsilon * sign(z)))`` (Captum's ``EpsilonRule``).

    Example:
      >>> import fattr
      >>> fattr.EpsilonRule(epsilon=0.01)
      EpsilonRule(epsilon=0.01)
    """

    epsilon: float = 1e-9


@dataclass(frozen=True)
class GammaRule:
    """The gamma rule: the epsilon rule with weights ``w + gamma * max(w, 0)`` (Captum's ``GammaRule``;
    ``epsilon`` is Captum's fixed stability factor).

    Example:
      >>> import fattr
      >>> fattr.GammaRule(gamma=0.5).set_bias_to_zero
      False
    """

    gamma: float = 0.25
    set_bias_to_zero: bool = False
    epsilon: float = 1e-9


@dataclass(frozen=True)
class Alpha1Beta0Rule:
    """The alpha=1, beta=0 rule (deep Taylor, "z+"): the epsilon rule with weights ``max(w, 0)`` (Captum's
    ``Alpha1_Beta0_Rule``).

    Example:
      >>> import fattr
      >>> fattr.Alpha1Beta0Rule(set_bias_to_zero=True)
      Alpha1Beta0Rule(set_bias_to_zero=True, epsilon=1e-09)
    """

    set_bias_to_zero: bool = False
    epsilon: float = 1e-9


@dataclass(frozen=True)
class IdentityRule:
    """The identity rule: the layer passes the relevance it receives unchanged (Captum's ``IdentityRule``;
    input and output of the same shape).

    Example:
      >>> import fattr
      >>> fattr.IdentityRule()
      IdentityRule()
    """


Rule = Union[EpsilonRule, GammaRule, Alpha1Beta0Rule, IdentityRule]


@dataclass(frozen=True)
class Resolved:
    """A rule as the propagation applies it: ``identity`` or a z-rule with ``gamma`` (weights
    ``w + gamma * max(w, 0)``), ``positive`` (weights ``max(w, 0)``), ``zero_bias`` and ``epsilon``."""

    epsilon: float = 1e-9
    gamma: float = 0.0
    positive: bool = False
    zero_bias: bool = False
    identity: bool = False

    @property
    def changes_layer(self) -> bool:
        return self.gamma != 0.0 or self.positive or self.zero_bias


EPSILON = Resolved()
_CAPTUM = ("IdentityRule", "GammaRule", "Alpha1_Beta0_Rule", "EpsilonRule")  # most derived first


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        fail(name, "a non-negative number", value, kind=TypeError if not isinstance(value, (int, float)) else ValueError)
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        fail(name, "True or False", value, kind=TypeError)
    return value


def normalise(rule: Any, where: str) -> Optional[Resolved]:
    """``rule`` (a fattr rule, a Captum rule object, or None) as a :class:`Resolved`; None for None.
    ``where`` names the module in messages."""
    if rule is None:
        return None
    if isinstance(rule, IdentityRule):
        return Resolved(identity=True)
    if isinstance(rule, EpsilonRule):
        return Resolved(epsilon=_number(f"{where}: epsilon", rule.epsilon))
    if isinstance(rule, GammaRule):
        return Resolved(epsilon=_number(f"{where}: epsilon", rule.epsilon), gamma=_number(f"{where}: gamma", rule.gamma),
                        zero_bias=_flag(f"{where}: set_bias_to_zero", rule.set_bias_to_zero))
    if isinstance(rule, Alpha1Beta0Rule):
        return Resolved(epsilon=_number(f"{where}: epsilon", rule.epsilon), positive=True,
                        zero_bias=_flag(f"{where}: set_bias_to_zero", rule.set_bias_to_zero))
    names = [c.__name__ for c in type(rule).__mro__]
    kind = next((n for n in names if n in _CAPTUM), None)
    if kind is None or names[0] not in _CAPTUM:  # not Captum's, or a subclass with its own weight change
        fail(where, "an LRP rule: fattr.EpsilonRule, GammaRule, Alpha1Beta0Rule, IdentityRule (or Captum's "
             "EpsilonRule, GammaRule, Alpha1_Beta0_Rule, IdentityRule)", rule, kind=TypeError)
    epsilon = _number(f"{where}: STABILITY_FACTOR", getattr(rule, "STABILITY_FACTOR", 1e-9))
    if kind == "IdentityRule":
        return Resolved(identity=True)
    if kind == "EpsilonRule":
        return Resolved(epsilon=epsilon)
    zero_bias = _flag(f"{where}: set_bias_to_zero", getattr(rule, "set_bias_to_zero", False))
    if kind == "GammaRule":
        return Resolved(epsilon=epsilon, gamma=_number(f"{where}: gamma", getattr(rule, "gamma", 0.25)),
                        zero_bias=zero_bias)
    return Resolved(epsilon=epsilon, positive=True, zero_bias=zero_bias)
