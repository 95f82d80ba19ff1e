"""DeepLift and DeepLiftSHAP at a layer: the rescale rule on the tail of the split model."""
from __future__ import annotations

from typing import Any, Callable, Optional

from ..base import ArgsLike, BaselinesLike, InputsLike, KwargsLike, LayerLike, ModelLike, TargetLike, WithDeltaOrList
from .deeplift import _attribute


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
