"""fattr: functional, vectorised feature attribution for PyTorch, built on ``torch.func``.

Every method is a pure function ``method(f, inputs, ...) -> attributions``: no
attribution objects, no hooks, no state. See the README for the conventions
(inputs, baselines, target, args) shared by all of them.
"""
from typing import TYPE_CHECKING

from fattr._src.delta import completeness_delta
from fattr._src.gradient_shap import gradient_shap
from fattr._src.integrated_gradients import integrated_gradients
from fattr._src.noise_tunnel import noise_tunnel
from fattr._src.path import path_attribution
from fattr._src.quadrature import quadrature
from fattr._src.registry import MethodSpec, methods
from fattr._src.saliency import input_x_gradient, saliency
from fattr._src.layer.activation import layer_activation
from fattr._src.layer.feature_ablation import layer_feature_ablation
from fattr._src.layer.feature_permutation import layer_feature_permutation
from fattr._src.layer.grad_cam import layer_grad_cam
from fattr._src.layer.gradient_shap import layer_gradient_shap
from fattr._src.layer.gradient_x_activation import layer_gradient_x_activation
from fattr._src.layer.gradient_x_input import gradient_x_input
from fattr._src.layer.integrated import internal_influence, layer_conductance, layer_integrated_gradients
from fattr._src.layer.interpolate import interpolate
from fattr._src.layer.split import CaptureWarning, split
from fattr._src.deeplift.deeplift import deeplift, deeplift_shap, layer_deeplift, layer_deeplift_shap
from fattr._src.paths.blur import blur_integrated_gradients
from fattr._src.paths.expected_gradients import expected_gradients
from fattr._src.paths.guided import guided_integrated_gradients
from fattr._src.paths.idgi import idgi
from fattr._src.paths.integrated_hessians import integrated_hessians
from fattr import metrics as metrics  # evaluation metrics: fattr.metrics.infidelity, ...deletion, ...
from fattr._src.dataset.runner import attribute_dataset
from fattr._src.dataset.store import AttributionStore
from fattr._src.perturbation.ablation import feature_ablation
from fattr._src.perturbation.lime import kernel_shap, lime
from fattr._src.perturbation.occlusion import occlusion
from fattr._src.perturbation.permutation import feature_permutation
from fattr._src.perturbation.shapley import shapley_value_sampling, shapley_values
from fattr._src.deeplift.guided_backprop import deconvolution, guided_backprop, guided_grad_cam
from fattr._src.neuron.conductance import neuron_conductance
from fattr._src.neuron.methods import (neuron_deconvolution, neuron_deeplift, neuron_deeplift_shap,
                                       neuron_feature_ablation, neuron_gradient, neuron_gradient_shap,
                                       neuron_guided_backprop, neuron_integrated_gradients)
from fattr._src.lm.token_attribution import TokenAttribution, token_attribution
from fattr._src.lrp.lrp import layer_lrp, lrp
from fattr._src.lrp.rules import Alpha1Beta0Rule, EpsilonRule, GammaRule, IdentityRule

__version__ = "0.1.0"

if TYPE_CHECKING:  # imported on first use at run time (``__getattr__``), typed as the modules they are
    from fattr import captum as captum
    from fattr import viz as viz


def __getattr__(name: str) -> object:
    """``fattr.viz`` (it imports matplotlib only when it draws) and ``fattr.captum`` (Captum-compatible
    classes) on first use."""
    if name in ("viz", "captum"):
        import importlib
        return importlib.import_module(f"fattr.{name}")
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
    "layer_feature_permutation",
    "layer_grad_cam",
    "layer_gradient_shap",
    "layer_gradient_x_activation",
    "layer_integrated_gradients",
    "split",
    "CaptureWarning",
    # DeepLift (rescale rule by function interception)
    "deeplift",
    "deeplift_shap",
    "layer_deeplift",
    "layer_deeplift_shap",
    # research path methods on the path engine
    "blur_integrated_gradients",
    "expected_gradients",
    "guided_integrated_gradients",
    "idgi",
    "integrated_hessians",
    "metrics",
    # whole datasets: sharded over torch.distributed ranks, into a resumable on-disk store
    "attribute_dataset",
    "AttributionStore",
    # perturbation methods (batched perturbed copies)
    "feature_ablation",
    "feature_permutation",
    "kernel_shap",
    "lime",
    "occlusion",
    "shapley_value_sampling",
    "shapley_values",
    # rule-based gradients (ReLU rules by function interception)
    "deconvolution",
    "guided_backprop",
    "guided_grad_cam",
    # neuron methods: an input-space method applied to one neuron of a layer
    "neuron_conductance",
    "neuron_deconvolution",
    "neuron_deeplift",
    "neuron_deeplift_shap",
    "neuron_feature_ablation",
    "neuron_gradient",
    "neuron_gradient_shap",
    "neuron_guided_backprop",
    "neuron_integrated_gradients",
    # layer-wise relevance propagation (rules per module, as Captum; no hooks)
    "lrp",
    "layer_lrp",
    "EpsilonRule",
    "GammaRule",
    "Alpha1Beta0Rule",
    "IdentityRule",
    # language models: token-by-token attribution of generated text
    "token_attribution",
    "TokenAttribution",
]
