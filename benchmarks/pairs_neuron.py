"""Benchmark pairs of the neuron methods and the ReLU-rule gradients (guided backprop, deconvolution,
guided Grad-CAM), appended to :data:`benchmarks.pairs.PAIRS`.

The neuron is ``NEURON``, channel (or column) 0 of the layer summed over every other position: a
selector every case's layers accept, the same in fattr and Captum (conductance: one neuron, :func:`_single`). Floors run the head
``model[:k+1]`` only (what a neuron's value depends on) in one batched forward and backward.
``neuron_gradient_shap`` has no pair: its agreement check would need the neuron's expectation by
quadrature, which :func:`benchmarks.pairs.expectation` does not compute (it is listed as unpaired).
"""
from __future__ import annotations

from typing import List, Tuple

import torch

from .cases import Case
from .pairs import (CONV_ONLY, INPUT_PATH, NO_DEEPLIFT_RULE, TOKENS, Builder, Fn, Pair, Settings, _fn, _grad, _path,
                    _wsum, gauss_legendre, head_tail, output_scale)

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

def _neuron_gradient(where: str) -> Builder:
    def build(c: Case, s: Settings) -> Fn:
        f, layer = _fn("neuron_gradient"), getattr(c, where)
        return lambda x: f(c.model, layer, x, neuron_selector=NEURON)
    return build


def _captum_neuron_gradient(where: str) -> Builder:
    def build(c: Case, s: Settings) -> Fn:
        from captum.attr import NeuronGradient
        a = NeuronGradient(c.model, c.module(getattr(c, where)))
        return lambda x: a.attribute(x, NEURON)
    return build


def _floor_neuron_gradient(where: str) -> Builder:
    def build(c: Case, s: Settings) -> Fn:
        head, _ = head_tail(c.model, getattr(c, where))
        return lambda x: _neuron_grad(head, x)
    return build


def _neuron_ig(where: str) -> Builder:
    def build(c: Case, s: Settings) -> Fn:
        f, layer = _fn("neuron_integrated_gradients"), getattr(c, where)
        return lambda x: f(c.model, layer, x, c.baselines, n_steps=s.n_steps, neuron_selector=NEURON)
    return build


def _captum_neuron_ig(where: str) -> Builder:
    def build(c: Case, s: Settings) -> Fn:
        from captum.attr import NeuronIntegratedGradients
        a = NeuronIntegratedGradients(c.model, c.module(getattr(c, where)))
        return lambda x: a.attribute(x, NEURON, c.baselines, n_steps=s.n_steps)
    return build


def _floor_neuron_ig(where: str) -> Builder:
    def build(c: Case, s: Settings) -> Fn:
        head, _ = head_tail(c.model, getattr(c, where))
        alphas, weights = gauss_legendre(s.n_steps, c.inputs.device)
        return lambda x: _wsum(weights, _neuron_grad(head, _path(x, c.baselines, alphas)), x.shape[0]) \
            * (x - c.baselines)
    return build


# ------------------------------------------------------------------ neuron conductance

def _neuron_conductance(c: Case, s: Settings) -> Fn:
    f, neuron = _fn("neuron_conductance"), _single(c)
    return lambda x: f(c.model, c.layer, x, c.baselines, n_steps=s.n_steps, method="gausslegendre",
                       neuron_selector=neuron, target=c.target)


def _captum_neuron_conductance(c: Case, s: Settings) -> Fn:
    from captum.attr import NeuronConductance
    a, neuron = NeuronConductance(c.model, c.module(c.layer)), _single(c)
    return lambda x: a.attribute(x, neuron, c.baselines, target=c.target, n_steps=s.n_steps,
                                 method="gausslegendre")


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

def _neuron_deeplift(name: str, distribution: bool) -> Builder:
    def build(c: Case, s: Settings) -> Fn:
        f = _fn(name)
        base = c.distribution if distribution else c.baselines
        return lambda x: f(c.model, c.layer, x, base, neuron_selector=NEURON)
    return build


def _captum_neuron_deeplift(cls_name: str, distribution: bool) -> Builder:
    def build(c: Case, s: Settings) -> Fn:
        import captum.attr
        a = getattr(captum.attr, cls_name)(c.model, c.module(c.layer))
        base = c.distribution if distribution else c.baselines
        return lambda x: a.attribute(x, NEURON, base)
    return build


def _neuron_deltas(name: str, cls_name: str, distribution: bool) -> Tuple[Builder, Builder]:
    """Summation-to-delta residuals ``sum(attr) - mean_b (neuron(x) - neuron(b))`` of fattr's and Captum's,
    rescaled so that the harness's division by ``max|f(x)[target]|`` gives them relative to ``max|neuron(x)|``."""
    def residual(attr_of: Builder) -> Builder:
        def build(c: Case, s: Settings) -> Fn:
            head, _ = head_tail(c.model, c.layer)
            attribute = attr_of(c, s)
            base = c.distribution if distribution else c.baselines

            def run(x: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    value = _neuron(head, x)
                    change = value - _neuron(head, base).mean()
                    rescale = output_scale(c) / max(float(value.abs().max()), 1e-12)
                return (attribute(x).reshape(x.shape[0], -1).sum(1).detach() - change) * rescale
            return run
        return build
    return residual(_neuron_deeplift(name, distribution)), residual(_captum_neuron_deeplift(cls_name, distribution))


# ------------------------------------------------------------------ ReLU-rule gradients

def _rule(name: str, neuron: bool) -> Builder:
    def build(c: Case, s: Settings) -> Fn:
        f = _fn(name)
        if neuron:
            return lambda x: f(c.model, c.layer, x, neuron_selector=NEURON)
        return lambda x: f(c.model, x, target=c.target)
    return build


def _captum_rule(cls_name: str, neuron: bool) -> Builder:
    def build(c: Case, s: Settings) -> Fn:
        import captum.attr
        cls = getattr(captum.attr, cls_name)
        if neuron:
            a = cls(c.model, c.module(c.layer))
            return lambda x: a.attribute(x, NEURON)
        b = cls(c.model)
        return lambda x: b.attribute(x, target=c.target)
    return build


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


def _guided_grad_cam(c: Case, s: Settings) -> Fn:
    f = _fn("guided_grad_cam")
    return lambda x: f(c.model, c.layer, x, target=c.target)


def _captum_guided_grad_cam(c: Case, s: Settings) -> Fn:
    from captum.attr import GuidedGradCam
    a = GuidedGradCam(c.model, c.module(c.layer))
    return lambda x: a.attribute(x, target=c.target)


_CONV = (("mlp_tiny", CONV_ONLY), ("mlp", CONV_ONLY), ("transformer", CONV_ONLY))

PAIRS: List[Pair] = [
    Pair("neuron_gradient[late]", "neuron_gradient", _neuron_gradient("late"), _captum_neuron_gradient("late"),
         _floor_neuron_gradient("late"), where="late", not_for=_NO_TOKENS),
    Pair("neuron_integrated_gradients[late]", "neuron_integrated_gradients", _neuron_ig("late"),
         _captum_neuron_ig("late"), _floor_neuron_ig("late"), where="late", not_for=_NO_PATH),
    Pair("neuron_integrated_gradients[early]", "neuron_integrated_gradients", _neuron_ig("early"),
         _captum_neuron_ig("early"), _floor_neuron_ig("early"), where="early", not_for=_NO_PATH),
    Pair("neuron_conductance", "neuron_conductance", _neuron_conductance, _captum_neuron_conductance,
         _floor_neuron_conductance, where="layer", not_for=_NO_PATH),
    Pair("neuron_deeplift", "neuron_deeplift", _neuron_deeplift("neuron_deeplift", False),
         _captum_neuron_deeplift("NeuronDeepLift", False), where="layer",
         not_for=(("transformer", NO_DEEPLIFT_RULE),),
         deltas=_neuron_deltas("neuron_deeplift", "NeuronDeepLift", False)),
    Pair("neuron_deeplift_shap", "neuron_deeplift_shap", _neuron_deeplift("neuron_deeplift_shap", True),
         _captum_neuron_deeplift("NeuronDeepLiftShap", True), where="layer",
         not_for=(("transformer", NO_DEEPLIFT_RULE),),
         deltas=_neuron_deltas("neuron_deeplift_shap", "NeuronDeepLiftShap", True)),
    Pair("neuron_guided_backprop", "neuron_guided_backprop", _rule("neuron_guided_backprop", True),
         _captum_rule("NeuronGuidedBackprop", True), where="layer", not_for=_NO_TOKENS),
    Pair("neuron_deconvolution", "neuron_deconvolution", _rule("neuron_deconvolution", True),
         _captum_rule("NeuronDeconvolution", True), where="layer", not_for=_NO_TOKENS),
    Pair("guided_backprop", "guided_backprop", _rule("guided_backprop", False), _captum_rule("GuidedBackprop", False),
         _floor_rule(False), not_for=_NO_TOKENS),
    Pair("deconvolution", "deconvolution", _rule("deconvolution", False), _captum_rule("Deconvolution", False),
         _floor_rule(True), not_for=_NO_TOKENS),
    Pair("guided_grad_cam", "guided_grad_cam", _guided_grad_cam, _captum_guided_grad_cam, where="layer",
         not_for=_CONV),
]
