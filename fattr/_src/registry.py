"""The method registry: every public attribution method and the properties the
contract tests, the benchmarks and the demo need to call it generically.

Adding a method is one :class:`MethodSpec` line here plus its own closed-form tests.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple

from .gradient_shap import gradient_shap
from .integrated_gradients import integrated_gradients
from .noise_tunnel import noise_tunnel
from .saliency import input_x_gradient, saliency
# layer attribution by splitting the model
from .layer.activation import layer_activation
from .layer.feature_ablation import layer_feature_ablation
from .layer.grad_cam import layer_grad_cam
from .layer.gradient_shap import layer_gradient_shap
from .layer.gradient_x_activation import layer_gradient_x_activation
from .layer.gradient_x_input import gradient_x_input
from .layer.integrated import internal_influence, layer_conductance, layer_integrated_gradients
# DeepLift (rescale rule by function interception)
from .deeplift.deeplift import deeplift, deeplift_shap
from .deeplift.layer import layer_deeplift, layer_deeplift_shap
# rule-based gradients (ReLU rules by function interception) and neuron methods
from .deeplift.guided_backprop import deconvolution, guided_backprop, guided_grad_cam
from .neuron.conductance import neuron_conductance
from .neuron.methods import (neuron_deconvolution, neuron_deeplift, neuron_deeplift_shap, neuron_gradient,
                             neuron_gradient_shap, neuron_guided_backprop, neuron_integrated_gradients)


@dataclass(frozen=True)
class MethodSpec:
    """How to call a method: ``fn(model, [layer,] inputs, [baselines,] target=..., **options)``.

    Attributes:
      name: public name.
      fn: the function.
      baselines: ``"none"`` (takes no baselines), ``"optional"`` (None means zeros) or
        ``"distribution"`` (required rows, SHAP-style).
      layer: takes ``(model, layer, inputs, ...)`` and attributes to a layer (or, with ``neuron``, to the inputs).
      neuron: attributes one neuron of the layer (``neuron_selector=`` among the options) to the inputs.
      stochastic: takes ``generator=``.
      chunked: takes ``chunk_size=`` (results must not depend on it).
      delta: takes ``return_delta=``.
      targeted: takes ``target=``.
      needs_module: ``f`` must be an ``nn.Module`` (not any callable).
      options: extra keyword arguments used when calling it generically.
    """

    name: str
    fn: Callable[..., Any]
    baselines: str = "none"
    layer: bool = False
    neuron: bool = False
    stochastic: bool = False
    chunked: bool = False
    delta: bool = False
    targeted: bool = True
    needs_module: bool = False
    options: Tuple[Tuple[str, Any], ...] = ()


# the neurons generic calls attribute: channels (or columns) 0 and 1 of the layer, summed
_SELECT: Tuple[Tuple[str, Any], ...] = (("neuron_selector", (slice(0, 2),)),)
smoothgrad = noise_tunnel(saliency, kind="smoothgrad", n_samples=8, stdevs=0.1)

_SPECS = [
    MethodSpec("saliency", saliency),
    MethodSpec("input_x_gradient", input_x_gradient),
    MethodSpec("integrated_gradients", integrated_gradients, baselines="optional", chunked=True, delta=True,
               options=(("n_steps", 16),)),
    MethodSpec("gradient_shap", gradient_shap, baselines="distribution", stochastic=True, delta=True,
               options=(("n_samples", 8), ("stdevs", 0.05))),
    MethodSpec("smoothgrad", smoothgrad, stochastic=True, options=(("abs", False),)),
    # layer attribution by splitting the model
    MethodSpec("gradient_x_input", gradient_x_input),
    MethodSpec("layer_activation", layer_activation, layer=True, targeted=False, needs_module=True),
    MethodSpec("layer_gradient_x_activation", layer_gradient_x_activation, layer=True, needs_module=True),
    MethodSpec("layer_grad_cam", layer_grad_cam, layer=True, needs_module=True),
    MethodSpec("internal_influence", internal_influence, baselines="optional", layer=True, chunked=True,
               needs_module=True, options=(("n_steps", 16),)),
    MethodSpec("layer_conductance", layer_conductance, baselines="optional", layer=True, chunked=True, delta=True,
               needs_module=True, options=(("n_steps", 16),)),
    MethodSpec("layer_integrated_gradients", layer_integrated_gradients, baselines="optional", layer=True,
               chunked=True, delta=True, needs_module=True, options=(("n_steps", 16),)),
    MethodSpec("layer_gradient_shap", layer_gradient_shap, baselines="distribution", layer=True, stochastic=True,
               delta=True, needs_module=True, options=(("n_samples", 8), ("stdevs", 0.05))),
    MethodSpec("layer_feature_ablation", layer_feature_ablation, layer=True, needs_module=True,
               options=(("perturbations_per_eval", 3),)),
    # DeepLift (rescale rule by function interception)
    MethodSpec("deeplift", deeplift, baselines="optional", delta=True, needs_module=True),
    MethodSpec("deeplift_shap", deeplift_shap, baselines="distribution", delta=True, needs_module=True),
    MethodSpec("layer_deeplift", layer_deeplift, baselines="optional", layer=True, delta=True, needs_module=True),
    MethodSpec("layer_deeplift_shap", layer_deeplift_shap, baselines="distribution", layer=True, delta=True,
               needs_module=True),
    # rule-based gradients: ReLU's backward replaced by function interception
    MethodSpec("guided_backprop", guided_backprop),
    MethodSpec("deconvolution", deconvolution),
    MethodSpec("guided_grad_cam", guided_grad_cam, layer=True, needs_module=True),
    # neuron methods: an input-space method applied to one neuron of a layer (here channels 0-1, summed)
    MethodSpec("neuron_gradient", neuron_gradient, layer=True, neuron=True, targeted=False, needs_module=True,
               options=_SELECT),
    MethodSpec("neuron_integrated_gradients", neuron_integrated_gradients, baselines="optional", layer=True,
               neuron=True, chunked=True, targeted=False, needs_module=True, options=_SELECT + (("n_steps", 16),)),
    MethodSpec("neuron_gradient_shap", neuron_gradient_shap, baselines="distribution", layer=True, neuron=True,
               stochastic=True, targeted=False, needs_module=True,
               options=_SELECT + (("n_samples", 8), ("stdevs", 0.05))),
    MethodSpec("neuron_deeplift", neuron_deeplift, baselines="optional", layer=True, neuron=True, targeted=False,
               needs_module=True, options=_SELECT),
    MethodSpec("neuron_deeplift_shap", neuron_deeplift_shap, baselines="distribution", layer=True, neuron=True,
               targeted=False, needs_module=True, options=_SELECT),
    MethodSpec("neuron_guided_backprop", neuron_guided_backprop, layer=True, neuron=True, targeted=False,
               needs_module=True, options=_SELECT),
    MethodSpec("neuron_deconvolution", neuron_deconvolution, layer=True, neuron=True, targeted=False,
               needs_module=True, options=_SELECT),
    MethodSpec("neuron_conductance", neuron_conductance, baselines="optional", layer=True, neuron=True, chunked=True,
               needs_module=True, options=_SELECT + (("n_steps", 16), ("method", "gausslegendre"))),
]

REGISTRY: Dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}


def methods() -> Tuple[MethodSpec, ...]:
    """All registered methods, in registration order."""
    return tuple(REGISTRY.values())
