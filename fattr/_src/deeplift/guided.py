"""Guided backpropagation and deconvolution: ReLU's backward pass replaced, without hooks.

The same interception as DeepLift's (:mod:`.interception`): a thread-local ``TorchFunctionMode``,
alive for one forward pass, replaces every ReLU call, however the model makes it (``nn.ReLU``, one
module used twice, ``F.relu``, ``torch.relu``, ``Tensor.relu_``), by an ``autograd.Function`` with
the same values whose backward is the rule's:

* guided backpropagation (Springenberg et al., 2015): ``relu(grad) * (x > 0)``, the gradient
  with negative signals stopped on the way back as well as on the way forward;
* deconvolution (Zeiler & Fergus, 2014): ``relu(grad)``, whatever the sign of ``x``.

As in :mod:`.rules`, the backward depends on the call's :class:`.rules.Phase`: once the rule
gradient is computed the functions differentiate as ReLU does, so an outer backward through the
result (a training loss) sees the true derivatives of the forward pass. Rectifier-like calls the
rules do not change (ELU, LeakyReLU, GELU, SiLU, ...) keep their plain gradient and are named in a
warning; smooth squashing functions (tanh, sigmoid, softmax) and pooling pass their gradient as in
Captum, without a warning.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch.overrides import TorchFunctionMode

from ..arguments import split_args
from ..calling import call
from ..recompute import checkpoint, reads
from ..structure import Tensors
from ..targets import Target
from .catalog import named, parse
from .rules import Phase

Tensor = torch.Tensor

_RELU = frozenset({"F.relu", "torch.relu", "Tensor.relu", "torch.relu_", "Tensor.relu_"})
# rectifier-like calls the rules leave alone: named in the warning
_OTHER_RECTIFIERS = frozenset({"F.elu", "F.elu_", "F.leaky_relu", "F.leaky_relu_", "F.hardtanh", "F.hardtanh_",
                               "F.relu6", "F.softplus"})
_UNGUIDED = named("gelu silu mish hardswish selu celu rrelu prelu threshold glu hardshrink softshrink "
                  "logsigmoid".split())


class _Rectified(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, phase: Phase, deconvolution: bool, x: Tensor) -> Tensor:
        ctx.phase, ctx.deconvolution = phase, deconvolution
        ctx.save_for_backward(x)
        return torch.relu(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Any, ...]:
        (x,) = ctx.saved_tensors
        if not ctx.phase.multipliers:  # an outer backward: ReLU's own derivative
            return None, None, grad * (x > 0).to(grad.dtype)
        if ctx.deconvolution:
            return None, None, torch.relu(grad)
        return None, None, torch.relu(grad) * (x > 0).to(grad.dtype)


class Guide(TorchFunctionMode):
    """Runs a forward pass with every ReLU call replaced by the rule's function.

    Args:
      phase: the call's :class:`.rules.Phase` (which backward the functions use).
      deconvolution: deconvolution's rule instead of guided backpropagation's.
    """

    def __init__(self, phase: Phase, deconvolution: bool) -> None:
        super().__init__()
        self.phase, self.deconvolution = phase, deconvolution
        self.unguided: List[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        found = parse(func, args, kwargs)
        if found is not None and found.name in _RELU:
            x = found.input
            out = _Rectified.apply(self.phase, self.deconvolution, x.clone() if found.inplace else x)
            return x.copy_(out) if found.inplace else out
        name = found.name if found is not None and found.name in _OTHER_RECTIFIERS else _unguided(func)
        if name is not None and name not in self.unguided:
            self.unguided.append(name)
        return func(*args, **kwargs)


def _unguided(func: Any) -> Optional[str]:
    try:
        return _UNGUIDED.get(func)
    except TypeError:  # unhashable callable
        return None


def _total(out: Tensor) -> Tensor:
    return out.sum(dtype=torch.float32) if out.dtype in (torch.float16, torch.bfloat16) else out.sum()


def _pass(f: Callable[..., Any], rows: Tensors, target: Target, args: Sequence[Any],
          deconvolution: bool) -> Tuple[Tensors, List[str]]:
    """Rule gradients of ``f(rows)[target]`` summed over rows; with grad mode on, differentiable."""
    graph = torch.is_grad_enabled()
    phase = Phase()
    n = rows[0].shape[0]
    try:
        with torch.enable_grad():
            leaves = tuple(r.detach().requires_grad_() for r in rows)
            points = tuple(r + (leaf - leaf.detach()) for r, leaf in zip(rows, leaves)) if graph else leaves
            with Guide(phase, deconvolution) as guide:
                out = target.select(call(f, points, args), n)
            total = _total(out)
            found: Sequence[Optional[Tensor]] = (
                torch.autograd.grad(total, leaves, create_graph=graph, allow_unused=True) if total.requires_grad
                else (None,) * len(leaves))
    finally:
        phase.multipliers = False  # from now on, the functions differentiate as ReLU
    grads = tuple(torch.zeros_like(r) if g is None else g for g, r in zip(found, rows))
    reads(out, exclude=leaves)
    return grads, guide.unguided


def rule_gradients(f: Callable[..., Any], rows: Tensors, target: Target, args: Sequence[Any], *,
                   deconvolution: bool, model: Any) -> Tuple[Tensors, List[str]]:
    """Per-row guided-backprop (or deconvolution) gradients of ``f(rows)[target]``, computed without a
    graph and differentiable on demand (:mod:`..recompute`); a model in training mode keeps the graph.

    Returns ``(gradients, unguided)``: the names of rectifier-like calls the rule left alone.
    """
    arg_tensors, rebuild = split_args(args)
    k = len(rows)
    unguided: List[str] = []

    def run(tensors: Tensors) -> Tensors:
        grads, names = _pass(f, tensors[:k], target, rebuild(tensors[k:]), deconvolution)
        unguided[:] = names
        return grads

    return checkpoint(run, tuple(rows) + arg_tensors, module=model), unguided


def warn_unguided(method: str, names: Sequence[str], deconvolution: bool, stacklevel: int = 4) -> None:
    if names:
        rule = "deconvolution" if deconvolution else "guided backpropagation"
        warnings.warn(
            f"fattr.{method}: the model applies rectifier-like operations that the {rule} rule (which "
            f"modifies ReLU only, as Captum does) leaves alone: {', '.join(names)}. They pass their plain "
            "gradient.", UserWarning, stacklevel=stacklevel)
