"""Benchmark pairs of the neuron methods and the ReLU-rule gradients (guided backprop, deconvolution,
guided Grad-CAM), appended to :data:`benchmarks.pairs.PAIRS`.

The neuron is ``NEURON``, channel (or column) 0 of the layer summed over every other position: a
selector every case's layers accept, the same in fattr and Captum (conductance: one neuron, :func:`_single`). Floors run the head
``model[:k+1]`` only (what a neuron's value depends on) in one batched forward and backward.
``neuron_gradient_shap`` has no pair: its agreement check would need the neuron's expectation by
quadrature, which :func:`benchmarks.pairs.expectation` does not compute (it is listed as unpaired).
"""
from __future__ import annotations

from typing import Any, Callable, List, Tuple

import torch

from .cases import Case
from .pairs import (CONV_ONLY, INPUT_PATH, NO_DEEPLIFT_RULE, TOKENS, Builder, Fn, Pair, Settings, _grad, _path, _wsum,
                    build_captum, build_fattr, gauss_legendre, head_tail, output_scale)

NEURON = (slice(0, 1),)
_NO_TOKENS = (("transformer", TOKENS),)
_NO_PATH = (("transformer", INPUT_PATH),)


def _single(c: Case) -> Tuple[int, ...]:
    """One neuron of ``c.layer``: channel 0 at the middle position (conductance of a region is defined
    differently in fattr and Captum, so the pair uses one neuron)."""
    head, _ = head_tail(c.model, c.layer)
    with torch.no_grad():
        shape = head(c.inputs[:1]).shape
    return (0,) + tuple(d // 2 for d in shape[2:])


def _neuron(head: torch.nn.Module, rows: torch.Tensor) -> torch.Tensor:
    return head(rows)[:, 0:1].reshape(rows.shape[0], -1).sum(1)


def _neuron_grad(head: torch.nn.Module, rows: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        rows = rows.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(_neuron(head, rows).sum(), rows)
    return g


# ------------------------------------------------------------------ neuron gradient and IG

def _floor_neuron_gradient(where: str) -> Builder:
    def build(c: Case, s: Settings) -> Fn:
        head, _ = head_tail(c.model, getattr(c, where))
        return lambda x: _neuron_grad(head, x)
    return build


def _floor_neuron_ig(where: str) -> Builder:
    def build(c: Case, s: Settings) -> Fn:
        head, _ = head_tail(c.model, getattr(c, where))
        alphas, weights = gauss_legendre(s.n_steps, c.inputs.device)
        return lambda x: _wsum(weights, _neuron_grad(head, _path(x, c.baselines, alphas)), x.shape[0]) \
            * (x - c.baselines)
    return build


# ------------------------------------------------------------------ neuron conductance

def _floor_neuron_conductance(c: Case, s: Settings) -> Fn:
    """Per step: the layer gradient ``dF/dy`` (one backward), then ``d <dF/dy restricted to the neuron, y> / dx``."""
    head, tail = head_tail(c.model, c.layer)
    alphas, weights = gauss_legendre(s.n_steps, c.inputs.device)
    tgt = c.target.repeat(s.n_steps)
    neuron = (slice(None),) + _single(c)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            rows = _path(x, c.baselines, alphas).requires_grad_(True)
            y = head(rows)
            (gy,) = torch.autograd.grad(tail(y).gather(1, tgt.reshape(-1, 1)).sum(), y, retain_graph=True)
            mask = torch.zeros_like(y)
            mask[neuron] = 1
            (gx,) = torch.autograd.grad((y * gy.detach() * mask).sum(), rows)
        return _wsum(weights, gx, x.shape[0]) * (x - c.baselines)
    return run


# ------------------------------------------------------------------ neuron DeepLift

def _neuron_deltas(pair: Pair) -> Tuple[Builder, Builder]:
    """Summation-to-delta residuals ``sum(attr) - mean_b (neuron(x) - neuron(b))`` of fattr's and Captum's,
    rescaled so that the harness's division by ``max|f(x)[target]|`` gives them relative to ``max|neuron(x)|``."""
    def residual(build: Callable[..., Any]) -> Builder:
        def built(c: Case, s: Settings) -> Fn:
            head, _ = head_tail(c.model, c.layer)
            attribute = build(pair, c, s)
            base = c.distribution if pair.method.endswith("_shap") else c.baselines

            def run(x: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    value = _neuron(head, x)
                    change = value - _neuron(head, base).mean()
                    rescale = output_scale(c) / max(float(value.abs().max()), 1e-12)
                return (attribute(x).reshape(x.shape[0], -1).sum(1).detach() - change) * rescale
            return run
        return built
    return residual(build_fattr), residual(build_captum)


# ------------------------------------------------------------------ ReLU-rule gradients

class _RuleReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, deconvolution: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.deconvolution = deconvolution
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return (g.clamp(min=0) if ctx.deconvolution else g.clamp(min=0) * (x > 0)), None


def _floor_rule(deconvolution: bool) -> Builder:
    """One forward and backward through the Sequential's children with the rule's ReLU: models whose ReLUs
    are all direct children (mlp, cnn; not resnet's blocks)."""
    def build(c: Case, s: Settings) -> Fn:
        children = list(c.model.children())
        nested = [m for child in children if not isinstance(child, torch.nn.ReLU)
                  for m in child.modules() if isinstance(m, torch.nn.ReLU)]
        if nested:
            raise NotImplementedError("ReLUs inside blocks: no hand-written floor")

        def forward(x: torch.Tensor) -> torch.Tensor:
            for child in children:
                x = _RuleReLU.apply(x, deconvolution) if isinstance(child, torch.nn.ReLU) else child(x)
            return x
        return lambda x: _grad(forward, x, c.target)
    return build


_CONV = (("mlp_tiny", CONV_ONLY), ("mlp", CONV_ONLY), ("transformer", CONV_ONLY))

_SELECT = lambda c, s: {"neuron_selector": NEURON}  # noqa: E731
_NO_RULE = (("transformer", NO_DEEPLIFT_RULE),)

PAIRS: List[Pair] = [
    Pair("neuron_gradient[late]", "neuron_gradient", _floor_neuron_gradient("late"), where="late",
         options=_SELECT, not_for=_NO_TOKENS),
    Pair("neuron_integrated_gradients[late]", "neuron_integrated_gradients", _floor_neuron_ig("late"),
         where="late", options=_SELECT, not_for=_NO_PATH),
    Pair("neuron_integrated_gradients[early]", "neuron_integrated_gradients", _floor_neuron_ig("early"),
         where="early", options=_SELECT, not_for=_NO_PATH),
    Pair("neuron_conductance", "neuron_conductance", _floor_neuron_conductance,
         options=lambda c, s: {"neuron_selector": _single(c)}, not_for=_NO_PATH),
    Pair("neuron_deeplift", "neuron_deeplift", options=_SELECT, not_for=_NO_RULE, deltas=_neuron_deltas),
    Pair("neuron_deeplift_shap", "neuron_deeplift_shap", options=_SELECT, not_for=_NO_RULE, deltas=_neuron_deltas),
    Pair("neuron_guided_backprop", "neuron_guided_backprop", options=_SELECT, not_for=_NO_TOKENS),
    Pair("neuron_deconvolution", "neuron_deconvolution", options=_SELECT, not_for=_NO_TOKENS),
    Pair("guided_backprop", "guided_backprop", _floor_rule(False), not_for=_NO_TOKENS),
    Pair("deconvolution", "deconvolution", _floor_rule(True), not_for=_NO_TOKENS),
    Pair("guided_grad_cam", "guided_grad_cam", not_for=_CONV),
]
