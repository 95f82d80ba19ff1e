"""Captum 0.9's perturbation classes on fattr's perturbation functions.

Same pattern as :mod:`.classes`: Captum's constructor and ``attribute`` signature, one call of
the fattr function. The stochastic ones (``ShapleyValueSampling``, ``Lime``, ``KernelShap``,
``FeaturePermutation``) draw from torch's global generator, as Captum does, through fattr's
samplers (other draws than Captum's from the same seed, with the same distribution).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch

from ..perturbation.ablation import feature_ablation
from ..perturbation.lime import kernel_shap, lime
from ..perturbation.occlusion import occlusion
from ..perturbation.permutation import feature_permutation
from ..perturbation.shapley import shapley_value_sampling, shapley_values
from .base import Attribution

Func = Callable[..., Any]


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


class FeatureAblation(Attribution):
    """Captum's ``FeatureAblation`` on :func:`fattr.feature_ablation` (``**kwargs`` are ignored, as in
    Captum, where only its subclasses use them)."""

    fn = staticmethod(feature_ablation)
    multiplies = True
    captum_future = True

    def __init__(self, forward_func: Func) -> None:
        super().__init__(forward_func)

    def attribute(self, inputs: Any, baselines: Any = None, target: Any = None, additional_forward_args: Any = None,
                  feature_mask: Any = None, perturbations_per_eval: int = 1, show_progress: bool = False,
                  **kwargs: Any) -> Any:
        return self._call(inputs, baselines=baselines, target=target, additional_forward_args=additional_forward_args,
                          feature_mask=feature_mask, perturbations_per_eval=perturbations_per_eval,
                          show_progress=show_progress)


class Occlusion(Attribution):
    """Captum's ``Occlusion`` on :func:`fattr.occlusion`."""

    fn = staticmethod(occlusion)
    multiplies = True

    def __init__(self, forward_func: Func) -> None:
        super().__init__(forward_func)

    def attribute(self, inputs: Any, sliding_window_shapes: Any, strides: Any = None, baselines: Any = None,
                  target: Any = None, additional_forward_args: Any = None, perturbations_per_eval: int = 1,
                  show_progress: bool = False) -> Any:
        return self._call(inputs, sliding_window_shapes=sliding_window_shapes, strides=strides, baselines=baselines,
                          target=target, additional_forward_args=additional_forward_args,
                          perturbations_per_eval=perturbations_per_eval, show_progress=show_progress)


class ShapleyValueSampling(Attribution):
    """Captum's ``ShapleyValueSampling`` on :func:`fattr.shapley_value_sampling` (feature orders drawn
    from torch's global generator)."""

    fn = staticmethod(shapley_value_sampling)
    multiplies = True
    stochastic = True
    captum_future = True

    def __init__(self, forward_func: Func) -> None:
        super().__init__(forward_func)

    def attribute(self, inputs: Any, baselines: Any = None, target: Any = None, additional_forward_args: Any = None,
                  feature_mask: Any = None, n_samples: int = 25, perturbations_per_eval: int = 1,
                  show_progress: bool = False) -> Any:
        return self._call(inputs, baselines=baselines, target=target, additional_forward_args=additional_forward_args,
                          feature_mask=feature_mask, n_samples=n_samples,
                          perturbations_per_eval=perturbations_per_eval, show_progress=show_progress)


class ShapleyValues(Attribution):
    """Captum's ``ShapleyValues`` on :func:`fattr.shapley_values` (each of the ``2^n`` coalitions
    evaluated once)."""

    fn = staticmethod(shapley_values)
    multiplies = True
    captum_future = True

    def __init__(self, forward_func: Func) -> None:
        super().__init__(forward_func)

    def attribute(self, inputs: Any, baselines: Any = None, target: Any = None, additional_forward_args: Any = None,
                  feature_mask: Any = None, perturbations_per_eval: int = 1, show_progress: bool = False) -> Any:
        return self._call(inputs, baselines=baselines, target=target, additional_forward_args=additional_forward_args,
                          feature_mask=feature_mask, perturbations_per_eval=perturbations_per_eval,
                          show_progress=show_progress)


class Lime(Attribution):
    """Captum's ``Lime`` on :func:`fattr.lime` (samples from torch's global generator unless a
    ``perturb_func`` is given). ``interpretable_model``, ``similarity_func`` and ``perturb_func`` are
    read from the instance at each call, so they can be replaced after construction as in Captum."""

    fn = staticmethod(lime)
    stochastic = True

    def __init__(self, forward_func: Func, interpretable_model: Any = None, similarity_func: Optional[Func] = None,
                 perturb_func: Optional[Func] = None) -> None:
        super().__init__(forward_func)
        self.interpretable_model = interpretable_model
        self.similarity_func = similarity_func
        self.perturb_func = perturb_func

    def _current_options(self) -> Dict[str, Any]:
        return {"interpretable_model": self.interpretable_model, "similarity_func": self.similarity_func,
                "perturb_func": self.perturb_func}

    def attribute(self, inputs: Any, baselines: Any = None, target: Any = None, additional_forward_args: Any = None,
                  feature_mask: Any = None, n_samples: int = 25, perturbations_per_eval: int = 1,
                  return_input_shape: bool = True, show_progress: bool = False) -> Any:
        return self._call(inputs, baselines=baselines, target=target, additional_forward_args=additional_forward_args,
                          feature_mask=feature_mask, n_samples=n_samples,
                          perturbations_per_eval=perturbations_per_eval, return_input_shape=return_input_shape,
                          show_progress=show_progress)


class KernelShap(Attribution):
    """Captum's ``KernelShap`` on :func:`fattr.kernel_shap` (coalitions from torch's global generator)."""

    fn = staticmethod(kernel_shap)
    stochastic = True

    def __init__(self, forward_func: Func) -> None:
        super().__init__(forward_func)

    def attribute(self, inputs: Any, baselines: Any = None, target: Any = None, additional_forward_args: Any = None,
                  feature_mask: Any = None, n_samples: int = 25, perturbations_per_eval: int = 1,
                  return_input_shape: bool = True, show_progress: bool = False) -> Any:
        return self._call(inputs, baselines=baselines, target=target, additional_forward_args=additional_forward_args,
                          feature_mask=feature_mask, n_samples=n_samples,
                          perturbations_per_eval=perturbations_per_eval, return_input_shape=return_input_shape,
                          show_progress=show_progress)


class FeaturePermutation(Attribution):
    """Captum's ``FeaturePermutation`` on :func:`fattr.feature_permutation`: with the default ``perm_func``
    the shuffles are fattr's, drawn from torch's global generator; another ``perm_func`` is called as
    Captum calls it. ``**kwargs`` are ignored, as in Captum."""

    fn = staticmethod(feature_permutation)
    multiplies = True
    stochastic = True
    captum_future = True

    def __init__(self, forward_func: Func, perm_func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                 = _permute_feature) -> None:
        super().__init__(forward_func)
        self.perm_func = perm_func

    def _current_options(self) -> Dict[str, Any]:
        return {"perm_func": None if self.perm_func is _permute_feature else self.perm_func}

    def attribute(self, inputs: Any, target: Any = None, additional_forward_args: Any = None, feature_mask: Any = None,
                  perturbations_per_eval: int = 1, show_progress: bool = False, **kwargs: Any) -> Any:
        return self._call(inputs, target=target, additional_forward_args=additional_forward_args,
                          feature_mask=feature_mask, perturbations_per_eval=perturbations_per_eval,
                          show_progress=show_progress)
