"""Captum 0.9's neuron classes on fattr's neuron functions; see :mod:`.classes` for the pattern.

Captum's ``neuron_selector`` is the second positional argument of ``attribute``; fattr's
functions take it as the keyword ``neuron_selector=``. Like Captum's, ``forward_func`` may be any
callable that calls the layer (given as the module).
"""
from __future__ import annotations

from ..neuron.conductance import neuron_conductance
from ..neuron.methods import (neuron_deconvolution, neuron_deeplift, neuron_deeplift_shap, neuron_feature_ablation,
                              neuron_gradient, neuron_gradient_shap, neuron_guided_backprop,
                              neuron_integrated_gradients)
from .base import Attribution, captum

# Captum's last arguments of most neuron classes, in its order
_ARGS = dict(additional_forward_args=None, attribute_to_neuron_input=False)
_DEEPLIFT = dict(_ARGS, custom_attribution_func=None)


class NeuronGradient(Attribution, fn=neuron_gradient, layer_method=True,
                     attribute=captum("inputs", "neuron_selector", **_ARGS)):
    """Captum's ``NeuronGradient`` on :func:`fattr.neuron_gradient`."""


class NeuronIntegratedGradients(Attribution, fn=neuron_integrated_gradients, layer_method=True,
                                init=captum("forward_func", "layer", device_ids=None, multiply_by_inputs=True),
                                attribute=captum("inputs", "neuron_selector", baselines=None,
                                                 additional_forward_args=None, n_steps=50, method="gausslegendre",
                                                 internal_batch_size=None, attribute_to_neuron_input=False)):
    """Captum's ``NeuronIntegratedGradients`` on :func:`fattr.neuron_integrated_gradients`."""


class NeuronGradientShap(Attribution, fn=neuron_gradient_shap, layer_method=True, stochastic=True,
                         init=captum("forward_func", "layer", device_ids=None, multiply_by_inputs=True),
                         attribute=captum("inputs", "neuron_selector", "baselines", n_samples=5, stdevs=0.0,
                                          **_ARGS)):
    """Captum's ``NeuronGradientShap`` on :func:`fattr.neuron_gradient_shap` (draws from torch's global RNG)."""


class NeuronDeepLift(Attribution, fn=neuron_deeplift, layer_method=True,
                     init=captum("model", "layer", multiply_by_inputs=True),
                     attribute=captum("inputs", "neuron_selector", baselines=None, **_DEEPLIFT)):
    """Captum's ``NeuronDeepLift`` on :func:`fattr.neuron_deeplift`."""


class NeuronDeepLiftShap(Attribution, fn=neuron_deeplift_shap, layer_method=True,
                         init=captum("model", "layer", multiply_by_inputs=True),
                         attribute=captum("inputs", "neuron_selector", "baselines", **_DEEPLIFT)):
    """Captum's ``NeuronDeepLiftShap`` on :func:`fattr.neuron_deeplift_shap`."""


class NeuronGuidedBackprop(Attribution, fn=neuron_guided_backprop, layer_method=True,
                           init=captum("model", "layer", device_ids=None),
                           attribute=captum("inputs", "neuron_selector", **_ARGS)):
    """Captum's ``NeuronGuidedBackprop`` on :func:`fattr.neuron_guided_backprop`."""


class NeuronDeconvolution(Attribution, fn=neuron_deconvolution, layer_method=True,
                          init=captum("model", "layer", device_ids=None),
                          attribute=captum("inputs", "neuron_selector", **_ARGS)):
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
