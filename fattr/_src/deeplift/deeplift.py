"""DeepLift and DeepLiftSHAP (rescale rule) with respect to the inputs, and at a layer (the rule on the tail of
the split model)."""
from __future__ import annotations

from typing import Any, Callable, Optional

from .. import structure
from ..arguments import boundary
from ..base import (ArgsLike, BaselinesLike, InputsLike, KwargsLike, LayerLike, ModelLike, TargetLike, WithDelta,
                    WithDeltaOrList)
from ..baselines import format_baselines, format_distribution
from ..calling import call
from ..errors import check_bool, check_nonnegative_float
from . import combine
from ..layer.view import LayerFunction
from .engine import multipliers_on_demand


def deeplift(model: ModelLike, inputs: InputsLike, baselines: BaselinesLike = None, *, target: TargetLike = None,
             args: ArgsLike = (), kwargs: KwargsLike = None, multiply_by_inputs: bool = True,
             return_delta: bool = False, custom_attribution_func: Optional[Callable[..., Any]] = None,
             eps: float = 1e-10) -> WithDelta:
    """DeepLift with the rescale rule (Shrikumar et al., 2017), in the gradient form of Ancona et al.

    Every covered nonlinearity (ReLU, ELU, LeakyReLU, Sigmoid, Tanh, Softplus, Hardtanh/ReLU6,
    Softmax, max pooling) gets the multiplier ``(f(x) - f(x')) / (x - x')`` of its input ``x``
    and the baseline's ``x'`` (max pooling and softmax: Captum's rules), however the model
    calls it: a module, a module used several times, ``F.relu``, ``torch.sigmoid``,
    ``tensor.tanh()``. The attributions are ``multipliers * (inputs - baselines)`` and sum
    to ``f(inputs) - f(baselines)`` exactly (to rounding) for networks of affine layers and
    elementwise covered nonlinearities. Nothing is attached to the model (no hooks, no
    attributes); calls that are nonlinear in the inputs but not covered (``F.gelu``, a product
    of two input-dependent tensors, ...) get their plain gradient and are named in a warning.

    Cost: a forward pass over the baselines and a forward and backward pass over the inputs
    (plus a forward pass when the result must be differentiable).

    Args:
      model: the model (an ``nn.Module``, or any callable made of torch operations).
      inputs: a tensor ``(B, ...)`` or a tuple of them (floating point).
      baselines: ``None`` (zeros), a number, a tensor shaped like the input or with a batch
        of 1, or a tuple of these (one per input).
      target: the output to attribute: None, int, tuple, or one entry per example.
      args: extra arguments of ``model``; tensors with B rows stay paired with their example.
      multiply_by_inputs: if False, return the multipliers (local attribution).
      return_delta: also return ``sum(attributions) - (f(inputs) - f(baselines))`` per example.
      custom_attribution_func: ``func(multipliers[, inputs[, baselines]]) -> tuple`` of
        attributions, replacing the product (tuples with one tensor per input, ``B`` rows each).
      eps: where ``|x - x'| < eps`` a nonlinearity passes its plain gradient.

    Returns:
      Attributions shaped like ``inputs``; with ``return_delta``, ``(attributions, delta)``
      with ``delta`` of shape ``(B,)``.

    Example:
      >>> import torch, fattr
      >>> relu = torch.nn.ReLU()
      >>> class Net(torch.nn.Module):
      ...     def __init__(self):
      ...         super().__init__()
      ...         self.a, self.b, self.out = torch.nn.Linear(3, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)
      ...     def forward(self, x):  # one ReLU module, used twice
      ...         return self.out(relu(self.b(relu(self.a(x)))))
      >>> torch.manual_seed(0)
      <torch._C.Generator object at ...>
      >>> net, x = Net().double(), torch.randn(4, 3, dtype=torch.float64)
      >>> attr, delta = fattr.deeplift(net, x, target=1, return_delta=True)
      >>> attr.shape, bool(delta.abs().max() < 1e-12)
      (torch.Size([4, 3]), True)
    """
    return _attribute("deeplift", model, inputs, baselines, False, target, args, kwargs, multiply_by_inputs,
                      return_delta, custom_attribution_func, eps)


def deeplift_shap(model: ModelLike, inputs: InputsLike, baselines: BaselinesLike, *, target: TargetLike = None,
                  args: ArgsLike = (), kwargs: KwargsLike = None, multiply_by_inputs: bool = True,
                  return_delta: bool = False, custom_attribution_func: Optional[Callable[..., Any]] = None,
                  eps: float = 1e-10) -> WithDelta:
    """DeepLiftSHAP: DeepLift against every baseline of a distribution, averaged (SHAP values' estimate).

    Every (example, baseline) pair is one row of a single batched DeepLift pass of ``B * M``
    rows (not ``M`` passes); the attributions of each example are the mean over its ``M``
    pairs. Same rules, coverage and warnings as :func:`fattr.deeplift`.

    Args:
      model, inputs, target, args, kwargs, multiply_by_inputs, custom_attribution_func, eps: as in
        :func:`fattr.deeplift` (``custom_attribution_func`` sees the ``B * M`` pairs, example-first, and
        its results are averaged).
      baselines: the reference distribution: a tensor ``(M, ...)`` (or a tuple, one per
        input, with equal ``M``), or a callable returning one from the inputs.
      return_delta: also return the delta of every (example, baseline) pair, ordered by
        example first: shape ``(B * M,)``, entry ``i * M + j`` for example ``i`` and baseline ``j``.

    Returns:
      Attributions shaped like ``inputs``; with ``return_delta``, ``(attributions, delta)``.

    Example:
      >>> import torch, fattr
      >>> torch.manual_seed(0)
      <torch._C.Generator object at ...>
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
      >>> x, dist = torch.randn(4, 3), torch.randn(10, 3)
      >>> attr, delta = fattr.deeplift_shap(model, x, dist, target=0, return_delta=True)
      >>> attr.shape, delta.shape
      (torch.Size([4, 3]), torch.Size([40]))
    """
    return _attribute("deeplift_shap", model, inputs, baselines, True, target, args, kwargs, multiply_by_inputs,
                      return_delta, custom_attribution_func, eps)


def layer_deeplift(model: ModelLike, layer: LayerLike, inputs: InputsLike, baselines: BaselinesLike = None, *,
                   target: TargetLike = None, args: ArgsLike = (), kwargs: KwargsLike = None,
                   multiply_by_inputs: bool = True, return_delta: bool = False, attribute_to_layer_input: bool = False,
                   custom_attribution_func: Optional[Callable[..., Any]] = None, eps: float = 1e-10) -> WithDeltaOrList:
    """DeepLift (rescale rule) with respect to a layer's output or input (Captum's LayerDeepLift).

    The model is split at ``layer`` (:func:`fattr.split`); the head runs on the inputs and
    on the baselines, and the rescale rule of :func:`fattr.deeplift` is applied to the tail,
    with everything else the tail reads (skip connections, other inputs) held at the
    input's values for the inputs and at the baseline's for the baselines. The
    attributions are ``multipliers * (act(inputs) - act(baselines))``; ``delta`` compares
    their sum with ``model(inputs) - model(baselines)`` (exact when every path from the
    inputs to the output goes through the layer and the tail is affine layers and covered
    elementwise nonlinearities).

    Args:
      model: the ``nn.Module``.
      layer: a submodule of ``model`` or its dotted name.
      inputs, baselines, target, args, kwargs, return_delta, eps: as in :func:`fattr.deeplift`
        (input-space baselines).
      multiply_by_inputs: if False, return the multipliers of the layer.
      attribute_to_layer_input: attribute to the layer's input instead of its output.
      custom_attribution_func: ``func(multipliers[, layer_inputs[, layer_baselines]])``
        (tuples of the layer's tensors for the inputs and the baselines).

    Returns:
      Attributions shaped like the layer's activation (a tuple when it has several
      tensors); with ``return_delta``, ``(attributions, delta)``, ``delta`` of shape ``(B,)``.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).double()
      >>> x = torch.randn(4, 3, dtype=torch.float64)
      >>> attr, delta = fattr.layer_deeplift(model, "0", x, target=1, return_delta=True)
      >>> attr.shape, bool(delta.abs().max() < 1e-12)
      (torch.Size([4, 8]), True)
    """
    return _attribute("layer_deeplift", model, inputs, baselines, False, target, args, kwargs, multiply_by_inputs,
                      return_delta, custom_attribution_func, eps, layer, attribute_to_layer_input)


def layer_deeplift_shap(model: ModelLike, layer: LayerLike, inputs: InputsLike, baselines: BaselinesLike, *,
                        target: TargetLike = None, args: ArgsLike = (), kwargs: KwargsLike = None,
                        multiply_by_inputs: bool = True, return_delta: bool = False,
                        attribute_to_layer_input: bool = False,
                        custom_attribution_func: Optional[Callable[..., Any]] = None,
                        eps: float = 1e-10) -> WithDeltaOrList:
    """DeepLiftSHAP at a layer (Captum's LayerDeepLiftShap): layer DeepLift against every baseline, averaged.

    Every (example, baseline) pair is one row of a single batched pass of ``B * M`` rows.

    Args:
      model, layer, target, args, multiply_by_inputs, attribute_to_layer_input,
      custom_attribution_func, eps: as in :func:`fattr.layer_deeplift` (the custom function
        sees the ``B * M`` pairs, example-first, and its results are averaged).
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      baselines: the input-space reference distribution: a tensor ``(M, ...)``, a tuple of
        them (equal ``M``) or a callable returning one from the inputs.
      return_delta: also return the delta of every (example, baseline) pair, example first:
        shape ``(B * M,)``.

    Returns:
      Attributions shaped like the layer's activation; with ``return_delta``, ``(attributions, delta)``.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
      >>> x, dist = torch.randn(4, 3), torch.randn(10, 3)
      >>> attr, delta = fattr.layer_deeplift_shap(model, "1", x, dist, target=0, return_delta=True)
      >>> attr.shape, delta.shape
      (torch.Size([4, 8]), torch.Size([40]))
    """
    return _attribute("layer_deeplift_shap", model, inputs, baselines, True, target, args, kwargs, multiply_by_inputs,
                      return_delta, custom_attribution_func, eps, layer, attribute_to_layer_input)


def _attribute(name: str, model: Any, inputs: Any, baselines: Any, distribution: bool, target: Any, args: Any,
               kwargs: Any, multiply_by_inputs: Any, return_delta: Any, custom: Any, eps: Any, layer: Any = None,
               attribute_to_layer_input: Any = False) -> Any:
    """DeepLift against ``baselines``, or (``distribution``) against every baseline of a distribution: every
    (example, baseline) pair one row of a single batched pass, the attributions averaged over the pairs. With a
    ``layer``, the head runs on the inputs' and the baselines' rows and the rescale rule on the tail."""
    xs, was_tuple, tgt, args = boundary(model, inputs, target, args, kwargs, "model")
    check_bool("multiply_by_inputs", multiply_by_inputs)
    check_bool("return_delta", return_delta)
    check_bool("attribute_to_layer_input", attribute_to_layer_input)
    custom, eps = combine.check_custom(custom), check_nonnegative_float("eps", eps)
    n = xs[0].shape[0]
    dist = format_distribution(baselines, xs, given=inputs) if distribution else format_baselines(baselines, xs)
    if distribution:
        rows, bs, args, tgt = combine.pairs(xs, dist, args, tgt)
    else:
        rows, bs = xs, tuple(b.expand_as(x) for b, x in zip(dist, xs))
    if layer is None:
        f: Callable[..., Any] = lambda *v: call(model, v[:len(xs)], v[len(xs):])  # noqa: E731
        (acts_x, rest_x), (acts_b, rest_b), module = (rows, args), (bs, args), model
    else:
        lf = LayerFunction(model, layer, attribute_to_layer_input, exportable=False)  # the rules see torch functions
        f, module = lf.function(), lf.model
        (acts_x, rest_x), (acts_b, rest_b) = lf.head(rows, args), lf.head(bs, args)
    grads, out_x, out_b, uncovered = multipliers_on_demand(f, acts_x, acts_b, rest_x, rest_b, tgt, eps=eps,
                                                          model=module)
    combine.warn_uncovered(name, uncovered)
    attrs = combine.attributions(grads, acts_x, acts_b, multiply_by_inputs, custom)
    mean = combine.mean_over_baselines(attrs, n, dist[0].shape[0]) if distribution else attrs
    result = structure.restore(mean, was_tuple) if layer is None else lf.restore(mean, rest_x)
    return (result, combine.delta(attrs, out_x, out_b)) if return_delta else result
