"""Captum 0.9's neuron classes on fattr's neuron functions; see :mod:`.classes` for the pattern.

Captum's ``neuron_selector`` is the second positional argument of ``attribute``; fattr's
functions take it as the keyword ``neuron_selector=``. Like Captum's, ``forward_func`` may be any
callable that calls the layer (given as the module).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple


from ..neuron.conductance import neuron_conductance
from ..neuron.methods import (neuron_deconvolution, neuron_deeplift, neuron_deeplift_shap, neuron_feature_ablation,
                              neuron_gradient, neuron_gradient_shap, neuron_guided_backprop,
                              neuron_integrated_gradients)
from .base import Attribution, unsupported

Func = Callable[..., Any]


class _Neuron(Attribution):
    """A neuron class: ``forward_func`` (a module or any callable that calls the layer) and ``layer``."""

    layer_method = True

    def _positional(self) -> Tuple[Any, ...]:
        return (self.forward_func, self.layer)


class NeuronGradient(_Neuron):
    """Captum's ``NeuronGradient`` on :func:`fattr.neuron_gradient`."""

    fn = staticmethod(neuron_gradient)
    def __init__(self, forward_func: Func, layer: Any, device_ids: Any = None) -> None:
        super().__init__(forward_func, layer, device_ids=device_ids)

    def attribute(self, inputs: Any, neuron_selector: Any, additional_forward_args: Any = None,
                  attribute_to_neuron_input: bool = False) -> Any:
        return self._call(inputs, neuron_selector=neuron_selector, additional_forward_args=additional_forward_args,
                          attribute_to_neuron_input=attribute_to_neuron_input)


class NeuronIntegratedGradients(_Neuron):
    """Captum's ``NeuronIntegratedGradients`` on :func:`fattr.neuron_integrated_gradients`."""

    fn = staticmethod(neuron_integrated_gradients)
    def __init__(self, forward_func: Func, layer: Any, device_ids: Any = None, multiply_by_inputs: bool = True) -> None:
        super().__init__(forward_func, layer, device_ids=device_ids, multiply_by_inputs=multiply_by_inputs)

    def attribute(self, inputs: Any, neuron_selector: Any, baselines: Any = None, additional_forward_args: Any = None,
                  n_steps: int = 50, method: str = "gausslegendre", internal_batch_size: Optional[int] = None,
                  attribute_to_neuron_input: bool = False) -> Any:
        return self._call(inputs, neuron_selector=neuron_selector, baselines=baselines,
                          additional_forward_args=additional_forward_args, n_steps=n_steps, method=method,
                          internal_batch_size=internal_batch_size, attribute_to_neuron_input=attribute_to_neuron_input)


class NeuronGradientShap(_Neuron):
    """Captum's ``NeuronGradientShap`` on :func:`fattr.neuron_gradient_shap` (draws from torch's global RNG)."""

    fn = staticmethod(neuron_gradient_shap)
    stochastic = True

    def __init__(self, forward_func: Func, layer: Any, device_ids: Any = None, multiply_by_inputs: bool = True) -> None:
        super().__init__(forward_func, layer, device_ids=device_ids, multiply_by_inputs=multiply_by_inputs)

    def attribute(self, inputs: Any, neuron_selector: Any, baselines: Any, n_samples: int = 5, stdevs: Any = 0.0,
                  additional_forward_args: Any = None, attribute_to_neuron_input: bool = False) -> Any:
        return self._call(inputs, neuron_selector=neuron_selector, baselines=baselines, n_samples=n_samples,
                          stdevs=stdevs, additional_forward_args=additional_forward_args,
                          attribute_to_neuron_input=attribute_to_neuron_input)


class NeuronDeepLift(_Neuron):
    """Captum's ``NeuronDeepLift`` on :func:`fattr.neuron_deeplift`."""

    fn = staticmethod(neuron_deeplift)
    def __init__(self, model: Any, layer: Any, multiply_by_inputs: bool = True) -> None:
        super().__init__(model, layer, multiply_by_inputs=multiply_by_inputs)
        self.model = model

    def attribute(self, inputs: Any, neuron_selector: Any, baselines: Any = None, additional_forward_args: Any = None,
                  attribute_to_neuron_input: bool = False, custom_attribution_func: Optional[Func] = None) -> Any:
        return self._call(inputs, neuron_selector=neuron_selector, baselines=baselines,
                          additional_forward_args=additional_forward_args,
                          attribute_to_neuron_input=attribute_to_neuron_input,
                          custom_attribution_func=custom_attribution_func)


class NeuronDeepLiftShap(_Neuron):
    """Captum's ``NeuronDeepLiftShap`` on :func:`fattr.neuron_deeplift_shap`."""

    fn = staticmethod(neuron_deeplift_shap)
    def __init__(self, model: Any, layer: Any, multiply_by_inputs: bool = True) -> None:
        super().__init__(model, layer, multiply_by_inputs=multiply_by_inputs)
        self.model = model

    def attribute(self, inputs: Any, neuron_selector: Any, baselines: Any, additional_forward_args: Any = None,
                  attribute_to_neuron_input: bool = False, custom_attribution_func: Optional[Func] = None) -> Any:
        return self._call(inputs, neuron_selector=neuron_selector, baselines=baselines,
                          additional_forward_args=additional_forward_args,
                          attribute_to_neuron_input=attribute_to_neuron_input,
                          custom_attribution_func=custom_attribution_func)


class NeuronGuidedBackprop(_Neuron):
    """Captum's ``NeuronGuidedBackprop`` on :func:`fattr.neuron_guided_backprop`."""

    fn = staticmethod(neuron_guided_backprop)
    def __init__(self, model: Any, layer: Any, device_ids: Any = None) -> None:
        super().__init__(model, layer, device_ids=device_ids)
        self.model = model

    def attribute(self, inputs: Any, neuron_selector: Any, additional_forward_args: Any = None,
                  attribute_to_neuron_input: bool = False) -> Any:
        return self._call(inputs, neuron_selector=neuron_selector, additional_forward_args=additional_forward_args,
                          attribute_to_neuron_input=attribute_to_neuron_input)


class NeuronDeconvolution(_Neuron):
    """Captum's ``NeuronDeconvolution`` on :func:`fattr.neuron_deconvolution`."""

    fn = staticmethod(neuron_deconvolution)
    def __init__(self, model: Any, layer: Any, device_ids: Any = None) -> None:
        super().__init__(model, layer, device_ids=device_ids)
        self.model = model

    def attribute(self, inputs: Any, neuron_selector: Any, additional_forward_args: Any = None,
                  attribute_to_neuron_input: bool = False) -> Any:
        return self._call(inputs, neuron_selector=neuron_selector, additional_forward_args=additional_forward_args,
                          attribute_to_neuron_input=attribute_to_neuron_input)


class NeuronFeatureAblation(_Neuron):
    """Captum's ``NeuronFeatureAblation`` on :func:`fattr.neuron_feature_ablation`."""

    fn = staticmethod(neuron_feature_ablation)
    multiplies = True  # Captum's flag (ablation is global)

    def __init__(self, forward_func: Func, layer: Any, device_ids: Any = None) -> None:
        super().__init__(forward_func, layer, device_ids=device_ids)

    def attribute(self, inputs: Any, neuron_selector: Any, baselines: Any = None, additional_forward_args: Any = None,
                  feature_mask: Any = None, attribute_to_neuron_input: bool = False,
                  perturbations_per_eval: int = 1) -> Any:
        return self._call(inputs, neuron_selector=neuron_selector, baselines=baselines,
                          additional_forward_args=additional_forward_args, feature_mask=feature_mask,
                          attribute_to_neuron_input=attribute_to_neuron_input,
                          perturbations_per_eval=perturbations_per_eval)


class NeuronConductance(_Neuron):
    """Captum's ``NeuronConductance`` on :func:`fattr.neuron_conductance` (textbook trapezoid weights:
    Captum's default rule gives ``(n-1)/n`` of fattr's value; a region or callable selector gets the sum
    of its neurons' conductances)."""

    fn = staticmethod(neuron_conductance)
    def __init__(self, forward_func: Func, layer: Any, device_ids: Any = None, multiply_by_inputs: bool = True) -> None:
        super().__init__(forward_func, layer, device_ids=device_ids, multiply_by_inputs=multiply_by_inputs)

    def attribute(self, inputs: Any, neuron_selector: Any, baselines: Any = None, target: Any = None,
                  additional_forward_args: Any = None, n_steps: int = 50, method: str = "riemann_trapezoid",
                  internal_batch_size: Optional[int] = None, attribute_to_neuron_input: bool = False,
                  grad_kwargs: Any = None) -> Any:
        unsupported(type(self).__name__, grad_kwargs=grad_kwargs)
        return self._call(inputs, neuron_selector=neuron_selector, baselines=baselines, target=target,
                          additional_forward_args=additional_forward_args, n_steps=n_steps, method=method,
                          internal_batch_size=internal_batch_size, attribute_to_neuron_input=attribute_to_neuron_input)
