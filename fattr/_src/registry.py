"""The method registry: every public attribution method and the properties the
contract tests, the benchmarks and the demo need to call it generically.

Adding a method is one :class:`MethodSpec` line here plus its own closed-form tests.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple

from .gradient_shap import gradient_shap
from .integrated_gradients import integrated_gradients
from .noise_tunnel import noise_tunnel
from .saliency import input_x_gradient, saliency


@dataclass(frozen=True)
class MethodSpec:
    """How to call a method: ``fn(model, [layer,] inputs, [baselines,] target=..., **options)``.

    Attributes:
      name: public name.
      fn: the function.
      baselines: ``"none"`` (takes no baselines), ``"optional"`` (None means zeros) or
        ``"distribution"`` (required rows, SHAP-style).
      layer: takes ``(model, layer, inputs, ...)`` and attributes to a layer.
      stochastic: takes ``generator=``.
      chunked: takes ``chunk_size=`` (results must not depend on it).
      delta: takes ``return_delta=``.
      targeted: takes ``target=``.
      needs_module: ``f`` must be an ``nn.Module`` (not any callable).
      options: extra keyword arguments used when calling it generically.
    """

    name: str
    fn: Callable[..., Any]
    baselines: str = "none"
    layer: bool = False
    stochastic: bool = False
    chunked: bool = False
    delta: bool = False
    targeted: bool = True
    needs_module: bool = False
    options: Tuple[Tuple[str, Any], ...] = ()


smoothgrad = noise_tunnel(saliency, kind="smoothgrad", n_samples=8, stdevs=0.1)

_SPECS = [
    MethodSpec("saliency", saliency),
    MethodSpec("input_x_gradient", input_x_gradient),
    MethodSpec("integrated_gradients", integrated_gradients, baselines="optional", chunked=True, delta=True,
               options=(("n_steps", 16),)),
    MethodSpec("gradient_shap", gradient_shap, baselines="distribution", stochastic=True, delta=True,
               options=(("n_samples", 8), ("stdevs", 0.05))),
    MethodSpec("smoothgrad", smoothgrad, stochastic=True, options=(("abs", False),)),
    # --- layer methods (issue 3) ---
    # --- deeplift methods (issue 4) ---
]

REGISTRY: Dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}


def methods() -> Tuple[MethodSpec, ...]:
    """All registered methods, in registration order."""
    return tuple(REGISTRY.values())
