"""The same calls through Captum (when installed), for the report's "difference from Captum" column.

Captum's classes hold the model and use hooks, so each runs on a deep copy of the
model and a copy of the inputs: the demo's own model is never touched.
"""
from __future__ import annotations

import copy
import functools
import importlib.util
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from .attribute import options, timed

# the registry's neuron selector is a region of two channels: Captum's NeuronConductance defines a region's
# conductance differently, and its NeuronFeatureAblation takes no region
DIFFERENT = {"neuron_conductance", "neuron_feature_ablation"}


def captum_class(spec: Any) -> str:
    """The name of ``spec``'s Captum counterpart for the report ("" when the demo does not compare it)."""
    return spec.captum.cls if spec.captum is not None and spec.name not in DIFFERENT else ""


@dataclass
class Comparison:
    captum_class: str = ""
    max_abs_diff: Optional[float] = None
    max_abs: Optional[float] = None  # largest |attribution|, to read the difference against
    delta: Optional[float] = None  # mean |convergence delta| of Captum's attributions
    seconds: Optional[float] = None
    note: str = ""


def available() -> bool:
    return importlib.util.find_spec("captum") is not None


def compare(spec: Any, ours: Any, model: nn.Module, layer_name: str, x: torch.Tensor, target: torch.Tensor,
            distribution: torch.Tensor, repeats: int = 3) -> Comparison:
    """Run Captum's counterpart of ``spec`` with the same options and compare with ``ours``.

    Captum's time is the best of ``repeats`` calls, like fattr's in the demo.
    """
    name = captum_class(spec)
    if not name:
        return Comparison(note="no Captum counterpart")
    result = Comparison(captum_class=name)
    if spec.stochastic:
        result.note = "stochastic: Captum draws from the global RNG, no draw-for-draw comparison"
        return result
    import captum.attr

    twin = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attribute = spec.captum_call(captum.attr, twin, layer=twin.get_submodule(layer_name), target=target,
                                     **options(spec, x, distribution.clone()))
        try:
            theirs, result.seconds = timed(lambda: attribute(x.clone()), repeats)
        except AssertionError:
            if attribute.keywords.get("perturbations_per_eval", 1) == 1:
                raise
            # Captum 0.9 rejects per-example targets with perturbations_per_eval > 1 (results do not depend on it)
            attribute = functools.partial(attribute, perturbations_per_eval=1)
            result.note = "Captum run with perturbations_per_eval=1 (it rejects per-example targets otherwise)"
            theirs, result.seconds = timed(lambda: attribute(x.clone()), repeats)
    if attribute.keywords.get("return_convergence_delta"):
        theirs, captum_delta = theirs
        result.delta = float(captum_delta.detach().abs().double().mean())
    ours, theirs = (v if isinstance(v, (tuple, list)) else (v,) for v in (ours, theirs))
    diff = top = 0.0
    for a, b in zip(ours, theirs):
        if a.shape != b.shape:
            result.note = f"shapes differ: {tuple(a.shape)} vs Captum {tuple(b.shape)}"
            return result
        diff = max(diff, float((a.detach().double() - b.detach().double()).abs().max()))
        top = max(top, float(b.detach().abs().max()))
    result.max_abs_diff, result.max_abs = diff, top
    return result
