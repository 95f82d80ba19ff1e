"""fattr: functional, vectorised feature attribution for PyTorch, built on ``torch.func``.

Every method is a pure function ``method(f, inputs, ...) -> attributions``: no
attribution objects, no hooks, no state. See the README for the conventions
(inputs, baselines, target, args) shared by all of them.
"""
from fattr._src.delta import completeness_delta as completeness_delta
from fattr._src.gradient_shap import gradient_shap as gradient_shap
from fattr._src.integrated_gradients import integrated_gradients as integrated_gradients
from fattr._src.noise_tunnel import noise_tunnel as noise_tunnel
from fattr._src.path import path_attribution as path_attribution
from fattr._src.quadrature import quadrature as quadrature
from fattr._src.registry import MethodSpec as MethodSpec
from fattr._src.registry import methods as methods
from fattr._src.saliency import input_x_gradient as input_x_gradient
from fattr._src.saliency import saliency as saliency
# layer attribution by splitting the model
from fattr._src.layer.activation import layer_activation as layer_activation
from fattr._src.layer.feature_ablation import layer_feature_ablation as layer_feature_ablation
from fattr._src.layer.grad_cam import layer_grad_cam as layer_grad_cam
from fattr._src.layer.gradient_shap import layer_gradient_shap as layer_gradient_shap
from fattr._src.layer.gradient_x_activation import layer_gradient_x_activation as layer_gradient_x_activation
from fattr._src.layer.gradient_x_input import gradient_x_input as gradient_x_input
from fattr._src.layer.integrated import internal_influence as internal_influence
from fattr._src.layer.integrated import layer_conductance as layer_conductance
from fattr._src.layer.integrated import layer_integrated_gradients as layer_integrated_gradients
from fattr._src.layer.interpolate import interpolate as interpolate
from fattr._src.layer.split import split as split
# DeepLift (rescale rule by function interception)
from fattr._src.deeplift.deeplift import deeplift as deeplift
from fattr._src.deeplift.deeplift import deeplift_shap as deeplift_shap
from fattr._src.deeplift.layer import layer_deeplift as layer_deeplift
from fattr._src.deeplift.layer import layer_deeplift_shap as layer_deeplift_shap
# language models: token-by-token attribution of generated text
from fattr._src.lm.result import TokenAttribution as TokenAttribution
from fattr._src.lm.token_attribution import token_attribution as token_attribution

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``fattr.viz`` on first use (it imports matplotlib only when it draws)."""
    if name == "viz":
        import importlib
        return importlib.import_module("fattr.viz")
    raise AttributeError(f"module 'fattr' has no attribute {name!r}")


__all__ = [
    "completeness_delta",
    "gradient_shap",
    "input_x_gradient",
    "integrated_gradients",
    "methods",
    "MethodSpec",
    "noise_tunnel",
    "path_attribution",
    "quadrature",
    "saliency",
    # layer attribution by splitting the model
    "gradient_x_input",
    "internal_influence",
    "interpolate",
    "layer_activation",
    "layer_conductance",
    "layer_feature_ablation",
    "layer_grad_cam",
    "layer_gradient_shap",
    "layer_gradient_x_activation",
    "layer_integrated_gradients",
    "split",
    # DeepLift (rescale rule by function interception)
    "deeplift",
    "deeplift_shap",
    "layer_deeplift",
    "layer_deeplift_shap",
    # language models: token-by-token attribution of generated text
    "token_attribution",
    "TokenAttribution",
]
