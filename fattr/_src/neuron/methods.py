"""Neuron methods: an input-space method applied to one neuron of a hidden layer, made a function of the
inputs by :class:`.selector.Neuron` (whose module docstring says how)."""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch

from .. import structure
from ..arguments import as_args, tile, tile_args
from ..base import (ArgsLike, BaselinesLike, FeatureMaskLike, InputsLike, KwargsLike, LayerLike, ModelLike,
                    NeuronSelectorLike, ResultOrList, StdevsLike)
from ..baselines import format_baselines
from ..deeplift.deeplift import deeplift, deeplift_shap
from ..deeplift.guided_backprop import deconvolution, guided_backprop
from ..gradient_shap import gradient_shap
from ..integrated_gradients import integrated_gradients
from ..perturbation.ablation import feature_ablation
from ..quadrature import Method
from ..saliency import saliency
from .selector import Neuron

_ABSENT = object()
_INTERCEPTING = (deeplift, deeplift_shap, guided_backprop, deconvolution)


def _attribute(core: Callable[..., Any], model: ModelLike, layer: Any, inputs: Any, neuron_selector: Any,
               attribute_to_neuron_input: bool, args: Any, kwargs: Any, baselines: Any = _ABSENT,
               distribution: bool = False, **options: Any) -> ResultOrList:
    """``core(neuron_function, inputs, [baselines,] ...)``. A list of selectors is one batched call: every
    example repeated once per selector, block-major (block ``s`` of the rows, with target ``s``, belongs to
    selector ``s``; per-example baselines too, a distribution as given), then one result per block."""
    # the rules of DeepLift and guided backprop intercept torch functions, which an exported graph has not
    neuron = Neuron(model, layer, neuron_selector, attribute_to_neuron_input, exportable=core not in _INTERCEPTING)
    g = neuron.function()
    with_baselines = baselines is not _ABSENT
    if not neuron.was_list:
        return core(g, *((inputs, baselines) if with_baselines else (inputs,)), args=args, kwargs=kwargs, **options)
    xs, was_tuple = structure.as_tuple(inputs)
    n, k = xs[0].shape[0], len(neuron.selectors)
    positional: Tuple[Any, ...] = (structure.restore(tuple(tile(x, k) for x in xs), was_tuple),)
    if with_baselines and not distribution:  # None and numbers mean zeros and constants
        bases = tuple(tile(b.expand_as(x), k) for b, x in zip(format_baselines(baselines, xs), xs))
        positional += (structure.restore(bases, was_tuple),)
    elif with_baselines:
        positional += (baselines,)
    target = torch.arange(k, device=xs[0].device).repeat_interleave(n)
    out = core(g, *positional, target=target, args=tile_args(as_args(args, kwargs), n, k), **options)
    blocks = [structure.unfold(p, k) for p in structure.as_tuple(out)[0]]
    return [structure.restore(tuple(b[s] for b in blocks), was_tuple) for s in range(k)]


# the Args and Returns lines every neuron method shares, substituted into the docstrings below
_DOC = {
    "common": """model: the ``nn.Module``.
      layer: a submodule of ``model`` or its dotted name.
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      neuron_selector: the neuron of the layer's activation: an int (a column of a ``(B, N)``
        activation), a tuple of ints (one per dim after the batch dim; ``slice``\\ s select a region
        whose values are summed), a callable on the activation returning one value per example
        (or one value, taken per example), or a list of these (every neuron in one batched pass;
        the result is then a list).
      args: extra positional arguments of ``model``; ``kwargs``: keyword arguments.
      attribute_to_neuron_input: select the neuron from the layer's input instead of its output.""",
    "returns": "Attributions shaped like ``inputs`` (a list of them for a list of selectors).",
}


def neuron_gradient(model: ModelLike, layer: LayerLike, inputs: InputsLike, *, neuron_selector: NeuronSelectorLike,
                    args: ArgsLike = (), kwargs: KwargsLike = None,
                    attribute_to_neuron_input: bool = False) -> ResultOrList:
    """Neuron gradient (Captum's NeuronGradient): ``d act(x)[neuron] / d x``.

    The gradient of one neuron of ``layer`` with respect to the inputs: :func:`fattr.saliency`
    (signed) of ``select(head(x))``, where ``head`` is the model up to the layer (the rest of
    the model does not run).

    Args:
      {common}

    Returns:
      Gradients shaped like ``inputs`` (a list of them for a list of selectors).

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
      >>> x = torch.randn(5, 3)
      >>> g = fattr.neuron_gradient(model, "0", x, neuron_selector=2)  # neuron 2 of the first Linear
      >>> torch.allclose(g, model[0].weight[2].expand(5, 3))
      True
    """
    return _attribute(saliency, model, layer, inputs, neuron_selector, attribute_to_neuron_input, args, kwargs,
                      abs=False)


def neuron_integrated_gradients(model: ModelLike, layer: LayerLike, inputs: InputsLike, baselines: BaselinesLike = None,
                                n_steps: int = 50, method: Method = "gausslegendre", *,
                                neuron_selector: NeuronSelectorLike, args: ArgsLike = (), kwargs: KwargsLike = None,
                                chunk_size: Optional[int] = None, multiply_by_inputs: bool = True,
                                attribute_to_neuron_input: bool = False) -> ResultOrList:
    """Neuron integrated gradients (Captum's NeuronIntegratedGradients).

    :func:`fattr.integrated_gradients` of one neuron of ``layer``:
    ``attr_i = (x_i - b_i) * sum_k w_k * d act(b + a_k (x - b))[neuron] / d x_i``. Only the model
    up to the layer runs, once per path step (batched); the attributions sum to
    ``act(x)[neuron] - act(b)[neuron]`` up to quadrature error (completeness).

    Args:
      {common}
      baselines, n_steps, method, chunk_size, multiply_by_inputs: as in :func:`fattr.integrated_gradients`.

    Returns:
      {returns}

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
      >>> x = torch.randn(5, 3, dtype=torch.float64)
      >>> attr = fattr.neuron_integrated_gradients(model, "1", x, neuron_selector=2)
      >>> bool(torch.allclose(attr.sum(1), torch.tanh(model[0](x))[:, 2] - torch.tanh(model[0].bias[2])))
      True
    """
    return _attribute(integrated_gradients, model, layer, inputs, neuron_selector, attribute_to_neuron_input,
                      args, kwargs, baselines, n_steps=n_steps, method=method, chunk_size=chunk_size,
                      multiply_by_inputs=multiply_by_inputs)


def neuron_gradient_shap(model: ModelLike, layer: LayerLike, inputs: InputsLike, baselines: BaselinesLike,
                         n_samples: int = 5, stdevs: StdevsLike = 0.0, *, neuron_selector: NeuronSelectorLike,
                         args: ArgsLike = (), kwargs: KwargsLike = None, generator: Optional[torch.Generator] = None,
                         multiply_by_inputs: bool = True,
                         attribute_to_neuron_input: bool = False) -> ResultOrList:
    """Neuron GradientSHAP (Captum's NeuronGradientShap): :func:`fattr.gradient_shap` of one neuron.

    Expected gradients of the neuron between the (noisy) input and baselines drawn from a
    distribution; every draw from ``generator``, all samples in one batched pass of the model
    up to the layer.

    Args:
      {common}
      baselines, n_samples, stdevs, generator, multiply_by_inputs: as in :func:`fattr.gradient_shap`.

    Returns:
      {returns}

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
      >>> x, b = torch.randn(5, 3), torch.randn(1, 3)  # a one-row distribution; a linear neuron
      >>> attr = fattr.neuron_gradient_shap(model, "0", x, b, neuron_selector=1,
      ...                                   generator=torch.Generator().manual_seed(0))
      >>> torch.allclose(attr, (x - b) * model[0].weight[1])   # the gradient is constant: exact
      True
    """
    return _attribute(gradient_shap, model, layer, inputs, neuron_selector, attribute_to_neuron_input, args, kwargs,
                      baselines, distribution=True, n_samples=n_samples, stdevs=stdevs, generator=generator,
                      multiply_by_inputs=multiply_by_inputs)


def neuron_deeplift(model: ModelLike, layer: LayerLike, inputs: InputsLike, baselines: BaselinesLike = None, *,
                    neuron_selector: NeuronSelectorLike, args: ArgsLike = (), kwargs: KwargsLike = None,
                    multiply_by_inputs: bool = True, attribute_to_neuron_input: bool = False,
                    custom_attribution_func: Optional[Callable[..., Any]] = None,
                    eps: float = 1e-10) -> ResultOrList:
    """Neuron DeepLift (Captum's NeuronDeepLift): :func:`fattr.deeplift` (rescale rule) of one neuron.

    The rule runs on the model up to the layer only, with the same interception (no hooks),
    coverage and warnings as :func:`fattr.deeplift`; the attributions sum to
    ``act(x)[neuron] - act(b)[neuron]``.

    Args:
      {common}
      baselines, multiply_by_inputs, custom_attribution_func, eps: as in :func:`fattr.deeplift`.

    Returns:
      {returns}

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).double()
      >>> x, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(1, 3, dtype=torch.float64)
      >>> neuron = lambda v: model[1](model[0](v))[:, 0]
      >>> attr = fattr.neuron_deeplift(model, "1", x, b, neuron_selector=0)
      >>> torch.allclose(attr.sum(1), neuron(x) - neuron(b))  # exact: the rescale rule is complete
      True
    """
    return _attribute(deeplift, model, layer, inputs, neuron_selector, attribute_to_neuron_input, args, kwargs,
                      baselines, multiply_by_inputs=multiply_by_inputs,
                      custom_attribution_func=custom_attribution_func, eps=eps)


def neuron_deeplift_shap(model: ModelLike, layer: LayerLike, inputs: InputsLike, baselines: BaselinesLike, *,
                         neuron_selector: NeuronSelectorLike, args: ArgsLike = (), kwargs: KwargsLike = None,
                         multiply_by_inputs: bool = True, attribute_to_neuron_input: bool = False,
                         custom_attribution_func: Optional[Callable[..., Any]] = None,
                         eps: float = 1e-10) -> ResultOrList:
    """Neuron DeepLiftSHAP (Captum's NeuronDeepLiftShap): :func:`fattr.deeplift_shap` of one neuron.

    DeepLift of the neuron against every baseline of a distribution, averaged; every
    (example, baseline) pair is one row of a single batched pass.

    Args:
      {common}
      baselines, multiply_by_inputs, custom_attribution_func, eps: as in :func:`fattr.deeplift_shap`.

    Returns:
      {returns}

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
      >>> x, dist = torch.randn(5, 3), torch.randn(10, 3)
      >>> fattr.neuron_deeplift_shap(model, "1", x, dist, neuron_selector=(slice(0, 2),)).shape
      torch.Size([5, 3])
    """
    return _attribute(deeplift_shap, model, layer, inputs, neuron_selector, attribute_to_neuron_input, args, kwargs,
                      baselines, distribution=True, multiply_by_inputs=multiply_by_inputs,
                      custom_attribution_func=custom_attribution_func, eps=eps)


def neuron_guided_backprop(model: ModelLike, layer: LayerLike, inputs: InputsLike, *,
                           neuron_selector: NeuronSelectorLike, args: ArgsLike = (), kwargs: KwargsLike = None,
                           attribute_to_neuron_input: bool = False) -> ResultOrList:
    """Neuron guided backpropagation (Captum's NeuronGuidedBackprop): :func:`fattr.guided_backprop` of one neuron.

    Arguments and result as in :func:`fattr.neuron_gradient`.

    Example:
      >>> import torch, fattr
      >>> cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3))
      >>> x = torch.randn(2, 1, 8, 8)
      >>> fattr.neuron_guided_backprop(cnn, "2", x, neuron_selector=(1, 2, 2)).shape
      torch.Size([2, 1, 8, 8])
    """
    return _attribute(guided_backprop, model, layer, inputs, neuron_selector, attribute_to_neuron_input, args,
                      kwargs)


def neuron_deconvolution(model: ModelLike, layer: LayerLike, inputs: InputsLike, *, neuron_selector: NeuronSelectorLike,
                         args: ArgsLike = (), kwargs: KwargsLike = None,
                         attribute_to_neuron_input: bool = False) -> ResultOrList:
    """Neuron deconvolution (Captum's NeuronDeconvolution): :func:`fattr.deconvolution` of one neuron.

    Arguments and result as in :func:`fattr.neuron_gradient`.

    Example:
      >>> import torch, fattr
      >>> mlp = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
      >>> attr = fattr.neuron_deconvolution(mlp, "2", torch.randn(5, 3), neuron_selector=0)
      >>> expected = torch.relu(mlp[2].weight[0]) @ mlp[0].weight  # the ReLU passes relu(d_out), whatever x
      >>> torch.allclose(attr, expected.expand(5, 3))
      True
    """
    return _attribute(deconvolution, model, layer, inputs, neuron_selector, attribute_to_neuron_input, args, kwargs)


def neuron_feature_ablation(model: ModelLike, layer: LayerLike, inputs: InputsLike, baselines: BaselinesLike = None, *,
                            neuron_selector: NeuronSelectorLike, args: ArgsLike = (), kwargs: KwargsLike = None,
                            feature_mask: FeatureMaskLike = None, n_features: Optional[int] = None,
                            perturbations_per_eval: int = 1, attribute_to_neuron_input: bool = False) -> ResultOrList:
    """Neuron feature ablation (Captum's NeuronFeatureAblation): :func:`fattr.feature_ablation` of one neuron.

    Each input feature (element, or group of ``feature_mask``) in turn is replaced by its baseline;
    its attribution is the neuron's drop. Only the model up to the layer runs, on all the ablated
    copies in batches of ``perturbations_per_eval``.

    Args:
      {common}
      baselines, feature_mask, n_features, perturbations_per_eval: as in :func:`fattr.feature_ablation`.

    Returns:
      {returns}

    Example:
      >>> import torch, fattr
      >>> mlp = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
      >>> fattr.neuron_feature_ablation(mlp, "0", torch.randn(5, 3), neuron_selector=1).shape
      torch.Size([5, 3])
    """
    return _attribute(feature_ablation, model, layer, inputs, neuron_selector, attribute_to_neuron_input, args,
                      kwargs, baselines, feature_mask=feature_mask, n_features=n_features,
                      perturbations_per_eval=perturbations_per_eval)


for _f in (neuron_gradient, neuron_integrated_gradients, neuron_gradient_shap, neuron_deeplift, neuron_deeplift_shap,
           neuron_feature_ablation):
    for _key, _text in _DOC.items():
        _f.__doc__ = (_f.__doc__ or "").replace("{%s}" % _key, _text)
