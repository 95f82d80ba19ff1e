"""The LRP rules as ordinary operations, swapped in for the layers' operations during one forward pass.

The interception is DeepLift's (:mod:`..deeplift.rules`): a ``TorchFunctionMode`` alive for one forward
pass of the rule pass (:func:`..deeplift.rules.rule_pass`) replaces a layer's operation ``y = op(x)`` by

    ``y = op(x0) + L(x - x0)``

with ``x0`` the rule pass's constant of ``x``: the values are the layer's, the rule pass differentiates
``L``, any other differentiation sees the layer itself. For a z-rule (:mod:`.rules`)
``L(d) = op'_lin(a * d) / (z' + eps * sign(z'))``, where ``a = x0``, ``op'`` is the operation with the
rule's weights and bias, ``op'_lin`` its linear part at ``a`` (the operation without bias; max pooling:
a gather at ``a``'s argmax; batch norm in training mode: its Jacobian at ``a``), and ``z' = op'(a)``.
``L``'s adjoint is Captum's backward for the layer: divide the incoming relevance by the stabilised
``z'``, propagate it through the changed layer, multiply by the input. The identity rule is
``L(d) = d``; ReLU, tanh and dropout pass relevance through (``L(d) = d``, Captum's
``backward_hook_activation``). So the gradient of the output with respect to the inputs is the
normalised relevance, and the coefficients of ``L`` carry the graph to the parameters when the
result must be differentiable.

Operations: ``F.linear``, ``F.conv1d/2d/3d``, ``F.batch_norm`` (rule of the module whose weight they read,
else the epsilon rule), max and average pooling (epsilon, or the module's rule found on the stack),
``x1 + x2`` inside Captum's ``Addition_Module`` (found on the stack); any other call keeps its own gradient.
"""
from __future__ import annotations

import sys
from types import FrameType
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..base import Tensor
from ..compiled import dynamo_tracing
from ..deeplift.catalog import Call, bind_call, parameters_of, parse
from ..deeplift.rules import Constant
from ..errors import Shown, fail
from .plan import Plan
from .rules import EPSILON, Resolved

_CONV = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}
_SIGNATURES = {
    "linear": parameters_of(lambda input, weight, bias=None: 0),
    "conv": parameters_of(lambda input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1: 0),
    "batch_norm": parameters_of(lambda input, running_mean, running_var, weight=None, bias=None, training=False,
                                momentum=0.1, eps=1e-5: 0),
    "dropout": parameters_of(lambda input, p=0.5, training=True, inplace=False: 0),
}
_KINDS: Dict[Any, str] = {F.linear: "linear", F.batch_norm: "batch_norm", **{f: "conv" for f in _CONV},
                          **{f: "dropout" for f in (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
                                                    F.feature_alpha_dropout)},
                          **{f: "avg_pool" for f in (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
                                                     F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)},
                          **{f: "add" for f in (torch.add, Tensor.add, Tensor.__add__, Tensor.__radd__)}}
_PASS = frozenset({"F.relu", "torch.relu", "Tensor.relu", "torch.relu_", "Tensor.relu_", "torch.tanh", "Tensor.tanh",
                   "torch.tanh_", "Tensor.tanh_"})
_CALL_IMPL = nn.Module._call_impl.__code__


def _kind(func: Any) -> Optional[str]:
    try:
        return _KINDS.get(func)
    except TypeError:  # unhashable callable
        return None


def _caller() -> Optional[nn.Module]:
    """The innermost module being called (the ``self`` of the innermost ``nn.Module._call_impl`` frame)."""
    frame: Optional[FrameType] = sys._getframe(2)
    while frame is not None:
        if frame.f_code is _CALL_IMPL:
            module = frame.f_locals.get("self")
            return module if isinstance(module, nn.Module) else None
        frame = frame.f_back
    return None


def _stabilised(z: Tensor, eps: float) -> Tensor:
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)  # Captum: sign(z), 0 counted positive


def _weights(rule: Resolved, weight: Optional[Tensor], bias: Optional[Tensor]
             ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    if weight is not None and rule.positive:
        weight = weight.clamp(min=0)
    elif weight is not None and rule.gamma:
        weight = weight + rule.gamma * weight.clamp(min=0)
    return weight, (torch.zeros_like(bias) if rule.zero_bias and bias is not None else bias)


def _channels(v: Tensor, x: Tensor) -> Tensor:
    return v.reshape((1, -1) + (1,) * (x.dim() - 2))


class Propagator(TorchFunctionMode):
    """Runs a forward pass with the layers' operations replaced by their rules (see the module docstring).

    Args:
      plan: the model's rules (:func:`.plan.plan`).
      constant: the rule pass's ``x -> x0``.
    """

    def __init__(self, plan: Plan, constant: Constant) -> None:
        super().__init__()
        self.plan, self.constant = plan, constant
        self.frames = bool(plan.by_module)
        if self.frames and dynamo_tracing():
            fail("rules", "rules that torch.compile can see: a module's weight names it, a module without "
                 "parameters is found on the Python stack, which only an eager call can read",
                 Shown("a rule other than the default on a module without parameters"),
                 "Call fattr.lrp eagerly, or leave that module its default rule.")

    def _weight_rule(self, weight: Tensor) -> Optional[Resolved]:
        for module, rule in self.plan.weighted:  # ``is``, read now: the parameters may be swapped for the pass
            if module.weight is weight:
                return rule
        return None

    def _module_rule(self) -> Optional[Resolved]:
        module = _caller() if self.frames else None
        return None if module is None else self.plan.by_module.get(id(module))

    def __torch_function__(self, func: Any, types: Any, args: Tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        kind = _kind(func)
        if kind is None:
            call = parse(func, args, kwargs)
            if call is not None and call.kind == "maxpool":
                return self._max_pool(call, self._module_rule() or EPSILON)
            if call is not None and call.name in _PASS:
                return self._passed(call.input, call.inplace, call.op)
            return func(*args, **kwargs)
        if kind == "add":
            return self._add(func, args, kwargs)
        a = bind_call(_SIGNATURES[kind], args, kwargs) if kind in _SIGNATURES else None
        x = a["input"] if a is not None else (args[0] if args else None)
        if not isinstance(x, Tensor) or not x.is_floating_point():
            return func(*args, **kwargs)
        if kind == "dropout":
            assert a is not None
            op = lambda t: func(t, p=a["p"], training=a["training"], inplace=False)  # noqa: E731
            return self._passed(x, bool(a["inplace"]), op)
        if kind == "avg_pool":
            rest = args[1:]
            return self._z_rule(x, self._module_rule() or EPSILON, lambda t: func(t, *rest, **kwargs), None)
        assert a is not None
        weight = a["weight"]
        rule = self._weight_rule(weight) if isinstance(weight, Tensor) else self._module_rule()
        return self._weighted(kind, a, x, rule or EPSILON)

    # ---- the rules
    def _passed(self, x: Tensor, inplace: bool, op: Callable[[Tensor], Tensor]) -> Tensor:
        work = x.clone() if inplace else x
        x0 = self.constant(work)
        out = op(x0) + (work - x0)
        return x.copy_(out) if inplace else out

    def _z_rule(self, x: Tensor, rule: Resolved, op: Callable[[Tensor], Tensor],
                changed: Optional[Tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]]) -> Tensor:
        """``op(x0) + L(x - x0)``; ``changed``: ``(op', op'_lin)`` when the rule changes the layer (else ``op``
        for both: a linear operation without bias)."""
        x0 = self.constant(x)
        y0 = op(x0)
        if rule.identity:
            return y0 + self._same_shape(x - x0, y0)
        z, lin = (y0, op) if changed is None else (changed[0](x0), changed[1])
        return y0 + lin(x0 * (x - x0)) / _stabilised(z, rule.epsilon)

    def _same_shape(self, d: Tensor, y: Tensor) -> Tensor:
        if d.shape != y.shape:
            fail("rules", "the identity rule on a layer whose input and output have the same shape",
                 Shown(f"input {tuple(d.shape)} and output {tuple(y.shape)}"))
        return d

    def _weighted(self, kind: str, a: Dict[str, Any], x: Tensor, rule: Resolved) -> Tensor:
        weight, bias = _weights(rule, a["weight"], a["bias"])
        if kind == "linear":
            w: Tensor = weight if weight is not None else a["weight"]  # (F.linear always has a weight)
            return self._z_rule(x, rule, lambda t: F.linear(t, a["weight"], a["bias"]),
                                (lambda t: F.linear(t, w, bias), lambda t: F.linear(t, w)))
        if kind == "conv":
            conv = getattr(F, f"conv{x.dim() - 2}d")
            options = {k: a[k] for k in ("stride", "padding", "dilation", "groups")}
            return self._z_rule(x, rule, lambda t: conv(t, a["weight"], a["bias"], **options),
                                (lambda t: conv(t, weight, bias, **options), lambda t: conv(t, weight, None, **options)))
        eps, training = a["eps"], bool(a["training"])

        def norm(t: Tensor, w: Optional[Tensor], b: Optional[Tensor]) -> Tensor:
            mean, var = (None, None) if training else (a["running_mean"], a["running_var"])
            return F.batch_norm(t, mean, var, w, b, training, 0.0, eps)

        def lin(v: Tensor) -> Tensor:  # the Jacobian of the changed batch norm at x0, applied to v
            x0 = self.constant(x)
            scale = torch.ones(x.shape[1], dtype=x.dtype, device=x.device) if weight is None else weight
            if not training:
                return v * _channels(scale / torch.sqrt(a["running_var"] + eps), x)
            dims = [d for d in range(x.dim()) if d != 1]
            sd = torch.sqrt(x0.var(dims, unbiased=False, keepdim=True) + eps)
            hat = (x0 - x0.mean(dims, keepdim=True)) / sd
            centred = v - v.mean(dims, keepdim=True) - hat * (hat * v).mean(dims, keepdim=True)
            return centred * _channels(scale, x) / sd

        op = (lambda t: F.batch_norm(t, a["running_mean"], a["running_var"], a["weight"], a["bias"], training,
                                     a["momentum"], eps))
        return self._z_rule(x, rule, op, (lambda t: norm(t, weight, bias), lin))

    def _max_pool(self, call: Call, rule: Resolved) -> Any:
        x = call.input
        x0 = self.constant(x)
        out, idx = call.op(x0)
        n = call.n_spatial

        def lin(v: Tensor) -> Tensor:
            flat = v.flatten(v.dim() - n)
            return torch.gather(flat, -1, idx.flatten(idx.dim() - n)).reshape(idx.shape)

        y = out + (self._same_shape(x - x0, out) if rule.identity
                   else lin(x0 * (x - x0)) / _stabilised(out, rule.epsilon))
        return (y, idx) if call.with_indices else y

    def _add(self, func: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        """``x1 + x2`` in Captum's ``Addition_Module``: the epsilon rule over both inputs."""
        module = _caller() if self.frames else None
        rule = None if module is None else self.plan.by_module.get(id(module))
        if (rule is None or kwargs or len(args) != 2 or not all(isinstance(t, Tensor) and t.is_floating_point()
                                                                    for t in args)):
            return func(*args, **kwargs)
        x1, x2 = args
        a1, a2 = self.constant(x1), self.constant(x2)
        y0 = a1 + a2
        if rule.identity:
            return y0 + self._same_shape(x1 - a1, y0) + self._same_shape(x2 - a2, y0)
        return y0 + (a1 * (x1 - a1) + a2 * (x2 - a2)) / _stabilised(y0, rule.epsilon)
