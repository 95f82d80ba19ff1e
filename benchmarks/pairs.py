"""What is timed: each method as a fattr call, its Captum counterpart and, where it applies, the floor.

For one :class:`~benchmarks.cases.Case` and :class:`Settings`, a :class:`Pair` gives up to three
functions of the inputs:

* ``fattr``: the registered method's call built by :meth:`fattr.MethodSpec.bind`
  (:func:`build_fattr`; a method missing from the registry is reported as skipped);
* ``captum``: its Captum counterpart from the registry (:meth:`fattr.MethodSpec.captum_call`,
  :func:`build_captum`), built once, with the same arguments;
* ``floor``: plain ``torch.autograd`` doing the same arithmetic in one batched forward and
  backward (for IG: ``n_steps * B`` rows), with constants such as quadrature nodes
  precomputed; the cost no attribution library can beat. The floors split the
  ``nn.Sequential`` case models by slicing (``model[:k+1]`` / ``model[k+1:]``), so they need no
  library. They, and the per-case settings (:attr:`Pair.options`), are all a pair states.

Both implementations get the registry's options with the :class:`Settings` of the same name
(``n_steps``, ``n_samples``, ``stdevs``, ``perturbations_per_eval``) and the pair's own on top.

Agreement is checked before timing (``benchmarks.run``): deterministic methods
directly; SmoothGrad with ``stdevs=0``; the GradientSHAP methods statistically,
on one example with a single baseline row, no noise and many samples, against
their expectation computed by quadrature (IG for ``gradient_shap``, the input
path integral of the layer gradient times the activation difference for
``layer_gradient_shap``), because fattr draws from a ``generator`` and Captum
from the global torch/numpy RNGs.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

import fattr

from .cases import Case

Fn = Callable[[torch.Tensor], Any]


@dataclass(frozen=True)
class Settings:
    """Method parameters shared by every implementation of a pair."""

    n_steps: int = 50
    n_samples: int = 10            # gradient_shap, smoothgrad, layer_gradient_shap
    stdevs: float = 0.1            # noise of smoothgrad / gradient_shap
    perturbations_per_eval: int = 16
    mc_samples: int = 256          # statistical agreement check of the GradientSHAP methods
    seed: int = 0


# ------------------------------------------------------------------ helpers

def gauss_legendre(n: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of the n-point Gauss-Legendre rule on [0, 1] (float64 maths, float32 out)."""
    x, w = np.polynomial.legendre.leggauss(n)
    return (torch.tensor((x + 1) / 2, dtype=torch.float32, device=device),
            torch.tensor(w / 2, dtype=torch.float32, device=device))


def head_tail(model: nn.Sequential, name: str) -> Tuple[nn.Module, nn.Module]:
    k = int(name)
    return model[:k + 1], model[k + 1:]


def _selected(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return out.gather(1, target.reshape(-1, 1)).sum()


def _grad(fn: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        rows = rows.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(_selected(fn(rows), target), rows)
    return g


def _path(x: torch.Tensor, b: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """``(K*B, ...)`` rows ``b + a_k (x - b)``, step-major."""
    a = alphas.reshape((-1,) + (1,) * x.dim())
    return (b + a * (x - b)).reshape((-1,) + tuple(x.shape[1:]))


def _wsum(weights: torch.Tensor, g: torch.Tensor, n: int) -> torch.Tensor:
    return torch.tensordot(weights, g.reshape((-1, n) + tuple(g.shape[1:])), dims=1)


def _generator(x: torch.Tensor, seed: int) -> torch.Generator:
    return torch.Generator(device=x.device).manual_seed(seed)


# ------------------------------------------------------------------ the pair type and the generic builders

Builder = Callable[[Case, Settings], Fn]
Options = Callable[[Case, Settings], Dict[str, Any]]
SETTINGS = ("n_steps", "n_samples", "stdevs", "perturbations_per_eval")  # Settings fields that are options


def _none(c: Case, s: Settings) -> Dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Pair:
    """One benchmark row per case: a registered method, its floor and its per-case settings.

    Attributes:
      name: row name (``layer_integrated_gradients[late]``).
      method: the registry name of the fattr method.
      floor: builder ``(case, settings) -> fn(inputs)`` of the plain-autograd reference (None: none).
      where: which layer of the case (``"late"``, ``"early"``, ``"layer"``) for layer methods.
      options: ``(case, settings) -> options`` for both implementations (a feature mask, a neuron).
      captum_options: options for Captum only (SmoothGrad's sample count, which fattr's tunnel fixes).
      fattr_fn: ``settings -> function`` replacing the registry's (SmoothGrad: a tunnel with these settings).
      captum: a hand-written Captum builder replacing the registry's counterpart; ``captum_setup(explainer,
        case, settings)`` adjusts the registry's Captum object instead (replaying fattr's draws).
      cpu_generator: fattr draws from a CPU generator whatever the device (Captum replays those draws).
      not_for: case name -> why the method does not apply there.
      stochastic: compared with deterministic settings (``stdevs=0``) or statistically.
      statistical: the agreement check is the Monte-Carlo check (see module docstring).
      rtol: agreement tolerance relative to the reference's largest magnitude.
      one_target: every example gets the same target class (Captum 0.9's LayerFeatureAblation
        fails on a per-example target with ``perturbations_per_eval > 1``).
      deltas: ``pair -> (fattr, captum)`` builders of functions returning the summation-to-delta
        residuals (:func:`deeplift_deltas`); when Captum's attributions differ, fattr's are accepted only if its
        residuals are at float32 rounding level (DeepLift's defining property).
    """

    name: str
    method: str
    floor: Optional[Builder] = None
    where: str = "layer"
    options: Options = _none
    captum_options: Options = _none
    fattr_fn: Optional[Callable[[Settings], Callable[..., Any]]] = None
    captum: Optional[Builder] = None
    captum_setup: Optional[Callable[[Any, Case, Settings], None]] = None
    cpu_generator: bool = False
    not_for: Tuple[Tuple[str, str], ...] = ()
    stochastic: bool = False
    statistical: bool = False
    rtol: float = 2e-3
    one_target: bool = False
    deltas: Optional[Callable[["Pair"], Tuple[Builder, Builder]]] = None

    def reason_not_applicable(self, case: Case) -> Optional[str]:
        return dict(self.not_for).get(case.name)


def registry() -> Dict[str, fattr.MethodSpec]:
    return {spec.name: spec for spec in fattr.methods()}


def _arguments(pair: Pair, c: Case, s: Settings, extra: Dict[str, Any]) -> Tuple[fattr.MethodSpec, Dict[str, Any]]:
    """The registry entry and the keyword arguments of :meth:`fattr.MethodSpec.call` for ``pair`` on ``c``."""
    spec = registry()[pair.method]
    options = {k: getattr(s, k) for k, _ in spec.options if k in SETTINGS}
    options.update(pair.options(c, s), **extra)
    options["layer"] = c.module(getattr(c, pair.where)) if spec.layer else None
    options["target"] = int(c.target[0]) if pair.one_target else c.target  # see Pair.one_target
    if spec.baselines != "none":
        options.setdefault("baselines", c.distribution if spec.baselines == "distribution" else c.baselines)
    return spec, options


def build_fattr(pair: Pair, c: Case, s: Settings, **extra: Any) -> Fn:
    """:meth:`fattr.MethodSpec.bind` on the case; a random method gets a fresh generator seeded ``s.seed``."""
    spec, kwargs = _arguments(pair, c, s, extra)
    if pair.fattr_fn is not None:
        spec = dataclasses.replace(spec, fn=pair.fattr_fn(s))
    bound = spec.bind(c.model, **kwargs)
    if not spec.stochastic:
        return bound
    if pair.cpu_generator:
        return lambda x: bound(x, torch.Generator().manual_seed(s.seed))
    return lambda x: bound(x, _generator(x, s.seed))


def build_captum(pair: Pair, c: Case, s: Settings, **extra: Any) -> Optional[Fn]:
    """The Captum counterpart with the same arguments (None: no counterpart)."""
    if pair.captum is not None:
        return pair.captum(c, s)
    spec, kwargs = _arguments(pair, c, s, dict(pair.captum_options(c, s), **extra))
    if spec.captum is None:
        return None
    import captum.attr
    attribute = spec.captum_call(captum.attr, c.model, **kwargs)
    if pair.captum_setup is not None:
        pair.captum_setup(attribute.func.__self__, c, s)  # type: ignore[attr-defined]  # the Captum object
    return attribute


def builders(pair: Pair) -> Dict[str, Optional[Builder]]:
    """Builders of the implementations of ``pair``: ``fattr``, ``captum``, ``floor``."""
    return {"fattr": functools.partial(build_fattr, pair), "captum": functools.partial(build_captum, pair),
            "floor": pair.floor}


def deeplift_deltas(pair: Pair) -> Tuple[Builder, Builder]:
    """Builders of the summation-to-delta residuals of a DeepLift method (fattr's, Captum's)."""
    def delta(build: Callable[..., Any]) -> Builder:
        def residual(c: Case, s: Settings) -> Fn:
            attribute = build(pair, c, s, return_delta=True)
            return lambda x: attribute(x)[1]
        return residual
    return delta(build_fattr), delta(build_captum)


TOKENS = "token-id inputs: input-space methods do not apply (see the layer methods on the embedding)"
INPUT_PATH = "interpolating token ids along an input path is meaningless"
CONV_ONLY = "Grad-CAM is defined on (B, C, ...) conv feature maps"
NO_DEEPLIFT_RULE = ("LayerNorm and attention's products have no DeepLift rule, so summation-to-delta fails in "
                    "fattr and Captum alike (residual ~0.6 and ~0.8 of max|f|): no reference to check against")


# ------------------------------------------------------------------ floors of the input-gradient methods

def _floor_saliency(c: Case, s: Settings) -> Fn:
    return lambda x: _grad(c.model, x, c.target).abs()


def _floor_input_x_gradient(c: Case, s: Settings) -> Fn:
    return lambda x: x * _grad(c.model, x, c.target)


def _floor_ig(c: Case, s: Settings) -> Fn:
    alphas, weights = gauss_legendre(s.n_steps, c.inputs.device)
    tgt = c.target.repeat(s.n_steps)

    def run(x: torch.Tensor) -> torch.Tensor:
        g = _grad(c.model, _path(x, c.baselines, alphas), tgt)
        return _wsum(weights, g, x.shape[0]) * (x - c.baselines)
    return run


def _shap_draws(c: Case, s: Settings, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GradientSHAP's draws in fattr's order: ``(noisy, starts)`` ``(k, n, ...)`` and the points ``(k*n, ...)``."""
    g = _generator(x, s.seed)
    k, n = s.n_samples, x.shape[0]
    noisy = x + s.stdevs * torch.randn((k,) + tuple(x.shape), generator=g, device=x.device)
    starts = c.distribution[torch.randint(0, c.distribution.shape[0], (k, n), generator=g, device=x.device)]
    a = torch.rand((k, n) + (1,) * (x.dim() - 1), generator=g, device=x.device)
    return noisy, starts, (starts + a * (noisy - starts)).reshape((k * n,) + tuple(x.shape[1:]))


def _floor_gradient_shap(c: Case, s: Settings) -> Fn:
    tgt = c.target.repeat(s.n_samples)

    def run(x: torch.Tensor) -> torch.Tensor:
        noisy, starts, rows = _shap_draws(c, s, x)
        grads = _grad(c.model, rows, tgt).reshape(noisy.shape)
        return (grads * (noisy - starts)).mean(0)
    return run


def _smoothgrad(s: Settings) -> Callable[..., Any]:
    return fattr.noise_tunnel(fattr.saliency, kind="smoothgrad", n_samples=s.n_samples, stdevs=s.stdevs)


def _floor_smoothgrad(c: Case, s: Settings) -> Fn:
    tgt = c.target.repeat(s.n_samples)

    def run(x: torch.Tensor) -> torch.Tensor:
        g = _generator(x, s.seed)
        noisy = x + s.stdevs * torch.randn((s.n_samples,) + tuple(x.shape), generator=g, device=x.device)
        grads = _grad(c.model, noisy.reshape((-1,) + tuple(x.shape[1:])), tgt)
        return grads.abs().reshape(noisy.shape).mean(0)
    return run


# ------------------------------------------------------------------ floors of the layer methods

def _floor_lig(where: str) -> Builder:
    def build(c: Case, s: Settings) -> Fn:
        head, tail = head_tail(c.model, getattr(c, where))
        alphas, weights = gauss_legendre(s.n_steps, c.inputs.device)
        tgt = c.target.repeat(s.n_steps)

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                ax, ab = head(x), head(c.baselines)
            g = _grad(tail, _path(ax, ab, alphas), tgt)
            return _wsum(weights, g, x.shape[0]) * (ax - ab)
        return run
    return build


def _floor_conductance(c: Case, s: Settings) -> Fn:
    """Captum's arithmetic: gradients at n+1 input-path points times consecutive activation differences."""
    head, tail = head_tail(c.model, c.layer)
    alphas, _ = gauss_legendre(s.n_steps + 1, c.inputs.device)
    tgt = c.target.repeat(s.n_steps + 1)

    def run(x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        with torch.enable_grad():
            act = head(_path(x, c.baselines, alphas))
            leaf = act.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(_selected(tail(leaf), tgt), leaf)
        act = act.detach()
        diffs = act[n:] - act[:-n]
        return (g[:-n] * diffs).reshape((s.n_steps, n) + tuple(act.shape[1:])).sum(0)
    return run


def _layer_grads_on_input_path(c: Case, x: torch.Tensor, alphas: torch.Tensor, tgt: torch.Tensor,
                               head: nn.Module, tail: nn.Module) -> torch.Tensor:
    with torch.enable_grad():
        leaf = head(_path(x, c.baselines, alphas)).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(_selected(tail(leaf), tgt), leaf)
    return g


def _floor_internal_influence(c: Case, s: Settings) -> Fn:
    head, tail = head_tail(c.model, c.layer)
    alphas, weights = gauss_legendre(s.n_steps, c.inputs.device)
    tgt = c.target.repeat(s.n_steps)
    return lambda x: _wsum(weights, _layer_grads_on_input_path(c, x, alphas, tgt, head, tail), x.shape[0])


def _floor_grad_cam(c: Case, s: Settings) -> Fn:
    head, tail = head_tail(c.model, c.layer)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            act = head(x)
        g = _grad(tail, act, c.target)
        w = g.mean(dim=tuple(range(2, g.dim())), keepdim=True)
        return (w * act).sum(1, keepdim=True)
    return run


def _floor_layer_gradient_shap(c: Case, s: Settings) -> Fn:
    head, tail = head_tail(c.model, c.layer)
    tgt = c.target.repeat(s.n_samples)

    def run(x: torch.Tensor) -> torch.Tensor:
        noisy, starts, rows = _shap_draws(c, s, x)
        with torch.no_grad():
            ends = head(torch.cat([noisy.reshape(rows.shape), starts.reshape(rows.shape)]))
        k, n = s.n_samples, x.shape[0]
        with torch.enable_grad():
            leaf = head(rows).detach().requires_grad_(True)
            (grads,) = torch.autograd.grad(_selected(tail(leaf), tgt), leaf)
        diff = ends[:k * n] - ends[k * n:]
        return (grads * diff).reshape((k, n) + tuple(diff.shape[1:])).mean(0)
    return run


def _floor_feature_ablation(c: Case, s: Settings) -> Fn:
    """The head once, then the tail on ``perturbations_per_eval`` ablated copies per call (no grad)."""
    head, tail = head_tail(c.model, c.layer)

    def run(x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        with torch.no_grad():
            act = head(x)
            shape = tuple(act.shape[1:])
            mask = (torch.arange(int(np.prod(shape)), device=x.device).reshape(shape) if c.layer_mask is None
                    else c.layer_mask.expand((1,) + shape)[0])
            n_groups = int(mask.max()) + 1
            base = tail(act).gather(1, c.target.reshape(-1, 1)).reshape(n)
            groups = torch.arange(n_groups, device=x.device)
            attr = torch.zeros_like(act)
            for start in range(0, n_groups, s.perturbations_per_eval):
                gs = groups[start:start + s.perturbations_per_eval]
                keep = (mask.unsqueeze(0) != gs.reshape((-1,) + (1,) * len(shape))).to(act.dtype)  # (k, ...)
                rows = (act.unsqueeze(0) * keep.unsqueeze(1)).reshape((-1,) + shape)
                out = tail(rows).gather(1, c.target.repeat(len(gs)).reshape(-1, 1)).reshape(len(gs), n)
                drop = base.unsqueeze(0) - out  # (k, n)
                hit = (1 - keep).unsqueeze(1)  # (k, 1, ...)
                attr = attr + (drop.reshape(drop.shape + (1,) * len(shape)) * hit).sum(0)
        return attr
    return run


def _floor_layer_activation(c: Case, s: Settings) -> Fn:
    head, _ = head_tail(c.model, c.layer)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return head(x)
    return run


def _floor_layer_gxa(c: Case, s: Settings) -> Fn:
    head, tail = head_tail(c.model, c.layer)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            act = head(x)
        return _grad(tail, act, c.target) * act
    return run


def output_scale(c: Case) -> float:
    """``max |f(x)[target]|``: the scale of the summation-to-delta residuals."""
    with torch.no_grad():
        return max(float(c.model(c.inputs).gather(1, c.target.reshape(-1, 1)).abs().max()), 1e-12)


# ------------------------------------------------------------------ the table of pairs

_NO_TOKENS = (("transformer", TOKENS),)
_NO_PATH = (("transformer", INPUT_PATH),)
_NO_RULE = (("transformer", NO_DEEPLIFT_RULE),)

PAIRS: List[Pair] = [
    Pair("saliency", "saliency", _floor_saliency, not_for=_NO_TOKENS),
    Pair("input_x_gradient", "input_x_gradient", _floor_input_x_gradient, not_for=_NO_TOKENS),
    Pair("integrated_gradients", "integrated_gradients", _floor_ig, not_for=_NO_TOKENS),
    Pair("gradient_shap", "gradient_shap", _floor_gradient_shap, not_for=_NO_TOKENS, stochastic=True,
         statistical=True),
    Pair("smoothgrad", "smoothgrad", _floor_smoothgrad, not_for=_NO_TOKENS, stochastic=True,
         fattr_fn=_smoothgrad, options=lambda c, s: {"abs": True},
         captum_options=lambda c, s: {"n_samples": s.n_samples, "stdevs": s.stdevs}),
    Pair("layer_integrated_gradients[late]", "layer_integrated_gradients", _floor_lig("late"), where="late"),
    Pair("layer_integrated_gradients[early]", "layer_integrated_gradients", _floor_lig("early"), where="early"),
    Pair("layer_conductance", "layer_conductance", _floor_conductance, not_for=_NO_PATH),
    Pair("internal_influence", "internal_influence", _floor_internal_influence, not_for=_NO_PATH),
    Pair("layer_grad_cam", "layer_grad_cam", _floor_grad_cam,
         not_for=(("mlp_tiny", CONV_ONLY), ("mlp", CONV_ONLY), ("transformer", CONV_ONLY))),
    Pair("layer_gradient_shap", "layer_gradient_shap", _floor_layer_gradient_shap, not_for=_NO_PATH,
         stochastic=True, statistical=True),
    Pair("layer_feature_ablation", "layer_feature_ablation", _floor_feature_ablation, one_target=True,
         options=lambda c, s: {"layer_mask": c.layer_mask} if c.layer_mask is None else
         {"layer_mask": c.layer_mask, "n_features": int(c.layer_mask.max()) + 1}),
    Pair("layer_activation", "layer_activation", _floor_layer_activation),
    Pair("layer_gradient_x_activation", "layer_gradient_x_activation", _floor_layer_gxa),
    Pair("gradient_x_input", "gradient_x_input", _floor_input_x_gradient, not_for=_NO_TOKENS),
    Pair("deeplift", "deeplift", not_for=_NO_TOKENS, deltas=deeplift_deltas),
    Pair("deeplift_shap", "deeplift_shap", not_for=_NO_TOKENS, deltas=deeplift_deltas),
    Pair("layer_deeplift", "layer_deeplift", not_for=_NO_RULE, deltas=deeplift_deltas),
    Pair("layer_deeplift_shap", "layer_deeplift_shap", not_for=_NO_RULE, deltas=deeplift_deltas),
]
PAIRS += __import__("benchmarks.pairs_neuron", fromlist=["PAIRS"]).PAIRS  # neuron methods, ReLU-rule gradients

from .pairs_research import RESEARCH_PAIRS  # noqa: E402  (the research path methods; its own module)
PAIRS += RESEARCH_PAIRS
from .pairs_perturbation import perturbation_pairs  # noqa: E402  (it imports Pair and helpers from here)
PAIRS.extend(perturbation_pairs())
from .pairs_lrp import lrp_pairs  # noqa: E402  (layer-wise relevance propagation; its own module)
PAIRS.extend(lrp_pairs())


def select(names: Optional[List[str]]) -> List[Pair]:
    """Pairs whose row name or registry method name is in ``names`` (all when None)."""
    if not names:
        return list(PAIRS)
    known = {p.name for p in PAIRS} | {p.method for p in PAIRS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {sorted(known)}")
    return [p for p in PAIRS if p.name in names or p.method in names]


def unpaired_methods() -> List[str]:
    """Registered fattr methods that no pair benchmarks (reported in the table's notes)."""
    paired = {p.method for p in PAIRS}
    return [name for name in registry() if name not in paired]


# ------------------------------------------------------------------ agreement

def max_error(a: Any, b: Any) -> float:
    """``max|a - b| / max|b|`` over the tensors of two results (tuples allowed)."""
    ta = a if isinstance(a, (tuple, list)) else (a,)
    tb = b if isinstance(b, (tuple, list)) else (b,)
    if len(ta) != len(tb):
        return float("inf")
    worst = 0.0
    for x, y in zip(ta, tb):
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            return float("inf")
        if x.shape != y.shape:
            try:
                x = x.reshape(y.shape)  # e.g. Captum keeps a dim that fattr squeezes
            except RuntimeError:
                return float("inf")
        x, y = x.detach().double(), y.detach().double()
        scale = max(float(y.abs().max()), 1e-12)
        worst = max(worst, float((x - y).abs().max()) / scale)
    return worst


def rel_l2(a: Any, b: torch.Tensor) -> float:
    a = a[0] if isinstance(a, (tuple, list)) else a
    a, b = a.detach().double().reshape(b.shape), b.detach().double()
    return float((a - b).norm() / max(float(b.norm()), 1e-12))


def check_settings(pair: Pair, s: Settings) -> Settings:
    """Deterministic settings for the agreement check of a stochastic pair."""
    if pair.stochastic and not pair.statistical:
        return dataclasses.replace(s, stdevs=0.0)
    return s


def expectation(pair: Pair, c: Case, s: Settings) -> torch.Tensor:
    """What a GradientSHAP method estimates with one baseline row and no noise, by quadrature (64 nodes)."""
    alphas, weights = gauss_legendre(64, c.inputs.device)
    x, b = c.inputs, c.distribution[:1]
    tgt = c.target.repeat(64)
    if pair.method in ("gradient_shap", "expected_gradients"):
        return _wsum(weights, _grad(c.model, _path(x, b, alphas), tgt), x.shape[0]) * (x - b)
    head, tail = head_tail(c.model, c.layer)
    cb = dataclasses.replace(c, baselines=b)
    g = _wsum(weights, _layer_grads_on_input_path(cb, x, alphas, tgt, head, tail), x.shape[0])
    with torch.no_grad():
        return g * (head(x) - head(b))


def statistical_settings(c: Case, s: Settings) -> Tuple[Case, Settings]:
    """One example, one baseline row, no noise, many samples."""
    small = dataclasses.replace(c, inputs=c.inputs[:1], target=c.target[:1], distribution=c.distribution[:1])
    return small, dataclasses.replace(s, n_samples=s.mc_samples, stdevs=0.0)
