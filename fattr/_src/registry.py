"""The method registry: every public attribution method and the properties the
contract tests, the benchmarks and the demo need to call it generically.

:meth:`MethodSpec.bind` (and :meth:`MethodSpec.call`) is the one generic call of a method;
:class:`Captum` names its Captum counterpart and maps the arguments (fattr never imports
Captum: callers that have it resolve the class). Adding a method is one :class:`MethodSpec`
line here plus its own closed-form tests.
"""
from __future__ import annotations

import functools
import inspect
import types
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from .gradient_shap import gradient_shap
from .integrated_gradients import integrated_gradients
from .noise_tunnel import noise_tunnel
from .tracing import is_compiling
from .saliency import input_x_gradient, saliency
from .layer.activation import layer_activation
from .layer.feature_ablation import layer_feature_ablation
from .layer.feature_permutation import layer_feature_permutation
from .layer.grad_cam import layer_grad_cam
from .layer.gradient_shap import layer_gradient_shap
from .layer.gradient_x_activation import layer_gradient_x_activation
from .layer.gradient_x_input import gradient_x_input
from .layer.integrated import internal_influence, layer_conductance, layer_integrated_gradients
from .deeplift.deeplift import deeplift, deeplift_shap, layer_deeplift, layer_deeplift_shap
from .paths.blur import blur_integrated_gradients
from .paths.expected_gradients import expected_gradients
from .paths.guided import guided_integrated_gradients
from .paths.idgi import idgi
from .paths.integrated_hessians import integrated_hessians
from .perturbation.ablation import feature_ablation
from .perturbation.lime import kernel_shap, lime
from .perturbation.occlusion import occlusion
from .perturbation.permutation import feature_permutation
from .perturbation.shapley import shapley_value_sampling, shapley_values
from .deeplift.guided_backprop import deconvolution, guided_backprop, guided_grad_cam
from .neuron.conductance import neuron_conductance
from .neuron.methods import (neuron_deconvolution, neuron_deeplift, neuron_deeplift_shap, neuron_gradient,
                             neuron_feature_ablation, neuron_gradient_shap, neuron_guided_backprop,
                             neuron_integrated_gradients)
from .lm.token_attribution import token_attribution
from .lrp.lrp import layer_lrp, lrp


# fattr keyword -> Captum keyword, for every Captum class
_CAPTUM_NAMES = (("args", "additional_forward_args"), ("return_delta", "return_convergence_delta"))
# fattr keywords Captum has no equivalent for (its internal_batch_size counts rows, chunk_size path points)
_FATTR_ONLY = ("generator", "chunk_size", "n_features")


def _parameters(fn: Callable[..., Any]) -> Tuple[Tuple[str, ...], bool]:
    """The parameter names of ``fn`` and whether it takes ``**kwargs``."""
    params = inspect.signature(fn).parameters.values()
    return (tuple(p.name for p in params), any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params))


@functools.lru_cache(maxsize=None)
def _own_code(code: types.CodeType, name: str) -> types.CodeType:
    """``code`` renamed ``name``, once per name: a compiled callable of one method then does not try the guards
    of other methods' entries first, nor count against their recompile limit."""
    return code.replace(co_name=name, co_qualname=name)


@dataclass(frozen=True)
class Captum:
    """The Captum class computing what a method computes, named by string: fattr never imports Captum, the
    caller resolves the name in ``captum.attr`` (any object with the classes as attributes).

    Attributes:
      cls: the class in ``captum.attr`` (``"IntegratedGradients"``, ``"LayerIntegratedGradients"``).
      wraps: the class ``cls`` wraps (``NoiseTunnel(Saliency(model))``), or None.
      rename: fattr keyword -> Captum keyword beyond the common ones (``args`` ->
        ``additional_forward_args``, ``return_delta`` -> ``return_convergence_delta``).
      fixed: Captum options that make it compute the same thing, overridable by the caller's.
    """

    cls: str
    wraps: Optional[str] = None
    rename: Tuple[Tuple[str, str], ...] = ()
    fixed: Tuple[Tuple[str, Any], ...] = ()

    def arguments(self, classes: Any, options: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """fattr's keyword ``options`` in Captum's names, split into ``(constructor, attribute)`` keywords;
        options Captum's class does not take (``generator``, ``chunk_size``) are left out."""
        names = dict(_CAPTUM_NAMES + self.rename)
        renamed = dict(self.fixed)
        renamed.update((names.get(k, k), v) for k, v in options.items() if k not in _FATTR_ONLY)
        cls = getattr(classes, self.cls)
        init, _ = _parameters(cls.__init__)
        attribute, more = _parameters(cls.attribute)
        if self.wraps is not None and more:  # a wrapper passes the rest to the wrapped class
            attribute += _parameters(getattr(classes, self.wraps).attribute)[0]
        init_kw = {k: v for k, v in renamed.items() if k in init and k not in ("forward_func", "layer")}
        return init_kw, {k: v for k, v in renamed.items() if k in attribute and k not in init_kw}

    def explainer(self, classes: Any, model: Callable[..., Any], layer: Any = None, **init: Any) -> Any:
        """The Captum object: ``cls(model, [layer,] **init)`` (``cls(wraps(model))`` for a wrapper)."""
        cls = getattr(classes, self.cls)
        if self.wraps is not None:
            return cls(getattr(classes, self.wraps)(model), **init)
        return cls(model, layer, **init) if layer is not None else cls(model, **init)


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
      images: takes images only (inputs with spatial axes, ``(B, C, H, W)``).
      output: ``"inputs"`` (attributions shaped like the inputs, or like the layer) or
        ``"interactions"`` (``(B, *S, *S)`` pairs of features, one tensor input only).
      per_example: parameters (besides ``target``, ``args`` and ``kwargs``, which always are)
        that hold one row per example when they have ``B`` rows, such as a per-example
        baseline or mask: :func:`fattr.noise_tunnel` repeats them for the noisy copies. A
        distribution (SHAP baselines) is not listed, so it is not repeated.
      inputs: ``"features"`` (tensors, the conventions above) or ``"token_ids"``: a causal language
        model and prompt ids, ``fn(model, input_ids, target_ids, *, layer=..., **options)``
        returning a :class:`fattr.TokenAttribution`.
      captum: its Captum counterpart (:class:`Captum`), or None.
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
    images: bool = False
    output: str = "inputs"
    per_example: Tuple[str, ...] = ()
    inputs: str = "features"
    captum: Optional[Captum] = None

    def bind(self, model: Callable[..., Any], *, layer: Any = None, baselines: Any = None, target: Any = None,
             chunk_size: Optional[int] = None, **options: Any) -> Callable[..., Any]:
        """The one generic call of the method, built once: ``bound(inputs, generator=None)``.

        ``bound(x)`` is ``fn(model, [layer,] x, [baselines,] target=..., chunk_size=..., **options)`` with
        the registry's :attr:`options` as defaults; ``target`` and ``generator`` are passed when the method
        takes them (ignored otherwise), ``baselines`` by keyword to a method without positional baselines
        (``occlusion``). A token-ids method gets ``fn(model, x, target, layer=layer, **options)``.

        Example:
          >>> import torch, fattr
          >>> spec = {s.name: s for s in fattr.methods()}["layer_integrated_gradients"]
          >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
          >>> lig = spec.bind(model, layer=model[1], target=0, n_steps=8)
          >>> lig(torch.randn(5, 3)).shape
          torch.Size([5, 4])
        """
        kwargs = {**dict(self.options), **options}
        if chunk_size is not None:
            if not self.chunked:
                raise TypeError(f"{self.name} takes no chunk_size; got chunk_size={chunk_size!r}")
            kwargs["chunk_size"] = chunk_size
        before: Tuple[Any, ...] = (model,)
        after: Tuple[Any, ...] = ()
        if self.inputs == "token_ids":
            after = (target,)
            if layer is not None:
                kwargs["layer"] = layer
        else:
            if self.targeted and target is not None:
                kwargs["target"] = target
            if self.layer:
                before = (model, layer)
            if self.baselines != "none":
                after = (baselines,)
            elif baselines is not None:
                kwargs["baselines"] = baselines
        fn, stochastic = self.fn, self.stochastic

        def bound(inputs: Any, generator: Optional[torch.Generator] = None) -> Any:
            return fn(*before, inputs, *after, **({"generator": generator} if stochastic else {}), **kwargs)
        if is_compiling():  # bound inside a compiled caller: inlined there, no frame of its own to cache
            return bound
        # the method's own copy of the code: Dynamo keeps one cache (and one recompile limit) per code object
        code = _own_code(bound.__code__, f"bound_{self.name}")
        return types.FunctionType(code, bound.__globals__, code.co_name, bound.__defaults__, bound.__closure__)

    def call(self, model: Callable[..., Any], inputs: Any, *, generator: Optional[torch.Generator] = None,
             **arguments: Any) -> Any:
        """``self.bind(model, **arguments)(inputs, generator)``: one call (see :meth:`bind`).

        Example:
          >>> import torch, fattr
          >>> spec = {s.name: s for s in fattr.methods()}["integrated_gradients"]
          >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
          >>> spec.call(model, torch.randn(5, 3), target=1, n_steps=8).shape
          torch.Size([5, 3])
        """
        return self.bind(model, **arguments)(inputs, generator)

    def captum_call(self, classes: Any, model: Callable[..., Any], *, layer: Any = None, baselines: Any = None,
                    target: Any = None, **options: Any) -> Callable[..., Any]:
        """Captum's counterpart of :meth:`bind` with the same arguments: builds the Captum object once (on
        ``model`` as given: Captum's hooks touch it) and returns ``attribute(inputs)``, a
        ``functools.partial`` of the object's bound ``attribute`` method.

        ``classes`` is ``captum.attr`` (fattr never imports Captum). Raises ``ValueError`` for a method
        without a counterpart.
        """
        if self.captum is None:
            raise ValueError(f"{self.name} has no Captum counterpart (MethodSpec.captum is None)")
        kwargs = {**dict(self.options), **options}
        if self.baselines != "none" or baselines is not None:
            kwargs["baselines"] = baselines
        if self.targeted and target is not None:
            kwargs["target"] = target
        init, attribute = self.captum.arguments(classes, kwargs)
        explainer = self.captum.explainer(classes, model, layer if self.layer else None, **init)
        return functools.partial(explainer.attribute, **attribute)


# the neurons generic calls attribute: channels (or columns) 0 and 1 of the layer, summed
_SELECT: Tuple[Tuple[str, Any], ...] = (("neuron_selector", (slice(0, 2),)),)
smoothgrad = noise_tunnel(saliency, kind="smoothgrad", n_samples=8, stdevs=0.1)

_SPECS = [
    MethodSpec("saliency", saliency, captum=Captum("Saliency")),
    MethodSpec("input_x_gradient", input_x_gradient, captum=Captum("InputXGradient")),
    MethodSpec("integrated_gradients", integrated_gradients, baselines="optional", chunked=True, delta=True,
               options=(("n_steps", 16),), per_example=("baselines",), captum=Captum("IntegratedGradients")),
    MethodSpec("gradient_shap", gradient_shap, baselines="distribution", stochastic=True, delta=True,
               options=(("n_samples", 8), ("stdevs", 0.05)), captum=Captum("GradientShap")),
    MethodSpec("smoothgrad", smoothgrad, stochastic=True, options=(("abs", False),),
               captum=Captum("NoiseTunnel", wraps="Saliency", rename=(("n_samples", "nt_samples"),),
                             fixed=(("nt_type", "smoothgrad"), ("nt_samples", 8), ("stdevs", 0.1)))),
    # layer attribution by splitting the model
    MethodSpec("gradient_x_input", gradient_x_input, captum=Captum("InputXGradient")),
    MethodSpec("layer_activation", layer_activation, layer=True, targeted=False, captum=Captum("LayerActivation")),
    MethodSpec("layer_gradient_x_activation", layer_gradient_x_activation, layer=True,
               captum=Captum("LayerGradientXActivation")),
    MethodSpec("layer_grad_cam", layer_grad_cam, layer=True, captum=Captum("LayerGradCam")),
    MethodSpec("internal_influence", internal_influence, baselines="optional", layer=True, chunked=True,
               options=(("n_steps", 16),), per_example=("baselines",), captum=Captum("InternalInfluence")),
    MethodSpec("layer_conductance", layer_conductance, baselines="optional", layer=True, chunked=True, delta=True,
               options=(("n_steps", 16),), per_example=("baselines",), captum=Captum("LayerConductance")),
    MethodSpec("layer_integrated_gradients", layer_integrated_gradients, baselines="optional", layer=True,
               chunked=True, delta=True, options=(("n_steps", 16),), per_example=("baselines",),
               captum=Captum("LayerIntegratedGradients")),
    MethodSpec("layer_gradient_shap", layer_gradient_shap, baselines="distribution", layer=True, stochastic=True,
               delta=True, options=(("n_samples", 8), ("stdevs", 0.05)), captum=Captum("LayerGradientShap")),
    MethodSpec("layer_feature_ablation", layer_feature_ablation, layer=True,
               options=(("perturbations_per_eval", 3),), per_example=("layer_baselines", "layer_mask"),
               captum=Captum("LayerFeatureAblation")),
    MethodSpec("layer_feature_permutation", layer_feature_permutation, layer=True, stochastic=True,
               options=(("perturbations_per_eval", 3),), per_example=("layer_mask",),
               captum=Captum("LayerFeaturePermutation")),
    # DeepLift (rescale rule by function interception)
    MethodSpec("deeplift", deeplift, baselines="optional", delta=True, per_example=("baselines",),
               captum=Captum("DeepLift")),
    MethodSpec("deeplift_shap", deeplift_shap, baselines="distribution", delta=True, captum=Captum("DeepLiftShap")),
    MethodSpec("layer_deeplift", layer_deeplift, baselines="optional", layer=True, delta=True,
               per_example=("baselines",), captum=Captum("LayerDeepLift")),
    MethodSpec("layer_deeplift_shap", layer_deeplift_shap, baselines="distribution", layer=True, delta=True,
               captum=Captum("LayerDeepLiftShap")),
    # research path methods on the path engine
    MethodSpec("idgi", idgi, baselines="optional", chunked=True, delta=True, options=(("n_steps", 16),),
               per_example=("baselines",)),
    MethodSpec("expected_gradients", expected_gradients, baselines="distribution", stochastic=True, delta=True,
               options=(("n_samples", 8),), captum=Captum("GradientShap", fixed=(("stdevs", 0.0),))),
    MethodSpec("integrated_hessians", integrated_hessians, baselines="optional", chunked=True, delta=True,
               output="interactions", options=(("n_steps", 3),), per_example=("baselines", "feature_mask")),
    MethodSpec("guided_integrated_gradients", guided_integrated_gradients, baselines="optional", delta=True,
               options=(("n_steps", 16),), per_example=("baselines",)),
    MethodSpec("blur_integrated_gradients", blur_integrated_gradients, chunked=True, delta=True, images=True,
               options=(("n_steps", 16), ("max_sigma", 2.0))),
    # perturbation methods (batched perturbed copies)
    MethodSpec("feature_ablation", feature_ablation, baselines="optional", options=(("perturbations_per_eval", 4),),
               per_example=("baselines", "feature_mask"), captum=Captum("FeatureAblation")),
    MethodSpec("occlusion", occlusion,
               options=(("sliding_window_shapes", (2,)), ("baselines", 0.1), ("perturbations_per_eval", 3)),
               per_example=("baselines",), captum=Captum("Occlusion")),
    MethodSpec("shapley_value_sampling", shapley_value_sampling, baselines="optional", stochastic=True,
               options=(("n_samples", 3), ("perturbations_per_eval", 5)), per_example=("baselines", "feature_mask"),
               captum=Captum("ShapleyValueSampling")),
    MethodSpec("shapley_values", shapley_values, baselines="optional", options=(("perturbations_per_eval", 16),),
               per_example=("baselines", "feature_mask"), captum=Captum("ShapleyValues")),
    MethodSpec("lime", lime, baselines="optional", stochastic=True,
               options=(("n_samples", 40), ("perturbations_per_eval", 8)), per_example=("baselines", "feature_mask"),
               captum=Captum("Lime")),
    MethodSpec("kernel_shap", kernel_shap, baselines="optional", stochastic=True,
               options=(("n_samples", 40), ("perturbations_per_eval", 8)), per_example=("baselines", "feature_mask"),
               captum=Captum("KernelShap")),
    MethodSpec("feature_permutation", feature_permutation, stochastic=True, options=(("perturbations_per_eval", 4),),
               per_example=("feature_mask",), captum=Captum("FeaturePermutation")),
    # rule-based gradients: ReLU's backward replaced by function interception
    MethodSpec("guided_backprop", guided_backprop, captum=Captum("GuidedBackprop")),
    MethodSpec("deconvolution", deconvolution, captum=Captum("Deconvolution")),
    MethodSpec("guided_grad_cam", guided_grad_cam, layer=True, needs_module=True, captum=Captum("GuidedGradCam")),
    # neuron methods: an input-space method applied to one neuron of a layer (here channels 0-1, summed)
    MethodSpec("neuron_gradient", neuron_gradient, layer=True, neuron=True, targeted=False, needs_module=True,
               options=_SELECT, captum=Captum("NeuronGradient")),
    MethodSpec("neuron_integrated_gradients", neuron_integrated_gradients, baselines="optional", layer=True,
               neuron=True, chunked=True, targeted=False, needs_module=True, options=_SELECT + (("n_steps", 16),),
               per_example=("baselines",), captum=Captum("NeuronIntegratedGradients")),
    MethodSpec("neuron_gradient_shap", neuron_gradient_shap, baselines="distribution", layer=True, neuron=True,
               stochastic=True, targeted=False, needs_module=True,
               options=_SELECT + (("n_samples", 8), ("stdevs", 0.05)), captum=Captum("NeuronGradientShap")),
    MethodSpec("neuron_deeplift", neuron_deeplift, baselines="optional", layer=True, neuron=True, targeted=False,
               needs_module=True, options=_SELECT, per_example=("baselines",), captum=Captum("NeuronDeepLift")),
    MethodSpec("neuron_deeplift_shap", neuron_deeplift_shap, baselines="distribution", layer=True, neuron=True,
               targeted=False, needs_module=True, options=_SELECT, captum=Captum("NeuronDeepLiftShap")),
    MethodSpec("neuron_guided_backprop", neuron_guided_backprop, layer=True, neuron=True, targeted=False,
               needs_module=True, options=_SELECT, captum=Captum("NeuronGuidedBackprop")),
    MethodSpec("neuron_deconvolution", neuron_deconvolution, layer=True, neuron=True, targeted=False,
               needs_module=True, options=_SELECT, captum=Captum("NeuronDeconvolution")),
    MethodSpec("neuron_feature_ablation", neuron_feature_ablation, baselines="optional", layer=True, neuron=True,
               targeted=False, needs_module=True, options=_SELECT + (("perturbations_per_eval", 3),),
               per_example=("baselines", "feature_mask"), captum=Captum("NeuronFeatureAblation")),
    MethodSpec("neuron_conductance", neuron_conductance, baselines="optional", layer=True, neuron=True, chunked=True,
               needs_module=True, options=_SELECT + (("n_steps", 16), ("method", "gausslegendre")),
               per_example=("baselines",), captum=Captum("NeuronConductance")),
    # layer-wise relevance propagation: rules swapped in for the layers' operations (per module, as Captum)
    MethodSpec("lrp", lrp, delta=True, captum=Captum("LRP")),
    MethodSpec("layer_lrp", layer_lrp, layer=True, delta=True, captum=Captum("LayerLRP")),
    # language models: token-by-token attribution (its other methods: tests/test_token_attribution.py)
    MethodSpec("token_attribution", token_attribution, chunked=True, needs_module=True, inputs="token_ids",
               options=(("n_steps", 8),)),
]

REGISTRY: Dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}


def spec_of(fn: Any) -> Optional[MethodSpec]:
    """The registry entry whose function is ``fn`` itself (None for an unregistered callable)."""
    return next((spec for spec in REGISTRY.values() if spec.fn is fn), None)


def methods() -> Tuple[MethodSpec, ...]:
    """All registered methods, in registration order."""
    return tuple(REGISTRY.values())
