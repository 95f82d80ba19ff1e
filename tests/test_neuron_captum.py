"""Neuron methods against Captum 0.9, on an MLP, a ReLU CNN, a two-input model with extra args and a
model with 3-D outputs (tuple targets), for every selector form and ``attribute_to_neuron_input``.

Deterministic methods are compared elementwise in float64. Path methods get Captum's own rounded
nodes and weights as a callable ``method=`` (:func:`captum_rule`), so the comparison is exact up
to rounding (``EXACT_REL``); named rules are compared at ``CAPTUM_REL`` (Captum keeps its weights
in float32). GradientSHAP draws from Captum's global RNG, so it is compared where every draw gives
the same value (one baseline row, a neuron linear in the inputs) and through its expectation.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import pytest
import torch
from captum.attr import (NeuronConductance, NeuronDeconvolution, NeuronDeepLift, NeuronDeepLiftShap,
                         NeuronGradient, NeuronGradientShap, NeuronGuidedBackprop, NeuronIntegratedGradients)
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import nn

import fattr
from conftest import _init, make_3d, make_mlp, randn

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

EXACT_REL = 1e-10
CAPTUM_REL = 1e-6
B = 3


class ReluCNN(nn.Module):
    """``(B, 2, 8, 8) -> (B, 4)``: conv, ReLU, 1x1 conv, max pool, conv, ReLU, linear.

    Each nonlinearity is its own module, used once, with a linear layer between any two of them: where
    Captum's DeepLift hooks are right (see test_deeplift_captum.py for where they are not).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(2, 4, 3, padding=1), nn.ReLU()
        self.mix, self.pool = nn.Conv2d(4, 4, 1), nn.MaxPool2d(2)
        self.conv2, self.relu2 = nn.Conv2d(4, 6, 3), nn.ReLU()
        self.fc = nn.Linear(6 * 2 * 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.mix(self.relu1(self.conv1(x))))
        return self.fc(self.relu2(self.conv2(h)).flatten(1))


class TwoInputs(nn.Module):
    """``f(x1 (B, 4), x2 (B, 2, 3), scale (B, 1), mode: str, gain: float) -> (B, 3)``; ``act`` sees both inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 5), nn.Linear(6, 5)
        self.act, self.out = nn.ReLU(), nn.Linear(5, 3)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, scale: torch.Tensor, mode: str = "plain",
                gain: float = 1.0) -> torch.Tensor:
        h = self.act(self.a(x1) + self.b(x2.flatten(1)) * scale)
        return gain * self.out(2 * h if mode == "double" else h)


class Case(NamedTuple):
    model: nn.Module
    x: Any
    layer: str
    selector: Any
    args: tuple = ()
    target: Any = None
    baseline: Any = None


def _cases() -> dict:
    cnn = _init(ReluCNN(), 5)
    two = _init(TwoInputs(), 4)
    xs2 = (randn(B, 4, seed=3), randn(B, 2, 3, seed=4))
    args2 = (randn(B, 1, seed=5), "double", 2.0)
    return {
        "mlp-int": Case(make_mlp(), randn(B, 5, seed=1), "1", 3, target=2),
        "mlp-callable": Case(make_mlp(), randn(B, 5, seed=1), "3", lambda a: a[:, 1] - 2 * a[:, 4], target=0),
        "cnn-tuple": Case(cnn, randn(B, 2, 8, 8, seed=2), "relu2", (4, 0, 1), target=3,
                          baseline=0.1 * randn(1, 2, 8, 8, seed=6)),
        "cnn-slices": Case(cnn, randn(B, 2, 8, 8, seed=2), "conv2", (slice(2, 5), 1), target=[0, 3, 1]),
        "two-input-args": Case(two, xs2, "act", 1, args=args2, target=[2, 0, 1],
                               baseline=(0.2, randn(1, 2, 3, seed=7))),
        "3d-output": Case(make_3d(), randn(B, 5, seed=8), "lin", (slice(0, 12, 3),), target=(1, 2)),
        "3d-output-neuron": Case(make_3d(), randn(B, 5, seed=8), "lin", 4, target=[(1, 0), (0, 2), (1, 0)]),
    }


CASES = _cases()
NAMES = sorted(CASES)


def close(actual: Any, expected: Any, rel: float) -> None:
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            close(a, e, rel)
        return
    actual, expected = actual.detach(), expected.detach()
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert expected.abs().max() > 0, "a vacuous comparison: pick a neuron that is active"
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * max(float(expected.abs().max()), 1e-300))


def captum_rule(method: str) -> Callable[[int], tuple]:
    step_sizes, alphas = approximation_parameters(method)
    return lambda n: (torch.tensor(alphas(n), dtype=torch.float64), torch.tensor(step_sizes(n)).float().double())


def _module(c: Case) -> nn.Module:
    return c.model.get_submodule(c.layer)


def _extra(c: Case) -> dict:
    return {"additional_forward_args": c.args if c.args else None}


@pytest.mark.parametrize("to_input", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_neuron_gradient(name: str, to_input: bool) -> None:
    c = CASES[name]
    theirs = NeuronGradient(c.model, _module(c)).attribute(c.x, c.selector, **_extra(c),
                                                           attribute_to_neuron_input=to_input)
    ours = fattr.neuron_gradient(c.model, c.layer, c.x, neuron_selector=c.selector, args=c.args,
                                 attribute_to_neuron_input=to_input)
    close(ours, theirs, EXACT_REL)


@pytest.mark.parametrize("multiply", [True, False])
@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
@pytest.mark.parametrize("name", NAMES)
def test_neuron_integrated_gradients(name: str, method: str, multiply: bool) -> None:
    c = CASES[name]
    theirs = NeuronIntegratedGradients(c.model, _module(c), multiply_by_inputs=multiply).attribute(
        c.x, c.selector, c.baseline, **_extra(c), n_steps=20, method=method)
    exact = fattr.neuron_integrated_gradients(c.model, c.layer, c.x, c.baseline, 20, captum_rule(method),
                                              neuron_selector=c.selector, args=c.args, chunk_size=7,
                                              multiply_by_inputs=multiply)
    close(exact, theirs, EXACT_REL)
    if method == "gausslegendre":  # the named rule: Captum's float32 weights
        named = fattr.neuron_integrated_gradients(c.model, c.layer, c.x, c.baseline, 20, method,
                                                  neuron_selector=c.selector, args=c.args,
                                                  multiply_by_inputs=multiply)
        close(named, theirs, CAPTUM_REL)


# one neuron each: for regions and callables fattr sums the neurons' conductances while Captum multiplies
# the summed gradients (test_neuron_conductance_of_a_region_is_the_sum_of_its_neurons)
SINGLE = [n for n in NAMES if not callable(CASES[n].selector)
          and not any(isinstance(i, slice) for i in (CASES[n].selector if isinstance(CASES[n].selector, tuple) else ()))]


@pytest.mark.parametrize("method", ["riemann_trapezoid", "gausslegendre", "riemann_left"])
@pytest.mark.parametrize("name", SINGLE)
def test_neuron_conductance(name: str, method: str) -> None:
    c = CASES[name]
    theirs = NeuronConductance(c.model, _module(c)).attribute(c.x, c.selector, c.baseline, target=c.target,
                                                             **_extra(c), n_steps=12, method=method)
    ours = fattr.neuron_conductance(c.model, c.layer, c.x, c.baseline, 12, captum_rule(method),
                                    neuron_selector=c.selector, target=c.target, args=c.args, chunk_size=5)
    close(ours, theirs, EXACT_REL)
    default = fattr.neuron_conductance(c.model, c.layer, c.x, c.baseline, 12, method,
                                       neuron_selector=c.selector, target=c.target, args=c.args)
    factor = 11 / 12 if method == "riemann_trapezoid" else 1.0  # Captum's trapezoid weights sum to (n-1)/n
    scaled = tuple(t * factor for t in default) if isinstance(default, tuple) else default * factor
    close(scaled, theirs, CAPTUM_REL)


def test_neuron_conductance_of_a_region_is_the_sum_of_its_neurons() -> None:
    c = CASES["cnn-slices"]
    region = fattr.neuron_conductance(c.model, c.layer, c.x, neuron_selector=(slice(2, 5), 1, 1), target=1)
    single = sum(fattr.neuron_conductance(c.model, c.layer, c.x, neuron_selector=(j, 1, 1), target=1)
                 for j in range(2, 5))
    close(region, single, EXACT_REL)
    theirs = NeuronConductance(c.model, _module(c)).attribute(c.x, (2, 1, 1), target=1, method="gausslegendre")
    ours = fattr.neuron_conductance(c.model, c.layer, c.x, neuron_selector=(2, 1, 1), target=1,
                                    method="gausslegendre")
    close(ours, theirs, CAPTUM_REL)


@pytest.mark.parametrize("multiply", [True, False])
@pytest.mark.parametrize("name", ["mlp-int", "cnn-tuple", "cnn-slices", "two-input-args"])
def test_neuron_deeplift_and_deeplift_shap(name: str, multiply: bool) -> None:
    c = CASES[name]
    theirs = NeuronDeepLift(c.model, _module(c), multiply_by_inputs=multiply).attribute(
        c.x, c.selector, c.baseline, **_extra(c))
    ours = fattr.neuron_deeplift(c.model, c.layer, c.x, c.baseline, neuron_selector=c.selector, args=c.args,
                                 multiply_by_inputs=multiply)
    close(ours, theirs, EXACT_REL)
    xs = c.x if isinstance(c.x, tuple) else (c.x,)
    dist = tuple(0.3 * randn(4, *x.shape[1:], seed=20 + i) for i, x in enumerate(xs))
    dist_arg = dist if isinstance(c.x, tuple) else dist[0]
    theirs = NeuronDeepLiftShap(c.model, _module(c), multiply_by_inputs=multiply).attribute(
        c.x, c.selector, dist_arg, **_extra(c))
    ours = fattr.neuron_deeplift_shap(c.model, c.layer, c.x, dist_arg, neuron_selector=c.selector, args=c.args,
                                      multiply_by_inputs=multiply)
    close(ours, theirs, EXACT_REL)


@pytest.mark.parametrize("to_input", [False, True])
@pytest.mark.parametrize("name", ["cnn-tuple", "cnn-slices", "mlp-int"])
def test_neuron_guided_backprop_and_deconvolution(name: str, to_input: bool) -> None:
    c = CASES[name]
    for ours_fn, cls in [(fattr.neuron_guided_backprop, NeuronGuidedBackprop),
                         (fattr.neuron_deconvolution, NeuronDeconvolution)]:
        theirs = cls(c.model, _module(c)).attribute(c.x, c.selector, **_extra(c), attribute_to_neuron_input=to_input)
        ours = ours_fn(c.model, c.layer, c.x, neuron_selector=c.selector, args=c.args,
                       attribute_to_neuron_input=to_input)
        close(ours, theirs, EXACT_REL)


@pytest.mark.parametrize("name", ["cnn-tuple", "two-input-args"])
def test_neuron_gradient_shap_where_every_draw_agrees(name: str) -> None:
    """A neuron of the first layer (linear in the inputs; for the two-input model, a ReLU neuron active
    on the whole path), one baseline row, no noise: every sample's term is the same, whatever
    Captum's global RNG draws."""
    c = CASES[name]
    layer = "conv1" if name == "cnn-tuple" else "act"
    to_input = name == "two-input-args"  # the ReLU's input: linear in both inputs
    selector = (1, 3, 3) if name == "cnn-tuple" else c.selector
    xs = c.x if isinstance(c.x, tuple) else (c.x,)
    base = tuple(0.5 * randn(1, *x.shape[1:], seed=30 + i) for i, x in enumerate(xs))
    base_arg = base if isinstance(c.x, tuple) else base[0]
    theirs = NeuronGradientShap(c.model, c.model.get_submodule(layer)).attribute(
        c.x, selector, base_arg, n_samples=4, **_extra(c), attribute_to_neuron_input=to_input)
    ours = fattr.neuron_gradient_shap(c.model, layer, c.x, base_arg, n_samples=4, neuron_selector=selector,
                                      args=c.args, generator=torch.Generator().manual_seed(0),
                                      attribute_to_neuron_input=to_input)
    close(ours, theirs, EXACT_REL)


def test_neuron_gradient_shap_expectation_is_neuron_integrated_gradients() -> None:
    """One baseline row, no noise: GradientSHAP is IG with a uniformly drawn step, so its mean over many
    samples approaches neuron IG (Monte-Carlo error ~ 1/sqrt(n_samples))."""
    c = CASES["mlp-int"]
    base = 0.5 * randn(1, 5, seed=31)
    ig = fattr.neuron_integrated_gradients(c.model, c.layer, c.x, base, 64, neuron_selector=c.selector)
    gs = fattr.neuron_gradient_shap(c.model, c.layer, c.x, base, n_samples=4000, neuron_selector=c.selector,
                                    generator=torch.Generator().manual_seed(1))
    assert float(ig.abs().max()) > 0.1
    err = float((gs - ig).abs().max() / ig.abs().max())
    assert err < 0.03, err
