"""One class per fattr method, with Captum 0.9's class name, constructor and ``attribute`` signature:
the gradient, path, DeepLift and layer classes and ``NoiseTunnel`` here; the perturbation, ReLU-rule
and neuron classes in :mod:`.perturbation`, :mod:`.guided` and :mod:`.neuron`.

Each ``attribute`` is one call of the fattr function (:class:`.base.Attribution`). Adding a
class is a few lines: set ``fn`` (and ``layer_method``, ``delta``, ``stochastic``), copy
Captum's ``attribute`` signature, pass its arguments to ``self._call``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from ..deeplift.deeplift import deeplift, deeplift_shap
from ..deeplift.layer import layer_deeplift, layer_deeplift_shap
from ..errors import fail
from ..gradient_shap import gradient_shap
from ..integrated_gradients import integrated_gradients
from ..layer.activation import layer_activation
from ..layer.feature_ablation import layer_feature_ablation
from ..layer.grad_cam import layer_grad_cam
from ..layer.gradient_shap import layer_gradient_shap
from ..layer.gradient_x_activation import layer_gradient_x_activation
from ..layer.integrated import internal_influence, layer_conductance, layer_integrated_gradients
from ..noise_tunnel import noise_tunnel
from ..saliency import input_x_gradient, saliency
from .base import Attribution, examples, unsupported

Func = Callable[..., Any]


# --------------------------------------------------------------------------- input attribution

class Saliency(Attribution):
    """Captum's ``Saliency`` on :func:`fattr.saliency`."""

    fn = staticmethod(saliency)

    def __init__(self, forward_func: Func) -> None:
        super().__init__(forward_func)

    def attribute(self, inputs: Any, target: Any = None, abs: bool = True, additional_forward_args: Any = None) -> Any:
        return self._call(inputs, target=target, abs=abs, additional_forward_args=additional_forward_args)


class InputXGradient(Attribution):
    """Captum's ``InputXGradient`` on :func:`fattr.input_x_gradient`."""

    fn = staticmethod(input_x_gradient)
    multiplies = True

    def __init__(self, forward_func: Func) -> None:
        super().__init__(forward_func)

    def attribute(self, inputs: Any, target: Any = None, additional_forward_args: Any = None) -> Any:
        return self._call(inputs, target=target, additional_forward_args=additional_forward_args)


class IntegratedGradients(Attribution):
    """Captum's ``IntegratedGradients`` on :func:`fattr.integrated_gradients`."""

    fn = staticmethod(integrated_gradients)
    delta = True

    def __init__(self, forward_func: Func, multiply_by_inputs: bool = True) -> None:
        super().__init__(forward_func, multiply_by_inputs=multiply_by_inputs)

    def attribute(self, inputs: Any, baselines: Any = None, target: Any = None, additional_forward_args: Any = None,
                  n_steps: int = 50, method: str = "gausslegendre", internal_batch_size: Optional[int] = None,
                  return_convergence_delta: bool = False) -> Any:
        return self._call(inputs, baselines=baselines, target=target, additional_forward_args=additional_forward_args,
                          n_steps=n_steps, method=method, internal_batch_size=internal_batch_size,
                          return_convergence_delta=return_convergence_delta)


class GradientShap(Attribution):
    """Captum's ``GradientShap`` on :func:`fattr.gradient_shap` (draws from torch's global RNG)."""

    fn = staticmethod(gradient_shap)
    delta = True
    stochastic = True

    def __init__(self, forward_func: Func, multiply_by_inputs: bool = True) -> None:
        super().__init__(forward_func, multiply_by_inputs=multiply_by_inputs)

    def attribute(self, inputs: Any, baselines: Any, n_samples: int = 5, stdevs: Any = 0.0, target: Any = None,
                  additional_forward_args: Any = None, return_convergence_delta: bool = False) -> Any:
        return self._call(inputs, baselines=baselines, n_samples=n_samples, stdevs=stdevs, target=target,
                          additional_forward_args=additional_forward_args,
                          return_convergence_delta=return_convergence_delta)


class DeepLift(Attribution):
    """Captum's ``DeepLift`` on :func:`fattr.deeplift`."""

    fn = staticmethod(deeplift)
    delta = True

    def __init__(self, model: Func, multiply_by_inputs: bool = True, eps: float = 1e-10) -> None:
        super().__init__(model, multiply_by_inputs=multiply_by_inputs, eps=eps)
        self.model = model

    def attribute(self, inputs: Any, baselines: Any = None, target: Any = None, additional_forward_args: Any = None,
                  return_convergence_delta: bool = False, custom_attribution_func: Optional[Func] = None) -> Any:
        return self._call(inputs, baselines=baselines, target=target, additional_forward_args=additional_forward_args,
                          return_convergence_delta=return_convergence_delta,
                          custom_attribution_func=custom_attribution_func)


class DeepLiftShap(Attribution):
    """Captum's ``DeepLiftShap`` on :func:`fattr.deeplift_shap`."""

    fn = staticmethod(deeplift_shap)
    delta = True

    def __init__(self, model: Func, multiply_by_inputs: bool = True) -> None:
        super().__init__(model, multiply_by_inputs=multiply_by_inputs)
        self.model = model

    def attribute(self, inputs: Any, baselines: Any, target: Any = None, additional_forward_args: Any = None,
                  return_convergence_delta: bool = False, custom_attribution_func: Optional[Func] = None) -> Any:
        return self._call(inputs, baselines=baselines, target=target, additional_forward_args=additional_forward_args,
                          return_convergence_delta=return_convergence_delta,
                          custom_attribution_func=custom_attribution_func)


# --------------------------------------------------------------------------- layer attribution

class LayerActivation(Attribution):
    """Captum's ``LayerActivation`` on :func:`fattr.layer_activation`."""

    fn = staticmethod(layer_activation)
    layer_method = True
    multiplies = True  # Captum's flag (ablation and activations are global)

    def __init__(self, forward_func: Func, layer: Any, device_ids: Any = None) -> None:
        super().__init__(forward_func, layer, device_ids=device_ids)

    def attribute(self, inputs: Any, additional_forward_args: Any = None, attribute_to_layer_input: bool = False) -> Any:
        return self._call(inputs, additional_forward_args=additional_forward_args,
                          attribute_to_layer_input=attribute_to_layer_input)


class LayerGradientXActivation(Attribution):
    """Captum's ``LayerGradientXActivation`` on :func:`fattr.layer_gradient_x_activation`
    (``memory_efficient`` is accepted: fattr never keeps more than one gradient pass)."""

    fn = staticmethod(layer_gradient_x_activation)
    layer_method = True

    def __init__(self, forward_func: Func, layer: Any, device_ids: Any = None, multiply_by_inputs: bool = True,
                 memory_efficient: bool = False) -> None:
        super().__init__(forward_func, layer, device_ids=device_ids, multiply_by_inputs=multiply_by_inputs)

    def attribute(self, inputs: Any, target: Any = None, additional_forward_args: Any = None,
                  attribute_to_layer_input: bool = False, grad_kwargs: Any = None) -> Any:
        unsupported(type(self).__name__, grad_kwargs=grad_kwargs)
        return self._call(inputs, target=target, additional_forward_args=additional_forward_args,
                          attribute_to_layer_input=attribute_to_layer_input)


class LayerGradCam(Attribution):
    """Captum's ``LayerGradCam`` on :func:`fattr.layer_grad_cam`."""

    fn = staticmethod(layer_grad_cam)
    layer_method = True

    def __init__(self, forward_func: Func, layer: Any, device_ids: Any = None) -> None:
        super().__init__(forward_func, layer, device_ids=device_ids)

    def attribute(self, inputs: Any, target: Any = None, additional_forward_args: Any = None,
                  attribute_to_layer_input: bool = False, relu_attributions: bool = False,
                  attr_dim_summation: bool = True, grad_kwargs: Any = None) -> Any:
        unsupported(type(self).__name__, grad_kwargs=grad_kwargs)
        return self._call(inputs, target=target, additional_forward_args=additional_forward_args,
                          attribute_to_layer_input=attribute_to_layer_input, relu_attributions=relu_attributions,
                          attr_dim_summation=attr_dim_summation)


class InternalInfluence(Attribution):
    """Captum's ``InternalInfluence`` on :func:`fattr.internal_influence`."""

    fn = staticmethod(internal_influence)
    layer_method = True

    def __init__(self, forward_func: Func, layer: Any, device_ids: Any = None) -> None:
        super().__init__(forward_func, layer, device_ids=device_ids)

    def attribute(self, inputs: Any, baselines: Any = None, target: Any = None, additional_forward_args: Any = None,
                  n_steps: int = 50, method: str = "gausslegendre", internal_batch_size: Optional[int] = None,
                  attribute_to_layer_input: bool = False, grad_kwargs: Any = None) -> Any:
        unsupported(type(self).__name__, grad_kwargs=grad_kwargs)
        return self._call(inputs, baselines=baselines, target=target, additional_forward_args=additional_forward_args,
                          n_steps=n_steps, method=method, internal_batch_size=internal_batch_size,
                          attribute_to_layer_input=attribute_to_layer_input)


class LayerConductance(Attribution):
    """Captum's ``LayerConductance`` on :func:`fattr.layer_conductance`."""

    fn = staticmethod(layer_conductance)
    layer_method = True
    delta = True
    multiplies = True

    def __init__(self, forward_func: Func, layer: Any, device_ids: Any = None) -> None:
        super().__init__(forward_func, layer, device_ids=device_ids)

    def attribute(self, inputs: Any, baselines: Any = None, target: Any = None, additional_forward_args: Any = None,
                  n_steps: int = 50, method: str = "gausslegendre", internal_batch_size: Optional[int] = None,
                  return_convergence_delta: bool = False, attribute_to_layer_input: bool = False,
                  grad_kwargs: Any = None) -> Any:
        unsupported(type(self).__name__, grad_kwargs=grad_kwargs)
        return self._call(inputs, baselines=baselines, target=target, additional_forward_args=additional_forward_args,
                          n_steps=n_steps, method=method, internal_batch_size=internal_batch_size,
                          return_convergence_delta=return_convergence_delta,
                          attribute_to_layer_input=attribute_to_layer_input)


class LayerIntegratedGradients(Attribution):
    """Captum's ``LayerIntegratedGradients`` on :func:`fattr.layer_integrated_gradients`."""

    fn = staticmethod(layer_integrated_gradients)
    layer_method = True
    delta = True

    def __init__(self, forward_func: Func, layer: Any, device_ids: Any = None, multiply_by_inputs: bool = True) -> None:
        super().__init__(forward_func, layer, device_ids=device_ids, multiply_by_inputs=multiply_by_inputs)

    def attribute(self, inputs: Any, baselines: Any = None, target: Any = None, additional_forward_args: Any = None,
                  n_steps: int = 50, method: str = "gausslegendre", internal_batch_size: Optional[int] = None,
                  return_convergence_delta: bool = False, attribute_to_layer_input: bool = False,
                  grad_kwargs: Any = None) -> Any:
        unsupported(type(self).__name__, grad_kwargs=grad_kwargs)
        return self._call(inputs, baselines=baselines, target=target, additional_forward_args=additional_forward_args,
                          n_steps=n_steps, method=method, internal_batch_size=internal_batch_size,
                          return_convergence_delta=return_convergence_delta,
                          attribute_to_layer_input=attribute_to_layer_input)


class LayerGradientShap(Attribution):
    """Captum's ``LayerGradientShap`` on :func:`fattr.layer_gradient_shap` (draws from torch's global RNG)."""

    fn = staticmethod(layer_gradient_shap)
    layer_method = True
    delta = True
    stochastic = True

    def __init__(self, forward_func: Func, layer: Any, device_ids: Any = None, multiply_by_inputs: bool = True) -> None:
        super().__init__(forward_func, layer, device_ids=device_ids, multiply_by_inputs=multiply_by_inputs)

    def attribute(self, inputs: Any, baselines: Any, n_samples: int = 5, stdevs: Any = 0.0, target: Any = None,
                  additional_forward_args: Any = None, return_convergence_delta: bool = False,
                  attribute_to_layer_input: bool = False) -> Any:
        return self._call(inputs, baselines=baselines, n_samples=n_samples, stdevs=stdevs, target=target,
                          additional_forward_args=additional_forward_args,
                          return_convergence_delta=return_convergence_delta,
                          attribute_to_layer_input=attribute_to_layer_input)


class LayerFeatureAblation(Attribution):
    """Captum's ``LayerFeatureAblation`` on :func:`fattr.layer_feature_ablation`."""

    fn = staticmethod(layer_feature_ablation)
    layer_method = True
    multiplies = True  # Captum's flag (ablation and activations are global)

    def __init__(self, forward_func: Func, layer: Any, device_ids: Any = None) -> None:
        super().__init__(forward_func, layer, device_ids=device_ids)

    def attribute(self, inputs: Any, layer_baselines: Any = None, target: Any = None,
                  additional_forward_args: Any = None, layer_mask: Any = None, attribute_to_layer_input: bool = False,
                  perturbations_per_eval: int = 1) -> Any:
        return self._call(inputs, layer_baselines=layer_baselines, target=target,
                          additional_forward_args=additional_forward_args, layer_mask=layer_mask,
                          attribute_to_layer_input=attribute_to_layer_input,
                          perturbations_per_eval=perturbations_per_eval)


class LayerDeepLift(Attribution):
    """Captum's ``LayerDeepLift`` on :func:`fattr.layer_deeplift`."""

    fn = staticmethod(layer_deeplift)
    layer_method = True
    delta = True

    def __init__(self, model: Func, layer: Any, multiply_by_inputs: bool = True) -> None:
        super().__init__(model, layer, multiply_by_inputs=multiply_by_inputs)
        self.model = model

    def attribute(self, inputs: Any, baselines: Any = None, target: Any = None, additional_forward_args: Any = None,
                  return_convergence_delta: bool = False, attribute_to_layer_input: bool = False,
                  custom_attribution_func: Optional[Func] = None, grad_kwargs: Any = None) -> Any:
        unsupported(type(self).__name__, grad_kwargs=grad_kwargs)
        return self._call(inputs, baselines=baselines, target=target, additional_forward_args=additional_forward_args,
                          return_convergence_delta=return_convergence_delta,
                          attribute_to_layer_input=attribute_to_layer_input,
                          custom_attribution_func=custom_attribution_func)


class LayerDeepLiftShap(Attribution):
    """Captum's ``LayerDeepLiftShap`` on :func:`fattr.layer_deeplift_shap`."""

    fn = staticmethod(layer_deeplift_shap)
    layer_method = True
    delta = True

    def __init__(self, model: Func, layer: Any, multiply_by_inputs: bool = True) -> None:
        super().__init__(model, layer, multiply_by_inputs=multiply_by_inputs)
        self.model = model

    def attribute(self, inputs: Any, baselines: Any, target: Any = None, additional_forward_args: Any = None,
                  return_convergence_delta: bool = False, attribute_to_layer_input: bool = False,
                  custom_attribution_func: Optional[Func] = None) -> Any:
        return self._call(inputs, baselines=baselines, target=target, additional_forward_args=additional_forward_args,
                          return_convergence_delta=return_convergence_delta,
                          attribute_to_layer_input=attribute_to_layer_input,
                          custom_attribution_func=custom_attribution_func)


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
