"""The same calls through Captum (when installed), for the report's "difference from Captum" column.

Captum's classes hold the model and use hooks, so each runs on a deep copy of the
model and a copy of the inputs: the demo's own model is never touched.
"""
from __future__ import annotations

import copy
import inspect
import time
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from .attribute import options as image_options

# fattr name -> Captum class in captum.attr
CLASSES: Dict[str, str] = {
    "saliency": "Saliency",
    "input_x_gradient": "InputXGradient",
    "gradient_x_input": "InputXGradient",
    "integrated_gradients": "IntegratedGradients",
    "gradient_shap": "GradientShap",
    "smoothgrad": "NoiseTunnel",
    "deeplift": "DeepLift",
    "deeplift_shap": "DeepLiftShap",
    "layer_activation": "LayerActivation",
    "layer_gradient_x_activation": "LayerGradientXActivation",
    "layer_grad_cam": "LayerGradCam",
    "internal_influence": "InternalInfluence",
    "feature_ablation": "FeatureAblation",
    "occlusion": "Occlusion",
    "shapley_values": "ShapleyValues",
    "shapley_value_sampling": "ShapleyValueSampling",
    "lime": "Lime",
    "kernel_shap": "KernelShap",
    "feature_permutation": "FeaturePermutation",
    "layer_conductance": "LayerConductance",
    "layer_integrated_gradients": "LayerIntegratedGradients",
    "layer_gradient_shap": "LayerGradientShap",
    "layer_feature_ablation": "LayerFeatureAblation",
    "layer_deeplift": "LayerDeepLift",
    "layer_deeplift_shap": "LayerDeepLiftShap",
    # rule-based gradients and neuron methods (the registry's selector is a region of two channels: Captum's
    # NeuronConductance defines a region's conductance differently, so it is left out)
    "guided_backprop": "GuidedBackprop",
    "deconvolution": "Deconvolution",
    "guided_grad_cam": "GuidedGradCam",
    "neuron_gradient": "NeuronGradient",
    "neuron_integrated_gradients": "NeuronIntegratedGradients",
    "neuron_gradient_shap": "NeuronGradientShap",
    "neuron_deeplift": "NeuronDeepLift",
    "neuron_deeplift_shap": "NeuronDeepLiftShap",
    "neuron_guided_backprop": "NeuronGuidedBackprop",
    "neuron_deconvolution": "NeuronDeconvolution",
}
RENAMED = {"chunk_size": "internal_batch_size"}


@dataclass
class Comparison:
    captum_class: str = ""
    max_abs_diff: Optional[float] = None
    max_abs: Optional[float] = None  # largest |attribution|, to read the difference against
    delta: Optional[float] = None  # mean |convergence delta| of Captum's attributions
    seconds: Optional[float] = None
    note: str = ""


def available() -> bool:
    try:
        import captum.attr  # noqa: F401
    except ImportError:
        return False
    return True


def compare(spec: Any, ours: Any, model: nn.Module, layer_name: str, x: torch.Tensor, target: torch.Tensor,
            distribution: torch.Tensor, repeats: int = 3) -> Comparison:
    """Run Captum's counterpart of ``spec`` with the same options and compare with ``ours``.

    Captum's time is the best of ``repeats`` calls, like fattr's in the demo.
    """
    name = CLASSES.get(spec.name)
    if name is None:
        return Comparison(note="no Captum counterpart")
    result = Comparison(captum_class=name)
    if spec.stochastic:
        result.note = "stochastic: Captum draws from the global RNG, no draw-for-draw comparison"
        return result
    import captum.attr

    cls = getattr(captum.attr, name)
    options = {RENAMED.get(k, k): v for k, v in image_options(spec, x).items()}
    twin = copy.deepcopy(model)
    init = inspect.signature(cls.__init__).parameters
    make = {k: v for k, v in options.items() if k in init}
    attribute_params = inspect.signature(cls.attribute).parameters
    kwargs = {k: v for k, v in options.items() if k in attribute_params and k not in init}
    if spec.targeted and "target" in attribute_params:
        kwargs["target"] = target
    if spec.baselines == "distribution":
        kwargs["baselines"] = distribution.clone()
    if spec.delta and "return_convergence_delta" in attribute_params:
        kwargs["return_convergence_delta"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = cls(twin, twin.get_submodule(layer_name), **make) if spec.layer else cls(twin, **make)
        times: List[float] = []
        for _ in range(repeats):
            start = time.perf_counter()
            try:
                theirs = explainer.attribute(x.clone(), **kwargs)
            except AssertionError:
                if times or kwargs.get("perturbations_per_eval", 1) == 1:
                    raise
                # Captum 0.9 rejects per-example targets with perturbations_per_eval > 1 (results do not
                # depend on it)
                kwargs["perturbations_per_eval"] = 1
                result.note = "Captum run with perturbations_per_eval=1 (it rejects per-example targets otherwise)"
                start = time.perf_counter()
                theirs = explainer.attribute(x.clone(), **kwargs)
            times.append(time.perf_counter() - start)
            if times[-1] > 0.5:  # slow enough to time once
                break
        result.seconds = min(times)
    if kwargs.get("return_convergence_delta"):
        theirs, captum_delta = theirs
        result.delta = float(captum_delta.detach().abs().double().mean())
    if isinstance(ours, (tuple, list)) != isinstance(theirs, (tuple, list)):
        ours = ours[0] if isinstance(ours, (tuple, list)) and len(ours) == 1 else ours
        theirs = theirs[0] if isinstance(theirs, (tuple, list)) and len(theirs) == 1 else theirs
    pairs = list(zip(ours, theirs)) if isinstance(ours, (tuple, list)) else [(ours, theirs)]
    diff = top = 0.0
    for a, b in pairs:
        if a.shape != b.shape:
            result.note = f"shapes differ: {tuple(a.shape)} vs Captum {tuple(b.shape)}"
            return result
        diff = max(diff, float((a.detach().double() - b.detach().double()).abs().max()))
        top = max(top, float(b.detach().abs().max()))
    result.max_abs_diff, result.max_abs = diff, top
    return result
