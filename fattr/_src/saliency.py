"""Saliency and Input x Gradient: one batched gradient of the target output."""
from __future__ import annotations

from typing import Any, Callable, Tuple

from . import structure
from .arguments import boundary
from .base import ArgsLike, InputsLike, KwargsLike, ModelLike, Result, TargetLike, Tensors
from .errors import check_bool
from .gradients import gradients


def _input_gradients(f: Callable[..., Any], inputs: Any, target: Any, args: Any,
                     kwargs: Any) -> Tuple[Tensors, Tensors, bool]:
    xs, was_tuple, tgt, args = boundary(f, inputs, target, args, kwargs)
    structure.require_floating(xs)
    return xs, gradients(f, xs, tgt, args), was_tuple


def saliency(f: ModelLike, inputs: InputsLike, *, target: TargetLike = None, args: ArgsLike = (),
             kwargs: KwargsLike = None, abs: bool = True) -> Result:
    """Saliency (Simonyan et al., 2013): the gradient of the target output w.r.t. the inputs.

    Args:
      f: callable ``f(*inputs, *args)`` returning a tensor with examples along dim 0.
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      target: the output to attribute (None, int, tuple, or one entry per example).
      args: extra arguments of ``f``.
      abs: return the absolute value of the gradient (Captum's default).

    Returns:
      Gradients shaped like ``inputs``.

    Example:
      >>> import torch, fattr
      >>> f = lambda x: (x ** 2).sum(1)
      >>> fattr.saliency(f, torch.tensor([[1.0, -2.0]]), abs=False)
      tensor([[ 2., -4.]])
    """
    check_bool("abs", abs)
    _, grads, was_tuple = _input_gradients(f, inputs, target, args, kwargs)
    return structure.restore(tuple(g.abs() for g in grads) if abs else grads, was_tuple)


def input_x_gradient(f: ModelLike, inputs: InputsLike, *, target: TargetLike = None, args: ArgsLike = (),
                     kwargs: KwargsLike = None) -> Result:
    """Input x Gradient (Shrikumar et al., 2016): ``inputs * d f[target] / d inputs``.

    Args:
      f: callable ``f(*inputs, *args)`` returning a tensor with examples along dim 0.
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      target: the output to attribute (None, int, tuple, or one entry per example).
      args: extra arguments of ``f``.

    Returns:
      Attributions shaped like ``inputs``.

    Example:
      >>> import torch, fattr
      >>> f = lambda x: (x ** 2).sum(1)
      >>> fattr.input_x_gradient(f, torch.tensor([[1.0, -2.0]]))
      tensor([[2., 8.]])
    """
    xs, grads, was_tuple = _input_gradients(f, inputs, target, args, kwargs)
    return structure.restore(tuple(x * g for x, g in zip(xs, grads)), was_tuple)
