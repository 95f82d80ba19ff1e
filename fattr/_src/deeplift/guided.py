"""Guided backpropagation and deconvolution: ReLU's backward pass replaced, without hooks.

The same interception as DeepLift's (:mod:`.interception`): a thread-local ``TorchFunctionMode``,
alive for one forward pass, replaces every ReLU call by an ``autograd.Function`` with the same values
whose backward is the rule (as :func:`fattr.guided_backprop` and :func:`fattr.deconvolution` define it).
As in :mod:`.rules`, a ReLU call on ``x`` becomes ``relu(x0) + G(x - x0)``: ``G`` is an
``autograd.Function`` (the identity, with the rule as its backward), differentiated by the rule
pass only, so an outer backward through the result (a training loss) sees the true derivatives
of the forward pass. Smooth squashing functions (tanh, sigmoid, softmax) and pooling pass their
gradient as in Captum, without a warning.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch.overrides import TorchFunctionMode

from ..calling import call
from ..compiled import at_trace_time, dynamo_tracing
from ..recompute import checkpoint_aux
from ..base import Tensor, Tensors
from ..targets import Target
from .catalog import named, parse
from .rules import Constant, rule_pass


_RELU = frozenset({"F.relu", "torch.relu", "Tensor.relu", "torch.relu_", "Tensor.relu_"})
# rectifier-like calls the rules leave alone: named in the warning
_OTHER_RECTIFIERS = frozenset({"F.elu", "F.elu_", "F.leaky_relu", "F.leaky_relu_", "F.hardtanh", "F.hardtanh_",
                               "F.relu6", "F.softplus"})
_UNGUIDED = named("gelu silu mish hardswish selu celu rrelu prelu threshold glu hardshrink softshrink "
                  "logsigmoid".split())


class _Rule(torch.autograd.Function):
    """The identity on ``d``; backward ``relu(grad) * mask`` (``mask`` None: ``relu(grad)``)."""

    @staticmethod
    def forward(d: Tensor, mask: Optional[Tensor]) -> Tensor:
        return d.view_as(d)

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Optional[Tensor], None]:
        (mask,) = ctx.saved_tensors
        # Dynamo traces a backward under no_grad (``enable_grad=False``, torch/_dynamo/variables/
        # higher_order_ops.py): a loss through the attributions would see the rule's result as a constant,
        # its second derivatives silently zero. Grad mode on records them; eager keeps the caller's mode.
        with torch.set_grad_enabled(torch.is_grad_enabled() or dynamo_tracing()):
            return (torch.relu(grad) if mask is None else torch.relu(grad) * mask), None


class Guide(TorchFunctionMode):
    """Runs a forward pass with every ReLU call replaced by the rule's function.

    Args:
      constant: the rule pass's ``x -> x0`` (:func:`.rules.rule_pass`).
      deconvolution: deconvolution's rule instead of guided backpropagation's.
    """

    def __init__(self, constant: Constant, deconvolution: bool) -> None:
        super().__init__()
        self.constant, self.deconvolution = constant, deconvolution
        self.unguided: List[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        found = parse(func, args, kwargs)
        if found is not None and found.name in _RELU:
            x = found.input.clone() if found.inplace else found.input
            x0 = self.constant(x)
            out = torch.relu(x0) + _Rule.apply(x - x0, None if self.deconvolution else (x0 > 0).to(x.dtype))
            return found.input.copy_(out) if found.inplace else out
        name = found.name if found is not None and found.name in _OTHER_RECTIFIERS else _unguided(func)
        if name is not None and name not in self.unguided:
            self.unguided.append(name)
        return func(*args, **kwargs)


def _unguided(func: Any) -> Optional[str]:
    try:
        return _UNGUIDED.get(func)
    except TypeError:  # unhashable callable
        return None


def rule_gradients(f: Callable[..., Any], rows: Tensors, target: Target, args: Sequence[Any], *,
                   deconvolution: bool, model: Any) -> Tuple[Tensors, List[str]]:
    """Per-row guided-backprop (or deconvolution) gradients of ``f(rows)[target]``, computed without a
    graph and differentiable on demand (:mod:`..recompute`); a model in training mode keeps the graph.

    Returns ``(gradients, unguided)``: the names of rectifier-like calls the rule left alone.
    """
    n = rows[0].shape[0]

    def run(xs: Tensors, rest: Tuple[Any, ...]) -> Tuple[Tensors, List[str]]:
        unguided: List[str] = []

        def forward(points: Tensors, constant: Constant) -> Tensor:
            guide = Guide(constant, deconvolution)
            with guide:
                out = target.select(call(f, points, rest), n)
            unguided[:] = guide.unguided
            return out

        return rule_pass(forward, xs)[1], unguided

    return checkpoint_aux(run, rows, args=args, module=model, traceable=True)


def warn_unguided(method: str, names: Sequence[str], deconvolution: bool, stacklevel: int = 4) -> None:
    if names and dynamo_tracing():  # Dynamo cannot trace warnings.warn: warned once, as it traces the call
        at_trace_time(_warn, method, tuple(names), deconvolution, stacklevel)
    elif names:
        _warn(method, tuple(names), deconvolution, stacklevel + 1)


def _warn(method: str, names: Tuple[str, ...], deconvolution: bool, stacklevel: int) -> None:
    rule = "deconvolution" if deconvolution else "guided backpropagation"
    warnings.warn(
        f"fattr.{method}: the model applies rectifier-like operations that the {rule} rule (which "
        f"modifies ReLU only, as Captum does) leaves alone: {', '.join(names)}. They pass their plain "
        "gradient.", UserWarning, stacklevel=stacklevel)
