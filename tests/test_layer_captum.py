"""Differential tests of the layer methods against Captum 0.9 (the oracle).

Models are float64; the remaining differences are Captum's roundings (see
``test_core_captum.py``): float32 quadrature weights and float32 Riemann nodes.
Passing Captum's own rounded nodes and weights to fattr as a callable ``method=``
(:func:`captum_rule`) removes them, so path methods are compared at
``EXACT_REL`` too; the named rules are compared at ``CAPTUM_REL`` (float32 weights:
relative error <= 6e-8 per weight, ~16x headroom), with Captum's trapezoid
``(n-1)/n`` factor taken out.

Cases: a ResNet-style CNN with the layer inside a residual block (by module and
by dotted name, at a conv and at the whole block), a model with two inputs and
extra args (a per-example tensor and a string flag), a layer with a tuple
output, and a layer with two inputs (``attribute_to_layer_input=True`` gives a
tuple). Every method runs on the torch.fx path; ``test_fallback_matches_captum``
repeats the comparisons on a model fx cannot trace.

Deviations from Captum (by design):

* trapezoid rule weights (as in the core), float64 weights;
* ``layer_activation`` keeps the autograd graph (Captum runs under ``no_grad``);
* ``layer_gradient_shap`` draws from ``generator`` in fattr's order, so it is
  compared exactly where the draws cannot matter, and otherwise against Captum's
  layer gradients and activations evaluated at fattr's draws;
* ``layer_feature_ablation`` with ``perturbations_per_eval > 1`` and a per-example
  target: Captum applies the target to the un-tiled batch (it fails); fattr tiles it.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, NamedTuple

import numpy as np
import pytest
import torch
from captum.attr import (InternalInfluence, LayerActivation, LayerConductance, LayerFeatureAblation,
                         LayerGradCam, LayerGradientShap, LayerGradientXActivation, LayerIntegratedGradients)
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import nn

import fattr
from conftest import _init, randn

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")

EXACT_REL = 1e-11
CAPTUM_REL = 1e-6
METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
B = 3


# --------------------------------------------------------------------------- models

class Block(nn.Module):
    """Residual block: conv-bn-softplus-conv-bn, plus the block input, tanh."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.act1 = nn.Softplus()
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.tanh(out + x)


class ResNet(nn.Module):
    """``(B, 2, 5, 5) -> (B, 3)``: stem, two residual blocks, global mean pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.body = nn.Sequential(Block(4), Block(4))
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(torch.tanh(self.stem(x)))
        return self.fc(h.mean(dim=(2, 3)))


class UntraceableResNet(ResNet):
    """The same function with data-dependent control flow (torch.fx cannot trace it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(torch.tanh(self.stem(x)))
        if bool(h.abs().sum() >= 0):  # always true, but decided on the data
            h = h * 1.0
        return self.fc(h.mean(dim=(2, 3)))


class TwoInputs(nn.Module):
    """``f(xa (B, 4), xb (B, 3), scale (B, 1), mode: str) -> (B, 3)``, with a skip around ``mix``."""

    def __init__(self) -> None:
        super().__init__()
        self.enc_a, self.enc_b = nn.Linear(4, 5), nn.Linear(3, 5)
        self.mix = nn.Linear(5, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, xa: torch.Tensor, xb: torch.Tensor, scale: torch.Tensor, mode: str) -> torch.Tensor:
        a = torch.tanh(self.enc_a(xa))
        h = self.mix(a * scale + torch.sigmoid(self.enc_b(xb)))
        if mode == "skip":
            h = h + a
        return self.out(torch.tanh(h))


class Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor):
        h = self.lin(x)
        return torch.tanh(h), torch.sigmoid(h)


class Combine(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 5)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.lin(a * b + a))


class TupleModel(nn.Module):
    """``pair`` returns two tensors; ``combine`` takes two tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Linear(4, 4)
        self.pair = Pair()
        self.combine = Combine()
        self.out = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.pair(torch.tanh(self.pre(x)))
        return self.out(self.combine(a, b))


def _randomise_bn(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g, dtype=torch.float64))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g, dtype=torch.float64))
    return model


def make_resnet(cls: type = ResNet) -> nn.Module:
    return _randomise_bn(_init(cls(), seed=5), seed=6)


class Case(NamedTuple):
    model: nn.Module
    layer: str
    inputs: Any
    baselines: Any
    target: Any
    args: tuple


def _case(name: str, cls: type = ResNet) -> Case:
    if name in ("resnet_conv", "resnet_block"):
        layer = "body.1.conv2" if name == "resnet_conv" else "body.1"
        return Case(make_resnet(cls), layer, randn(B, 2, 5, 5, seed=1), randn(B, 2, 5, 5, seed=2),
                    [0, 2, 1], ())
    if name == "two_inputs":
        return Case(_init(TwoInputs(), seed=7), "mix", (randn(B, 4, seed=3), randn(B, 3, seed=4)),
                    (randn(1, 4, seed=5), 0.5), 1, (randn(B, 1, seed=6), "skip"))
    if name in ("tuple_output", "tuple_input"):
        layer = "pair" if name == "tuple_output" else "combine"
        return Case(_init(TupleModel(), seed=8), layer, randn(B, 4, seed=7), randn(B, 4, seed=8),
                    torch.tensor([2, 2, 0]), ())
    raise KeyError(name)


CASES = ("resnet_conv", "resnet_block", "two_inputs", "tuple_output", "tuple_input")


def _layer(c: Case, by: str) -> Any:
    return c.layer if by == "name" else c.model.get_submodule(c.layer)


def _captum_kwargs(c: Case, target: bool = True) -> dict:
    out = {"additional_forward_args": c.args if c.args else None}
    if target:
        out["target"] = c.target
    return out


def _ours_kwargs(c: Case, target: bool = True) -> dict:
    return {"args": c.args, **({"target": c.target} if target else {})}


def assert_close(actual: Any, expected: Any, rel: float) -> None:
    """Elementwise ``|a - e| <= rel * (|e| + max|e|)``, over matching structures."""
    if isinstance(expected, (tuple, list)):
        assert type(actual) is type(expected) and len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_close(a, e, rel)
        return
    assert isinstance(actual, torch.Tensor), type(actual)
    actual, expected = actual.detach(), expected.detach()
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (actual.shape, expected.shape)
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * max(scale, 1e-300))


def captum_rule(method: str) -> Callable[[int], tuple]:
    """Captum's nodes and weights exactly as it uses them (weights rounded to float32)."""
    step_sizes, alphas = approximation_parameters(method)

    def rule(n: int):
        return torch.tensor(alphas(n), dtype=torch.float64), torch.tensor(step_sizes(n)).float().double()
    return rule


def trapezoid_factor(method: str, n: int) -> float:
    return (n - 1) / n if method == "riemann_trapezoid" else 1.0


def scale(x: Any, k: float) -> Any:
    return tuple(t * k for t in x) if isinstance(x, tuple) else x * k


@contextlib.contextmanager
def global_seed(seed: int):
    state = np.random.get_state()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


# --------------------------------------------------------------------------- activation, grad x act, Grad-CAM

@pytest.mark.parametrize("to_input", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_layer_activation(name: str, to_input: bool) -> None:
    c = _case(name)
    ours = fattr.layer_activation(c.model, c.layer, c.inputs, args=c.args, attribute_to_layer_input=to_input)
    theirs = LayerActivation(c.model, c.model.get_submodule(c.layer)).attribute(
        c.inputs, additional_forward_args=c.args or None, attribute_to_layer_input=to_input)
    assert_close(ours, theirs, EXACT_REL)


def test_layer_activation_list_of_layers() -> None:
    c = _case("resnet_conv")
    names = ["stem", "body.0", "body.1.conv2"]
    ours = fattr.layer_activation(c.model, names, c.inputs)
    theirs = LayerActivation(c.model, [c.model.get_submodule(n) for n in names]).attribute(c.inputs)
    assert_close(ours, theirs, EXACT_REL)


@pytest.mark.parametrize("multiply", [True, False])
@pytest.mark.parametrize("to_input", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_layer_gradient_x_activation(name: str, to_input: bool, multiply: bool) -> None:
    c = _case(name)
    ours = fattr.layer_gradient_x_activation(c.model, c.layer, c.inputs, **_ours_kwargs(c),
                                             multiply_by_inputs=multiply, attribute_to_layer_input=to_input)
    theirs = LayerGradientXActivation(c.model, c.model.get_submodule(c.layer), multiply_by_inputs=multiply
                                      ).attribute(c.inputs, **_captum_kwargs(c), attribute_to_layer_input=to_input)
    assert_close(ours, theirs, EXACT_REL)


@pytest.mark.parametrize("by", ["name", "module"])
def test_layer_gradient_x_activation_list_and_gradient_x_input(by: str) -> None:
    c = _case("resnet_conv")
    layers = [_layer(c._replace(layer=n), by) for n in ("body.0", "body.1.conv2")]
    ours = fattr.layer_gradient_x_activation(c.model, layers, c.inputs, target=c.target)
    theirs = LayerGradientXActivation(c.model, [c.model.get_submodule(n) for n in ("body.0", "body.1.conv2")]
                                      ).attribute(c.inputs, target=c.target)
    assert_close(ours, theirs, EXACT_REL)
    # pnpxai's GradientXInput: a list per layer (as every layer method), or a single layer, or input x gradient
    assert_close(fattr.gradient_x_input(c.model, c.inputs, target=c.target, layer=layers), list(theirs), EXACT_REL)
    assert_close(fattr.gradient_x_input(c.model, c.inputs, target=c.target, layer=layers[1]), theirs[1], EXACT_REL)
    assert_close(fattr.gradient_x_input(c.model, c.inputs, target=c.target),
                 fattr.input_x_gradient(c.model, c.inputs, target=c.target), EXACT_REL)


@pytest.mark.parametrize("summation", [True, False])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("to_input", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_layer_grad_cam(name: str, to_input: bool, relu: bool, summation: bool) -> None:
    c = _case(name)
    ours = fattr.layer_grad_cam(c.model, c.layer, c.inputs, **_ours_kwargs(c), relu_attributions=relu,
                                attr_dim_summation=summation, attribute_to_layer_input=to_input)
    theirs = LayerGradCam(c.model, c.model.get_submodule(c.layer)).attribute(
        c.inputs, **_captum_kwargs(c), relu_attributions=relu, attr_dim_summation=summation,
        attribute_to_layer_input=to_input)
    assert_close(ours, theirs, EXACT_REL)


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "area"])
def test_interpolate_matches_captum(mode: str) -> None:
    from captum.attr import LayerAttribution
    cam = randn(2, 1, 3, 4, seed=9)
    assert_close(fattr.interpolate(cam, (6, 7), mode=mode), LayerAttribution.interpolate(cam, (6, 7), mode),
                 EXACT_REL)


# --------------------------------------------------------------------------- path methods

PATH_CASES = [("resnet_conv", "name"), ("resnet_conv", "module"), ("resnet_block", "name"),
              ("two_inputs", "name"), ("tuple_output", "name"), ("tuple_input", "name")]


@pytest.mark.parametrize("to_input", [False, True])
@pytest.mark.parametrize("multiply", [True, False])
@pytest.mark.parametrize("name,by", PATH_CASES)
def test_layer_integrated_gradients(name: str, by: str, multiply: bool, to_input: bool) -> None:
    c = _case(name)
    ours, delta = fattr.layer_integrated_gradients(
        c.model, _layer(c, by), c.inputs, c.baselines, 7, captum_rule("gausslegendre"), **_ours_kwargs(c),
        multiply_by_inputs=multiply, return_delta=True, attribute_to_layer_input=to_input)
    theirs, their_delta = LayerIntegratedGradients(c.model, c.model.get_submodule(c.layer), multiply_by_inputs=multiply
                                                   ).attribute(c.inputs, c.baselines, **_captum_kwargs(c), n_steps=7,
                                                               return_convergence_delta=True,
                                                               attribute_to_layer_input=to_input)
    assert_close(ours, theirs, EXACT_REL)
    torch.testing.assert_close(delta, their_delta, rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_layer_integrated_gradients_named_rules(method: str) -> None:
    c = _case("resnet_conv")
    ours = fattr.layer_integrated_gradients(c.model, c.layer, c.inputs, c.baselines, 6, method, target=c.target)
    theirs = LayerIntegratedGradients(c.model, c.model.body[1].conv2).attribute(
        c.inputs, c.baselines, target=c.target, n_steps=6, method=method)
    assert_close(scale(ours, trapezoid_factor(method, 6)), theirs, CAPTUM_REL)


@pytest.mark.filterwarnings("ignore:Multiple layers provided")
def test_layer_integrated_gradients_list_of_layers_and_chunks() -> None:
    c = _case("two_inputs")
    layers = ["enc_a", "mix"]
    ours = fattr.layer_integrated_gradients(c.model, layers, c.inputs, c.baselines, 5, captum_rule("gausslegendre"),
                                            **_ours_kwargs(c), chunk_size=2)
    theirs = LayerIntegratedGradients(c.model, [c.model.get_submodule(n) for n in layers]).attribute(
        c.inputs, c.baselines, **_captum_kwargs(c), n_steps=5, internal_batch_size=2 * B)
    assert_close(ours, theirs, EXACT_REL)


@pytest.mark.parametrize("to_input", [False, True])
@pytest.mark.parametrize("name,by", PATH_CASES)
def test_layer_conductance(name: str, by: str, to_input: bool) -> None:
    c = _case(name)
    ours, delta = fattr.layer_conductance(c.model, _layer(c, by), c.inputs, c.baselines, 6,
                                          captum_rule("gausslegendre"), **_ours_kwargs(c), return_delta=True,
                                          attribute_to_layer_input=to_input)
    theirs, their_delta = LayerConductance(c.model, c.model.get_submodule(c.layer)).attribute(
        c.inputs, c.baselines, **_captum_kwargs(c), n_steps=6, return_convergence_delta=True,
        attribute_to_layer_input=to_input)
    assert_close(ours, theirs, EXACT_REL)
    torch.testing.assert_close(delta, their_delta, rtol=0, atol=1e-10)


@pytest.mark.parametrize("chunk_size", [None, 1, 3])
@pytest.mark.parametrize("method", METHODS)
def test_layer_conductance_named_rules_and_chunks(method: str, chunk_size: Any) -> None:
    c = _case("resnet_conv")
    ours = fattr.layer_conductance(c.model, c.layer, c.inputs, c.baselines, 5, method, target=c.target,
                                   chunk_size=chunk_size)
    theirs = LayerConductance(c.model, c.model.body[1].conv2).attribute(
        c.inputs, c.baselines, target=c.target, n_steps=5, method=method,
        internal_batch_size=None if chunk_size is None else max(chunk_size, 2) * B)
    assert_close(ours, theirs, CAPTUM_REL)  # the conductance sum uses nodes only: no trapezoid factor


@pytest.mark.parametrize("to_input", [False, True])
@pytest.mark.parametrize("name,by", PATH_CASES)
def test_internal_influence(name: str, by: str, to_input: bool) -> None:
    c = _case(name)
    ours = fattr.internal_influence(c.model, _layer(c, by), c.inputs, c.baselines, 6, captum_rule("gausslegendre"),
                                    **_ours_kwargs(c), attribute_to_layer_input=to_input)
    theirs = InternalInfluence(c.model, c.model.get_submodule(c.layer)).attribute(
        c.inputs, c.baselines, **_captum_kwargs(c), n_steps=6, attribute_to_layer_input=to_input)
    assert_close(ours, theirs, EXACT_REL)


@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("method", METHODS)
def test_internal_influence_named_rules_and_chunks(method: str, chunk_size: Any) -> None:
    c = _case("resnet_block")
    ours = fattr.internal_influence(c.model, c.layer, c.inputs, c.baselines, 6, method, target=c.target,
                                    chunk_size=chunk_size)
    theirs = InternalInfluence(c.model, c.model.body[1]).attribute(
        c.inputs, c.baselines, target=c.target, n_steps=6, method=method,
        internal_batch_size=None if chunk_size is None else chunk_size * B)
    assert_close(scale(ours, trapezoid_factor(method, 6)), theirs, CAPTUM_REL)


# --------------------------------------------------------------------------- GradientSHAP

class LinearTail(nn.Module):
    """The tail after ``layer`` is linear, so the layer gradient does not depend on the path point."""

    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Linear(4, 6)
        self.layer = nn.Linear(6, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.layer(torch.tanh(self.pre(x))))


@pytest.mark.parametrize("multiply", [True, False])
def test_layer_gradient_shap_exact_where_draws_do_not_matter(multiply: bool) -> None:
    model = _init(LinearTail(), seed=11)
    x, base = randn(B, 4, seed=12), randn(1, 4, seed=13)
    ours, delta = fattr.layer_gradient_shap(model, "layer", x, base, n_samples=4, target=[0, 1, 2],
                                            generator=torch.Generator().manual_seed(0), multiply_by_inputs=multiply,
                                            return_delta=True)
    with global_seed(0):
        theirs, their_delta = LayerGradientShap(model, model.layer, multiply_by_inputs=multiply).attribute(
            x, base, n_samples=4, target=[0, 1, 2], return_convergence_delta=True)
    assert_close(ours, theirs, EXACT_REL)
    if multiply:  # completeness holds exactly for a linear tail; Captum's delta has the same layout
        torch.testing.assert_close(delta, their_delta, rtol=0, atol=1e-10)


def _replayed_draws(xs: tuple, dists: tuple, n_samples: int, stdev: float, seed: int):
    """fattr's draws, in its order (as fattr.gradient_shap makes them): noise per input, rows, alphas."""
    g = torch.Generator().manual_seed(seed)
    noisy = tuple(x + stdev * torch.randn((n_samples,) + tuple(x.shape), generator=g, dtype=x.dtype) for x in xs)
    rows = torch.randint(dists[0].shape[0], (n_samples, xs[0].shape[0]), generator=g)
    alpha = torch.rand((n_samples, xs[0].shape[0]), generator=g, dtype=torch.float64)
    return noisy, tuple(d[rows] for d in dists), alpha


def _add(a: Any, b: Any) -> Any:
    if a is None:
        return b
    return tuple(x + y for x, y in zip(a, b, strict=True)) if isinstance(b, tuple) else a + b


@pytest.mark.parametrize("to_input", [False, True])
@pytest.mark.parametrize("name", ["resnet_conv", "two_inputs", "tuple_output"])
def test_layer_gradient_shap_against_captum_building_blocks(name: str, to_input: bool) -> None:
    """Captum's layer gradients and activations, evaluated at fattr's draws, averaged by hand."""
    c = _case(name)
    xs = c.inputs if isinstance(c.inputs, tuple) else (c.inputs,)
    dists = tuple(torch.cat([x[:1] * 0.5, randn(*x.shape, seed=30 + i)]) for i, x in enumerate(xs))
    n_samples, stdev = 3, 0.2
    ours = fattr.layer_gradient_shap(c.model, c.layer, c.inputs, dists if len(xs) > 1 else dists[0], n_samples,
                                     stdev, **_ours_kwargs(c), generator=torch.Generator().manual_seed(4),
                                     attribute_to_layer_input=to_input)
    noisy, starts, alpha = _replayed_draws(xs, dists, n_samples, stdev, seed=4)
    module = c.model.get_submodule(c.layer)
    grad_at = LayerGradientXActivation(c.model, module, multiply_by_inputs=False)
    act_at = LayerActivation(c.model, module)
    kw = {"additional_forward_args": c.args or None, "attribute_to_layer_input": to_input}
    total = None
    for s in range(n_samples):
        point = tuple(st[s] + alpha[s].reshape(-1, *[1] * (x.dim() - 1)) * (nz[s] - st[s])
                      for st, nz, x in zip(starts, noisy, xs, strict=True))
        g = grad_at.attribute(point, target=c.target, **kw)
        a_n = act_at.attribute(tuple(nz[s] for nz in noisy), **kw)
        a_s = act_at.attribute(tuple(st[s] for st in starts), **kw)
        term = (tuple(gi * (ni - si) for gi, ni, si in zip(g, a_n, a_s, strict=True)) if isinstance(g, tuple)
                else g * (a_n - a_s))
        total = _add(total, term)
    assert_close(ours, scale(total, 1 / n_samples), EXACT_REL)


# --------------------------------------------------------------------------- feature ablation

@pytest.mark.parametrize("ppe", [1, 3])
@pytest.mark.parametrize("to_input", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_layer_feature_ablation(name: str, to_input: bool, ppe: int) -> None:
    c = _case(name)
    target = 1 if ppe > 1 else c.target  # Captum cannot tile a per-example target (module docstring)
    ours = fattr.layer_feature_ablation(c.model, c.layer, c.inputs, target=target, args=c.args,
                                        perturbations_per_eval=ppe, attribute_to_layer_input=to_input)
    theirs = LayerFeatureAblation(c.model, c.model.get_submodule(c.layer)).attribute(
        c.inputs, target=target, additional_forward_args=c.args or None, perturbations_per_eval=ppe,
        attribute_to_layer_input=to_input)
    assert_close(ours, theirs, EXACT_REL)


@pytest.mark.parametrize("ppe", [1, 4])
@pytest.mark.parametrize("baselines", ["scalar", "tensor"])
def test_layer_feature_ablation_masks_and_baselines(baselines: str, ppe: int) -> None:
    c = _case("resnet_conv")
    mask = (torch.arange(25).reshape(1, 1, 5, 5) // 5).expand(1, 4, 5, 5) + 5 * torch.tensor([0, 0, 1, 1]).reshape(
        1, 4, 1, 1)  # rows of each pair of channels: 10 groups
    layer_baselines = 0.25 if baselines == "scalar" else randn(1, 4, 5, 5, seed=40)
    ours = fattr.layer_feature_ablation(c.model, c.layer, c.inputs, layer_baselines, target=2, layer_mask=mask,
                                        perturbations_per_eval=ppe)
    theirs = LayerFeatureAblation(c.model, c.model.body[1].conv2).attribute(
        c.inputs, layer_baselines, target=2, layer_mask=mask, perturbations_per_eval=ppe)
    assert_close(ours, theirs, EXACT_REL)


def test_layer_feature_ablation_tuple_activation_masks() -> None:
    c = _case("tuple_output")
    masks = (torch.tensor([[0, 0, 1, 1, 2]]), torch.tensor([[2, 3, 3, 4, 4]]))  # group 2 spans both tensors
    ours = fattr.layer_feature_ablation(c.model, c.layer, c.inputs, (0.1, -0.2), target=c.target, layer_mask=masks)
    theirs = LayerFeatureAblation(c.model, c.model.pair).attribute(c.inputs, (0.1, -0.2), target=c.target,
                                                                   layer_mask=masks)
    assert_close(ours, theirs, EXACT_REL)


# --------------------------------------------------------------------------- the fallback path

def test_fallback_matches_captum() -> None:
    """On a model fx cannot trace, the substitution path gives Captum's results too."""
    c = _case("resnet_conv", UntraceableResNet)
    _, rest = fattr.split(c.model, c.layer)[0](c.inputs)
    assert not rest[-1].traced
    module = c.model.body[1].conv2
    assert_close(fattr.layer_integrated_gradients(c.model, c.layer, c.inputs, c.baselines, 5,
                                                  captum_rule("gausslegendre"), target=c.target),
                 LayerIntegratedGradients(c.model, module).attribute(c.inputs, c.baselines, target=c.target,
                                                                      n_steps=5), EXACT_REL)
    assert_close(fattr.layer_conductance(c.model, c.layer, c.inputs, c.baselines, 4, target=c.target,
                                         attribute_to_layer_input=True),
                 LayerConductance(c.model, module).attribute(c.inputs, c.baselines, target=c.target, n_steps=4,
                                                             attribute_to_layer_input=True), CAPTUM_REL)
    assert_close(fattr.layer_feature_ablation(c.model, c.layer, c.inputs, target=1, perturbations_per_eval=7),
                 LayerFeatureAblation(c.model, module).attribute(c.inputs, target=1, perturbations_per_eval=7),
                 EXACT_REL)
    assert_close(fattr.layer_grad_cam(c.model, c.layer, c.inputs, target=c.target),
                 LayerGradCam(c.model, module).attribute(c.inputs, target=c.target), EXACT_REL)
