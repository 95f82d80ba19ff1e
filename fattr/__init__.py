"""fattr: functional, vectorised feature attribution for PyTorch, built on ``torch.func``.

Every method is a pure function ``method(f, inputs, ...) -> attributions``: no
attribution objects, no hooks, no state. See the README for the conventions
(inputs, baselines, target, args) shared by all of them.
"""
from fattr._src.delta import completeness_delta as completeness_delta
from fattr._src.gradient_shap import gradient_shap as gradient_shap
from fattr._src.integrated_gradients import integrated_gradients as integrated_gradients
from fattr._src.noise_tunnel import noise_tunnel as noise_tunnel
from fattr._src.path import path_attribution as path_attribution
from fattr._src.quadrature import quadrature as quadrature
from fattr._src.registry import MethodSpec as MethodSpec
from fattr._src.registry import methods as methods
from fattr._src.saliency import input_x_gradient as input_x_gradient
from fattr._src.saliency import saliency as saliency
# --- layer methods (issue 3) ---
# --- deeplift methods (issue 4) ---

__version__ = "0.1.0"

__all__ = [
    "completeness_delta",
    "gradient_shap",
    "input_x_gradient",
    "integrated_gradients",
    "methods",
    "MethodSpec",
    "noise_tunnel",
    "path_attribution",
    "quadrature",
    "saliency",
    # --- layer methods (issue 3) ---
    # --- deeplift methods (issue 4) ---
]
