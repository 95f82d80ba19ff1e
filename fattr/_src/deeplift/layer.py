"""DeepLift and DeepLiftSHAP at a layer: the rescale rule on the tail of the split model."""
from __future__ import annotations

from typing import Any, Callable, Optional

from .. import structure
from ..arguments import as_args
from ..base import ArgsLike, BaselinesLike, InputsLike, KwargsLike, LayerLike, ModelLike, TargetLike, WithDeltaOrList
from ..baselines import format_baselines, format_distribution
from ..errors import check_bool, check_callable, check_nonnegative_float
from ..targets import as_target
from ..layer.view import LayerFunction
from . import combine
from .engine import multipliers_on_demand


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
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      baselines: input-space baselines, as in :func:`fattr.deeplift`.
      target: the output to attribute (None, int, tuple, or one entry per example).
      args: extra positional arguments of ``model``.
      multiply_by_inputs: if False, return the multipliers of the layer.
      return_delta: also return ``sum(attributions) - (model(inputs) - model(baselines))`` per example.
      attribute_to_layer_input: attribute to the layer's input instead of its output.
      custom_attribution_func: ``func(multipliers[, layer_inputs[, layer_baselines]])``
        (tuples of the layer's tensors for the inputs and the baselines).
      eps: where ``|x - x'| < eps`` a nonlinearity passes its plain gradient.

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
    return _attribute("layer_deeplift", model, layer, inputs, baselines, False, target, args, kwargs,
                      multiply_by_inputs, return_delta, attribute_to_layer_input, custom_attribution_func, eps)


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
    return _attribute("layer_deeplift_shap", model, layer, inputs, baselines, True, target, args, kwargs,
                      multiply_by_inputs, return_delta, attribute_to_layer_input, custom_attribution_func, eps)


def _attribute(name: str, model: Any, layer: Any, inputs: Any, baselines: Any, distribution: bool, target: Any,
               args: Any, kwargs: Any, multiply_by_inputs: Any, return_delta: Any, attribute_to_layer_input: Any,
               custom: Any, eps: Any) -> Any:
    """The head on the inputs' and the baselines' rows (every (example, baseline) pair with ``distribution``),
    then the rescale rule on the tail; a distribution's attributions are averaged over the pairs."""
    check_callable("model", model)
    check_bool("multiply_by_inputs", multiply_by_inputs)
    check_bool("return_delta", return_delta)
    check_bool("attribute_to_layer_input", attribute_to_layer_input)
    custom, eps = combine.check_custom(custom), check_nonnegative_float("eps", eps)
    xs, _ = structure.as_tuple(inputs)
    n = xs[0].shape[0]
    dist = format_distribution(baselines, xs, given=inputs) if distribution else format_baselines(baselines, xs)
    args = as_args(args, kwargs)
    tgt = as_target(target, n, xs[0].device)
    if distribution:
        xs, bs, args, tgt = combine.pairs(xs, dist, args, tgt)
    else:
        bs = tuple(b.expand_as(x) for b, x in zip(dist, xs))
    lf = LayerFunction(model, layer, attribute_to_layer_input, exportable=False)  # the rules see torch functions
    acts_x, rest_x = lf.head(xs, args)
    acts_b, rest_b = lf.head(bs, args)
    res = multipliers_on_demand(lf.function(), acts_x, acts_b, rest_x, rest_b, tgt, eps=eps, model=lf.model)
    combine.warn_uncovered(name, res.uncovered)
    attrs = combine.attributions(res.grads, acts_x, acts_b, multiply_by_inputs, custom)
    result = lf.restore(combine.mean_over_baselines(attrs, n, dist[0].shape[0]) if distribution else attrs, rest_x)
    return (result, combine.delta(attrs, res.out_x, res.out_b)) if return_delta else result
