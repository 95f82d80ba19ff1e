"""Every registered method, one function call each, on the same digits.

The methods come from :func:`fattr.methods` at run time, so a method added to
the registry shows up in the demo without changing it. A method's
:class:`fattr.MethodSpec` says how to call it: a layer (the model's ``conv3``),
a baseline distribution, a generator, ``return_delta``.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

import fattr


@dataclass
class Outcome:
    """One method's result on the demo digits (``error`` is set when the call failed)."""

    name: str
    spec: Any
    attributions: Any = None  # what the method returned (tensor or tuple)
    picture: Optional[torch.Tensor] = None  # (B, 1, H, W) for the figure, or None
    seconds: float = 0.0
    delta: Optional[float] = None  # mean |completeness delta| when the method returns one
    note: str = ""
    error: Optional[str] = None


def _blocks(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Feature ids of ``height x width`` pixel blocks, ``(1, 1, H, W)``."""
    rows = torch.arange(x.shape[-2]) // height
    cols = torch.arange(x.shape[-1]) // width
    return (rows.unsqueeze(1) * (-(-x.shape[-1] // width)) + cols).reshape(1, 1, x.shape[-2], x.shape[-1])


# perturbation methods on images: features of 2x2 pixels (exact Shapley values: 4 features of 4x4 pixels, as
# Captum's ShapleyValues, run for the report, needs n * n! calls)
IMAGE_OPTIONS: Dict[str, Callable[[torch.Tensor], Dict[str, Any]]] = {
    "feature_ablation": lambda x: {"feature_mask": _blocks(x, 2, 2)},
    "occlusion": lambda x: {"sliding_window_shapes": (1, 2, 2), "strides": (1, 2, 2)},
    "shapley_value_sampling": lambda x: {"feature_mask": _blocks(x, 2, 2), "n_samples": 25},
    "shapley_values": lambda x: {"feature_mask": _blocks(x, 4, 4)},
    "lime": lambda x: {"feature_mask": _blocks(x, 2, 2), "n_samples": 200, "perturbations_per_eval": 50},
    "kernel_shap": lambda x: {"feature_mask": _blocks(x, 2, 2), "n_samples": 200, "perturbations_per_eval": 50},
    "feature_permutation": lambda x: {"feature_mask": _blocks(x, 2, 2)},
}


def options(spec: Any, x: torch.Tensor, distribution: torch.Tensor) -> Dict[str, Any]:
    """The demo's arguments of ``spec`` on ``x``, on top of the registry's options (the same for fattr and
    Captum): the image settings of :data:`IMAGE_OPTIONS`, ``return_delta`` where the method has it, and
    the distribution as the SHAP methods' baselines (the others: zeros)."""
    out = IMAGE_OPTIONS[spec.name](x) if x.dim() == 4 and spec.name in IMAGE_OPTIONS else {}
    if spec.delta:
        out["return_delta"] = True
    if spec.baselines == "distribution":
        out["baselines"] = distribution
    return out


def call(spec: Any, model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor,
         distribution: torch.Tensor, generator: torch.Generator) -> Tuple[Any, Optional[torch.Tensor]]:
    """One call through :meth:`fattr.MethodSpec.call`; returns (attributions, delta or None)."""
    out = spec.call(model, x, layer=layer, target=target, generator=generator, **options(spec, x, distribution))
    return out if spec.delta else (out, None)


def picture(attr: Any, size: Tuple[int, int]) -> Tuple[Optional[torch.Tensor], str]:
    """Attributions as ``(B, 1, *size)`` for a heat map: channels summed, layer maps upsampled."""
    if isinstance(attr, (tuple, list)):
        if len(attr) != 1:
            return None, f"{len(attr)} tensors: not drawn"
        attr = attr[0]
    attr = attr.detach()
    if attr.dim() == 3:
        attr = attr.unsqueeze(1)
    if attr.dim() != 4:
        return None, f"shape {tuple(attr.shape)}: not drawn"
    summed, channels = attr.sum(dim=1, keepdim=True), "summed over channels" if attr.shape[1] > 1 else ""
    if tuple(summed.shape[-2:]) == tuple(size):
        return summed, channels
    upsampled = f"{tuple(attr.shape[-2:])} upsampled by fattr.interpolate"
    return fattr.interpolate(summed, size, mode="bilinear"), f"{channels}, {upsampled}" if channels else upsampled


def timed(fn: Callable[[], Any], repeats: int) -> Tuple[Any, float]:
    """``fn()``'s first result and the best time of ``repeats`` calls (a call over 0.5 s is not repeated), so
    that one-off warm-up costs do not count."""
    first: Any = None
    times: List[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
        first = out if len(times) == 1 else first
        if times[-1] > 0.5:  # slow enough to time once
            break
    return first, min(times)


def image_methods() -> list:
    """The registered methods that take tensors (not a language model's token ids: see ``lm``)."""
    return [spec for spec in fattr.methods() if spec.inputs == "features"]


def run_all(model: nn.Module, layer_name: str, x: torch.Tensor, target: torch.Tensor,
            distribution: torch.Tensor, seed: int, log: Any = print, repeats: int = 3) -> list:
    """Call every registered method on ``x``; failures are recorded, not raised.

    The time is the best of ``repeats`` identical calls (same seed, :func:`timed`); the attributions are those
    of the first call.
    """
    layer = model.get_submodule(layer_name)
    size = tuple(x.shape[-2:])
    outcomes = []
    for i, spec in enumerate(image_methods()):
        outcome = Outcome(spec.name, spec)
        try:
            (attr, delta), outcome.seconds = timed(
                lambda: call(spec, model, layer, x, target, distribution, torch.Generator().manual_seed(seed + i)),
                repeats)
            outcome.attributions = attr
            if delta is not None:
                outcome.delta = float(delta.detach().abs().to(torch.float64).mean())
            outcome.picture, outcome.note = picture(attr, size)  # type: ignore[arg-type]
        except Exception as e:  # a broken method must not hide the others
            outcome.error = f"{type(e).__name__}: {e}"
            outcome.note = traceback.format_exc(limit=-3)
        where = f" at {layer_name}" if spec.layer else ""
        status = f"FAILED ({outcome.error})" if outcome.error else f"{outcome.seconds * 1e3:.1f} ms"
        log(f"{spec.name}{where}: {status}")
        outcomes.append(outcome)
    return outcomes
