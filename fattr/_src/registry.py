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
# language models: token-by-token attribution of generated text
from .lm.token_attribution import token_attribution


@dataclass(frozen=True)
class MethodSpec:
    """How to call a method: ``fn(model, [layer,] inputs, [baselines,] target=..., **options)``.

    Attributes:
      name: public name.
      fn: the function.
      baselines: ``"none"`` (takes no baselines), ``"optional"`` (None means zeros) or
        ``"distribution"`` (required rows, SHAP-style).
      layer: takes ``(model, layer, inputs, ...)`` and attributes to a layer.
      stochastic: takes ``generator=``.
      chunked: takes ``chunk_size=`` (results must not depend on it).
      delta: takes ``return_delta=``.
      targeted: takes ``target=``.
      needs_module: ``f`` must be an ``nn.Module`` (not any callable).
      options: extra keyword arguments used when calling it generically.
      inputs: ``"features"`` (tensors, the conventions above) or ``"token_ids"``: a causal language
        model and prompt ids, ``fn(model, input_ids, target_ids, *, layer=..., **options)``
        returning a :class:`fattr.TokenAttribution`.
    """

    name: str
    fn: Callable[..., Any]
    baselines: str = "none"
    layer: bool = False
    stochastic: bool = False
    chunked: bool = False
    delta: bool = False
    targeted: bool = True
    needs_module: bool = False
    options: Tuple[Tuple[str, Any], ...] = ()
    inputs: str = "features"


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
    # language models: token-by-token attribution of generated text (its other methods: tests/test_token_attribution.py)
    MethodSpec("token_attribution", token_attribution, chunked=True, needs_module=True, inputs="token_ids",
               options=(("n_steps", 8),)),
]

REGISTRY: Dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}


def methods() -> Tuple[MethodSpec, ...]:
    """All registered methods, in registration order."""
    return tuple(REGISTRY.values())
