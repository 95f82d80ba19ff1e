"""Captum 0.9's perturbation classes on fattr's perturbation functions.

Same pattern as :mod:`.classes`: Captum's constructor and ``attribute`` signature, one call of
the fattr function. The stochastic ones (``ShapleyValueSampling``, ``Lime``, ``KernelShap``,
``FeaturePermutation``) draw from torch's global generator, as Captum does, through fattr's
samplers (other draws than Captum's from the same seed, with the same distribution).
"""
from __future__ import annotations

import torch

from ..layer.feature_permutation import layer_feature_permutation
from ..perturbation.ablation import feature_ablation
from ..perturbation.lime import kernel_shap, lime
from ..perturbation.occlusion import occlusion
from ..perturbation.permutation import feature_permutation
from ..perturbation.shapley import shapley_value_sampling, shapley_values
from .base import KWARGS, Attribution, captum


def _permute_feature(x: torch.Tensor, feature_mask: torch.Tensor) -> torch.Tensor:
    """Captum's default ``perm_func``: ``x`` with the masked elements taken from a random non-identity
    permutation of the examples (torch's global RNG). :class:`FeaturePermutation` replaces it by fattr's
    batched shuffles (same distribution, drawn from torch's global generator)."""
    n = x.size(0)
    if n < 2:
        raise ValueError(f"perm_func: cannot permute features with a batch of {n} (need 2 or more examples)")
    perm = torch.randperm(n)
    while bool((perm == torch.arange(n)).all()):
        perm = torch.randperm(n)
    return torch.where(feature_mask.to(torch.bool), x[perm], x)


# Captum's arguments of the ablation-family attribute(), in its order
_MASKED = dict(baselines=None, target=None, additional_forward_args=None, feature_mask=None)
_SAMPLED = dict(_MASKED, n_samples=25, perturbations_per_eval=1)


class FeatureAblation(Attribution, fn=feature_ablation, multiplies=True, captum_future=True,
                      attribute=captum("inputs", **_MASKED, perturbations_per_eval=1, show_progress=False,
                                       kwargs=KWARGS)):
    """Captum's ``FeatureAblation`` on :func:`fattr.feature_ablation` (``**kwargs`` are ignored, as in
    Captum, where only its subclasses use them)."""


class Occlusion(Attribution, fn=occlusion, multiplies=True,
                attribute=captum("inputs", "sliding_window_shapes", strides=None, baselines=None, target=None,
                                 additional_forward_args=None, perturbations_per_eval=1, show_progress=False)):
    """Captum's ``Occlusion`` on :func:`fattr.occlusion`."""


class ShapleyValueSampling(Attribution, fn=shapley_value_sampling, multiplies=True, stochastic=True,
                           captum_future=True, attribute=captum("inputs", **_SAMPLED, show_progress=False)):
    """Captum's ``ShapleyValueSampling`` on :func:`fattr.shapley_value_sampling` (feature orders drawn
    from torch's global generator)."""


class ShapleyValues(Attribution, fn=shapley_values, multiplies=True, captum_future=True,
                    attribute=captum("inputs", **_MASKED, perturbations_per_eval=1, show_progress=False)):
    """Captum's ``ShapleyValues`` on :func:`fattr.shapley_values` (each of the ``2^n`` coalitions
    evaluated once)."""


class Lime(Attribution, fn=lime, stochastic=True, held=("interpretable_model", "similarity_func", "perturb_func"),
           init=captum("forward_func", interpretable_model=None, similarity_func=None, perturb_func=None),
           attribute=captum("inputs", **_SAMPLED, return_input_shape=True, show_progress=False)):
    """Captum's ``Lime`` on :func:`fattr.lime` (samples from torch's global generator unless a
    ``perturb_func`` is given). ``interpretable_model``, ``similarity_func`` and ``perturb_func`` are
    read from the instance at each call, so they can be replaced after construction as in Captum."""


class KernelShap(Attribution, fn=kernel_shap, stochastic=True,
                 attribute=captum("inputs", **_SAMPLED, return_input_shape=True, show_progress=False)):
    """Captum's ``KernelShap`` on :func:`fattr.kernel_shap` (coalitions from torch's global generator)."""


class FeaturePermutation(Attribution, fn=feature_permutation, multiplies=True, stochastic=True, captum_future=True,
                         held=("perm_func",), init=captum("forward_func", perm_func=_permute_feature),
                         attribute=captum("inputs", target=None, additional_forward_args=None, feature_mask=None,
                                          perturbations_per_eval=1, show_progress=False, kwargs=KWARGS)):
    """Captum's ``FeaturePermutation`` on :func:`fattr.feature_permutation`: with the default ``perm_func``
    the shuffles are fattr's, drawn from torch's global generator; another ``perm_func`` is called as
    Captum calls it. ``**kwargs`` are ignored, as in Captum."""


class LayerFeaturePermutation(Attribution, fn=layer_feature_permutation, layer_method=True, multiplies=True,
                              stochastic=True,
                              attribute=captum("inputs", target=None, additional_forward_args=None, layer_mask=None,
                                               perturbations_per_eval=1)):
    """Captum's ``LayerFeaturePermutation`` on :func:`fattr.layer_feature_permutation`: fattr's shuffles,
    drawn from torch's global generator. ``target`` selects the output once (Captum 0.9 selects it twice,
    so it fails unless ``target`` is None)."""
