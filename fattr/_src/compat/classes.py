"""One class per fattr method, with Captum 0.9's class name, constructor and ``attribute`` signature:
the gradient, path, DeepLift, ReLU-rule, layer and neuron classes and ``NoiseTunnel`` here; the
perturbation classes in :mod:`.perturbation`. Each class is one row (:class:`.base.Attribution`).
"""
from __future__ import annotations

from typing import Any, Optional

import torch

from ..deeplift.deeplift import deeplift, deeplift_shap, layer_deeplift, layer_deeplift_shap
from ..deeplift.guided_backprop import deconvolution, guided_backprop, guided_grad_cam
from ..errors import fail
from ..gradient_shap import gradient_shap
from ..integrated_gradients import integrated_gradients
from ..layer.activation import layer_activation
from ..layer.feature_ablation import layer_feature_ablation
from ..layer.grad_cam import layer_grad_cam
from ..layer.gradient_shap import layer_gradient_shap
from ..layer.gradient_x_activation import layer_gradient_x_activation
from ..layer.integrated import internal_influence, layer_conductance, layer_integrated_gradients
from ..neuron.conductance import neuron_conductance
from ..neuron.methods import (neuron_deconvolution, neuron_deeplift, neuron_deeplift_shap, neuron_feature_ablation,
                              neuron_gradient, neuron_gradient_shap, neuron_guided_backprop,
                              neuron_integrated_gradients)
from ..noise_tunnel import noise_tunnel
from ..saliency import input_x_gradient, saliency
from .base import Attribution, captum, examples, unsupported

# Captum's attribute() arguments shared by many classes, in Captum's order
_PATH = dict(n_steps=50, method="gausslegendre", internal_batch_size=None)
_TARGET = dict(target=None, additional_forward_args=None)
_DELTA = dict(return_convergence_delta=False)
_NEURON = dict(additional_forward_args=None, attribute_to_neuron_input=False)  # the last ones of most neuron classes
_NEURON_DEEPLIFT = dict(_NEURON, custom_attribution_func=None)
_NEURON_PATH = dict(additional_forward_args=None, **_PATH, attribute_to_neuron_input=False)


# --------------------------------------------------------------------------- input attribution

class Saliency(Attribution, fn=saliency,
               attribute=captum("inputs", target=None, abs=True, additional_forward_args=None)):
    """Captum's ``Saliency`` on :func:`fattr.saliency`."""


class InputXGradient(Attribution, fn=input_x_gradient, multiplies=True, attribute=captum("inputs", **_TARGET)):
    """Captum's ``InputXGradient`` on :func:`fattr.input_x_gradient`."""


class IntegratedGradients(Attribution, fn=integrated_gradients, delta=True,
                          init=captum("forward_func", multiply_by_inputs=True),
                          attribute=captum("inputs", baselines=None, **_TARGET, **_PATH, **_DELTA)):
    """Captum's ``IntegratedGradients`` on :func:`fattr.integrated_gradients`."""


class GradientShap(Attribution, fn=gradient_shap, delta=True, stochastic=True,
                   init=captum("forward_func", multiply_by_inputs=True),
                   attribute=captum("inputs", "baselines", n_samples=5, stdevs=0.0, **_TARGET, **_DELTA)):
    """Captum's ``GradientShap`` on :func:`fattr.gradient_shap` (draws from torch's global RNG)."""


class DeepLift(Attribution, fn=deeplift, delta=True, init=captum("model", multiply_by_inputs=True, eps=1e-10),
               attribute=captum("inputs", baselines=None, **_TARGET, **_DELTA, custom_attribution_func=None)):
    """Captum's ``DeepLift`` on :func:`fattr.deeplift`."""


class DeepLiftShap(Attribution, fn=deeplift_shap, delta=True, init=captum("model", multiply_by_inputs=True),
                   attribute=captum("inputs", "baselines", **_TARGET, **_DELTA, custom_attribution_func=None)):
    """Captum's ``DeepLiftShap`` on :func:`fattr.deeplift_shap`."""


class GuidedBackprop(Attribution, fn=guided_backprop, init=captum("model"), attribute=captum("inputs", **_TARGET)):
    """Captum's ``GuidedBackprop`` on :func:`fattr.guided_backprop` (every ReLU call, modules reused or
    functional included; no hooks left on the model)."""


class Deconvolution(Attribution, fn=deconvolution, init=captum("model"), attribute=captum("inputs", **_TARGET)):
    """Captum's ``Deconvolution`` on :func:`fattr.deconvolution`."""


class GuidedGradCam(Attribution, fn=guided_grad_cam, layer_method=True,
                    init=captum("model", "layer", device_ids=None),
                    attribute=captum("inputs", **_TARGET, interpolate_mode="nearest", attribute_to_layer_input=False)):
    """Captum's ``GuidedGradCam`` on :func:`fattr.guided_grad_cam`."""


# --------------------------------------------------------------------------- layer attribution

class LayerActivation(Attribution, fn=layer_activation, layer_method=True,
                      multiplies=True,  # Captum's flag (ablation and activations are global)
                      attribute=captum("inputs", additional_forward_args=None, attribute_to_layer_input=False)):
    """Captum's ``LayerActivation`` on :func:`fattr.layer_activation`."""


class LayerGradientXActivation(
        Attribution, fn=layer_gradient_x_activation, layer_method=True,
        init=captum("forward_func", "layer", device_ids=None, multiply_by_inputs=True, memory_efficient=False),
        attribute=captum("inputs", **_TARGET, attribute_to_layer_input=False, grad_kwargs=None)):
    """Captum's ``LayerGradientXActivation`` on :func:`fattr.layer_gradient_x_activation`
    (``memory_efficient`` is accepted: fattr never keeps more than one gradient pass)."""


class LayerGradCam(Attribution, fn=layer_grad_cam, layer_method=True,
                   attribute=captum("inputs", **_TARGET, attribute_to_layer_input=False, relu_attributions=False,
                                    attr_dim_summation=True, grad_kwargs=None)):
    """Captum's ``LayerGradCam`` on :func:`fattr.layer_grad_cam`."""


class InternalInfluence(Attribution, fn=internal_influence, layer_method=True,
                        attribute=captum("inputs", baselines=None, **_TARGET, **_PATH,
                                         attribute_to_layer_input=False, grad_kwargs=None)):
    """Captum's ``InternalInfluence`` on :func:`fattr.internal_influence`."""


class LayerConductance(Attribution, fn=layer_conductance, layer_method=True, delta=True, multiplies=True,
                       attribute=captum("inputs", baselines=None, **_TARGET, **_PATH, **_DELTA,
                                        attribute_to_layer_input=False, grad_kwargs=None)):
    """Captum's ``LayerConductance`` on :func:`fattr.layer_conductance`."""


class LayerIntegratedGradients(Attribution, fn=layer_integrated_gradients, layer_method=True, delta=True,
                               init=captum("forward_func", "layer", device_ids=None, multiply_by_inputs=True),
                               attribute=captum("inputs", baselines=None, **_TARGET, **_PATH, **_DELTA,
                                                attribute_to_layer_input=False, grad_kwargs=None)):
    """Captum's ``LayerIntegratedGradients`` on :func:`fattr.layer_integrated_gradients`."""


class LayerGradientShap(Attribution, fn=layer_gradient_shap, layer_method=True, delta=True, stochastic=True,
                        init=captum("forward_func", "layer", device_ids=None, multiply_by_inputs=True),
                        attribute=captum("inputs", "baselines", n_samples=5, stdevs=0.0, **_TARGET, **_DELTA,
                                         attribute_to_layer_input=False)):
    """Captum's ``LayerGradientShap`` on :func:`fattr.layer_gradient_shap` (draws from torch's global RNG)."""


class LayerFeatureAblation(Attribution, fn=layer_feature_ablation, layer_method=True,
                           multiplies=True,  # Captum's flag (ablation and activations are global)
                           attribute=captum("inputs", layer_baselines=None, **_TARGET, layer_mask=None,
                                            attribute_to_layer_input=False, perturbations_per_eval=1)):
    """Captum's ``LayerFeatureAblation`` on :func:`fattr.layer_feature_ablation`."""


class LayerDeepLift(Attribution, fn=layer_deeplift, layer_method=True, delta=True,
                    init=captum("model", "layer", multiply_by_inputs=True),
                    attribute=captum("inputs", baselines=None, **_TARGET, **_DELTA, attribute_to_layer_input=False,
                                     custom_attribution_func=None, grad_kwargs=None)):
    """Captum's ``LayerDeepLift`` on :func:`fattr.layer_deeplift`."""


class LayerDeepLiftShap(Attribution, fn=layer_deeplift_shap, layer_method=True, delta=True,
                        init=captum("model", "layer", multiply_by_inputs=True),
                        attribute=captum("inputs", "baselines", **_TARGET, **_DELTA, attribute_to_layer_input=False,
                                         custom_attribution_func=None)):
    """Captum's ``LayerDeepLiftShap`` on :func:`fattr.layer_deeplift_shap`."""


# --------------------------------------------------------------------------- neuron attribution
# Captum's ``neuron_selector`` is the second positional argument of ``attribute``; fattr's functions take it
# as the keyword ``neuron_selector=``. Like Captum's, ``forward_func`` may be any callable that calls the layer.

class NeuronGradient(Attribution, fn=neuron_gradient, layer_method=True,
                     attribute=captum("inputs", "neuron_selector", **_NEURON)):
    """Captum's ``NeuronGradient`` on :func:`fattr.neuron_gradient`."""


class NeuronIntegratedGradients(Attribution, fn=neuron_integrated_gradients, layer_method=True,
                                init=captum("forward_func", "layer", device_ids=None, multiply_by_inputs=True),
                                attribute=captum("inputs", "neuron_selector", baselines=None, **_NEURON_PATH)):
    """Captum's ``NeuronIntegratedGradients`` on :func:`fattr.neuron_integrated_gradients`."""


class NeuronGradientShap(Attribution, fn=neuron_gradient_shap, layer_method=True, stochastic=True,
                         init=captum("forward_func", "layer", device_ids=None, multiply_by_inputs=True),
                         attribute=captum("inputs", "neuron_selector", "baselines", n_samples=5, stdevs=0.0,
                                          **_NEURON)):
    """Captum's ``NeuronGradientShap`` on :func:`fattr.neuron_gradient_shap` (draws from torch's global RNG)."""


class NeuronDeepLift(Attribution, fn=neuron_deeplift, layer_method=True,
                     init=captum("model", "layer", multiply_by_inputs=True),
                     attribute=captum("inputs", "neuron_selector", baselines=None, **_NEURON_DEEPLIFT)):
    """Captum's ``NeuronDeepLift`` on :func:`fattr.neuron_deeplift`."""


class NeuronDeepLiftShap(Attribution, fn=neuron_deeplift_shap, layer_method=True,
                         init=captum("model", "layer", multiply_by_inputs=True),
                         attribute=captum("inputs", "neuron_selector", "baselines", **_NEURON_DEEPLIFT)):
    """Captum's ``NeuronDeepLiftShap`` on :func:`fattr.neuron_deeplift_shap`."""


class NeuronGuidedBackprop(Attribution, fn=neuron_guided_backprop, layer_method=True,
                           init=captum("model", "layer", device_ids=None),
                           attribute=captum("inputs", "neuron_selector", **_NEURON)):
    """Captum's ``NeuronGuidedBackprop`` on :func:`fattr.neuron_guided_backprop`."""


class NeuronDeconvolution(Attribution, fn=neuron_deconvolution, layer_method=True,
                          init=captum("model", "layer", device_ids=None),
                          attribute=captum("inputs", "neuron_selector", **_NEURON)):
    """Captum's ``NeuronDeconvolution`` on :func:`fattr.neuron_deconvolution`."""


class NeuronFeatureAblation(Attribution, fn=neuron_feature_ablation, layer_method=True,
                            multiplies=True,  # Captum's flag (ablation is global)
                            attribute=captum("inputs", "neuron_selector", baselines=None, additional_forward_args=None,
                                             feature_mask=None, attribute_to_neuron_input=False,
                                             perturbations_per_eval=1)):
    """Captum's ``NeuronFeatureAblation`` on :func:`fattr.neuron_feature_ablation`."""


class NeuronConductance(Attribution, fn=neuron_conductance, layer_method=True,
                        init=captum("forward_func", "layer", device_ids=None, multiply_by_inputs=True),
                        attribute=captum("inputs", "neuron_selector", baselines=None, target=None,
                                         additional_forward_args=None, n_steps=50, method="riemann_trapezoid",
                                         internal_batch_size=None, attribute_to_neuron_input=False, grad_kwargs=None)):
    """Captum's ``NeuronConductance`` on :func:`fattr.neuron_conductance` (textbook trapezoid weights:
    Captum's default rule gives ``(n-1)/n`` of fattr's value; a region or callable selector gets the sum
    of its neurons' conductances)."""


# --------------------------------------------------------------------------- noise tunnel

class NoiseTunnel(Attribution):
    """Captum's ``NoiseTunnel`` on :func:`fattr.noise_tunnel`, around any class of this module
    (noise from torch's global RNG)."""

    def __init__(self, attribution_method: Attribution) -> None:
        if not isinstance(attribution_method, Attribution):
            fail("attribution_method", "an instance of a fattr.captum class", attribution_method,
                 "Captum's own classes cannot be wrapped: use fattr.captum's.", kind=TypeError)
        super().__init__(attribution_method.forward_func)
        self.attribution_method = attribution_method

    @property
    def multiplies_by_inputs(self) -> bool:
        return self.attribution_method.multiplies_by_inputs

    def has_convergence_delta(self) -> bool:
        return self.attribution_method.has_convergence_delta()

    def attribute(self, inputs: Any, nt_type: str = "smoothgrad", nt_samples: int = 5,
                  nt_samples_batch_size: Optional[int] = None, stdevs: Any = 1.0,
                  draw_baseline_from_distrib: bool = False, **kwargs: Any) -> Any:
        unsupported(type(self).__name__, draw_baseline_from_distrib=draw_baseline_from_distrib)
        method = self.attribution_method
        tunnel = noise_tunnel(method.fn, kind=nt_type, n_samples=nt_samples, stdevs=stdevs,
                              chunk_size=nt_samples_batch_size)
        # Captum's internal_batch_size counts the rows of the noisy batch the method is given
        rows = examples(inputs) * min(nt_samples_batch_size or nt_samples, nt_samples)
        translated = method._translate(inputs, method._captum_kwargs(kwargs), rows=rows)
        translated["generator"] = torch.default_generator  # Captum's contract: torch's global RNG
        return tunnel(*method._positional(), inputs, **translated)
