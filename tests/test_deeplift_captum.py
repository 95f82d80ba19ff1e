"""DeepLift methods against Captum 0.9: equal where Captum is right, exact where it is not.

All models are float64. Where Captum's hooks see every nonlinearity correctly, the two
implementations compute the same multipliers with the same operations up to order, so
they agree to float64 rounding: ``REL = 1e-10`` relative to the largest attribution
(results are sums over <= a few hundred products; observed differences ~1e-17).

Captum is right when every nonlinearity is its own ``nn.Module`` instance, used once, and
no two of them are adjacent (a Linear or Conv in between): its full backward hooks do not
chain, so in ``ReLU -> MaxPool2d`` or ``ReLU -> Tanh`` the first module's hook receives the
plain gradient of the second instead of the rule's multipliers (Captum issue #1104). The
tests at the end show Captum's delta failing where fattr's is exact: a reused ReLU module,
``torch.relu`` called as a function, adjacent nonlinearities, overlapping max-pool windows
(``max_unpool`` keeps one of the overlapping contributions), softmax normalised over the
whole batch, and LayerDeepLift on a nonlinearity's input.
"""
from __future__ import annotations

from typing import Any

import pytest
import torch
from captum.attr import DeepLift, DeepLiftShap, LayerDeepLift, LayerDeepLiftShap
from torch import nn

import fattr
from conftest import _init, completeness_gap, output_change, randn

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")

REL = 1e-10
EXACT = 1e-12  # |delta| bound for fattr on these O(1) float64 models
B = 4
TARGET = [0, 2, 1, 2]


def complete(model: nn.Module, inputs: Any, baselines: Any, attr: Any, delta: torch.Tensor, target: Any,
             args: Any = ()) -> None:
    """The attributions sum to the output change computed here (not by fattr), and fattr's delta is that gap."""
    gap = completeness_gap(model, inputs, baselines, attr, target, args)
    assert float(gap.abs().max()) < EXACT
    torch.testing.assert_close(delta.detach(), gap, rtol=0, atol=EXACT)


def close(actual: Any, expected: Any, rel: float = REL) -> None:
    if isinstance(expected, (tuple, list)):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            close(a, e, rel)
        return
    actual, expected = actual.detach(), expected.detach()
    assert actual.shape == expected.shape
    scale = max(float(expected.abs().max()), 1e-300)
    torch.testing.assert_close(actual, expected, rtol=0, atol=rel * scale)


class Every(nn.Module):
    """One module per nonlinearity Captum supports, each used once, a Linear between any two."""

    def __init__(self, n_in: int = 5, w: int = 7, n_out: int = 3):
        super().__init__()
        acts = [nn.ReLU(), nn.ELU(0.7), nn.LeakyReLU(0.2), nn.Sigmoid(), nn.Tanh(), nn.Softplus(beta=1.5)]
        layers = [nn.Linear(n_in, w)]
        for act in acts:
            layers += [act, nn.Linear(w, w)]
        layers[-1] = nn.Linear(w, n_out)
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 6), nn.Linear(3, 6)
        self.act1, self.act2 = nn.Tanh(), nn.ReLU()
        self.mid, self.out = nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x, y, scale):
        return self.out(self.act2(self.mid(self.act1(self.a(x) + self.b(y))) * scale))


def every(seed: int = 0) -> nn.Module:
    return _init(Every(), seed)


def cnn(pool: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """``conv -> pool -> conv -> ReLU -> flatten -> linear`` for inputs shaped like ``x``."""
    conv = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[x.dim()]
    body = nn.Sequential(conv(2, 3, 3, padding=1), pool, conv(3, 3, 2), nn.ReLU(), nn.Flatten())
    with torch.no_grad():
        width = body(x.float()).shape[1]
    return _init(nn.Sequential(*body, nn.Linear(width, 3)), seed)


# ------------------------------------------------------------------ where Captum is right

@pytest.mark.parametrize("multiply_by_inputs", [True, False])
def test_deeplift_matches_captum_on_every_supported_module(multiply_by_inputs):
    model, x, b = every(), randn(B, 5, seed=1), randn(B, 5, seed=2)
    attr, delta = fattr.deeplift(model, x, b, target=TARGET, multiply_by_inputs=multiply_by_inputs,
                                 return_delta=True)
    ref, ref_delta = DeepLift(model, multiply_by_inputs=multiply_by_inputs).attribute(
        x, b, target=TARGET, return_convergence_delta=True)
    close(attr, ref)
    close(delta, ref_delta, rel=1.0)  # both are rounding noise; the same sign of scale
    if multiply_by_inputs:
        complete(model, x, b, attr, delta, TARGET)


def test_deeplift_matches_captum_with_tuple_inputs_args_and_a_batch_one_baseline():
    model = _init(TwoInputs(), 3)
    x, y, scale = randn(B, 5, seed=1), randn(B, 3, seed=2), randn(B, 1, seed=3)
    bx, by = randn(1, 5, seed=4), 0.5
    attr, delta = fattr.deeplift(model, (x, y), (bx, by), target=1, args=(scale,), return_delta=True)
    ref = DeepLift(model).attribute((x, y), (bx, by), target=1, additional_forward_args=(scale,))
    close(attr, ref)
    complete(model, (x, y), (bx, by), attr, delta, 1, (scale,))


def test_sigmoid_tanh_net_with_a_scalar_output():
    model = _init(nn.Sequential(nn.Linear(4, 6), nn.Sigmoid(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 1)), 5)
    x, b = randn(B, 4, seed=1), randn(B, 4, seed=2)
    close(fattr.deeplift(model, x, b), DeepLift(model).attribute(x, b))


@pytest.mark.parametrize("dims,pool", [(1, nn.MaxPool1d(2)), (2, nn.MaxPool2d(2)), (2, nn.MaxPool2d(2, 2, 1)),
                                       (3, nn.MaxPool3d(2))], ids=["1d", "2d", "2d-pad", "3d"])
def test_cnn_with_max_pooling(dims, pool):
    shape = {1: (B, 2, 8), 2: (B, 2, 6, 6), 3: (2, 2, 4, 4, 4)}[dims]
    x, b = randn(*shape, seed=1), randn(*shape, seed=2)
    model = cnn(pool, x)
    attr, delta = fattr.deeplift(model, x, b, target=1, return_delta=True)
    close(attr, DeepLift(model).attribute(x, b, target=1))
    complete(model, x, b, attr, delta, 1)


@pytest.mark.parametrize("n_params", [1, 2, 3])
def test_custom_attribution_func(n_params):
    funcs = {1: lambda m: tuple(2 * t for t in m),
             2: lambda m, x: tuple(t * v ** 2 for t, v in zip(m, x, strict=True)),
             3: lambda m, x, b: tuple(t * (v - w).abs() for t, v, w in zip(m, x, b, strict=True))}
    model, x, b = every(), randn(B, 5, seed=1), randn(B, 5, seed=2)
    attr, delta = fattr.deeplift(model, x, b, target=TARGET, custom_attribution_func=funcs[n_params],
                                 return_delta=True)
    ref, ref_delta = DeepLift(model).attribute(x, b, target=TARGET, custom_attribution_func=funcs[n_params],
                                               return_convergence_delta=True)
    close(attr, ref)
    close(delta, ref_delta)  # the delta of the custom attributions, as Captum defines it


def test_deeplift_shap_attributions_and_delta_order():
    model, x, dist = every(), randn(3, 5, seed=1), randn(5, 5, seed=2)
    attr, delta = fattr.deeplift_shap(model, x, dist, target=[0, 1, 2], return_delta=True)
    ref, ref_delta = DeepLiftShap(model).attribute(x, dist, target=[0, 1, 2], return_convergence_delta=True)
    close(attr, ref)
    assert delta.shape == ref_delta.shape == (3 * 5,)
    # the order: entry i * M + j is example i against baseline j, the gap of that pair computed here
    for i in range(3):
        for j in range(5):
            a = fattr.deeplift(model, x[i:i + 1], dist[j:j + 1], target=[i])
            complete(model, x[i:i + 1], dist[j:j + 1], a, delta[i * 5 + j:i * 5 + j + 1], [i])


@pytest.mark.parametrize("n_params", [1, 3])
def test_deeplift_shap_custom_function_and_local_attributions(n_params):
    model, x, dist = every(), randn(3, 5, seed=1), randn(4, 5, seed=2)
    func = (lambda m: tuple(3 * t for t in m)) if n_params == 1 else \
        (lambda m, x, b: tuple(t * (v + w) for t, v, w in zip(m, x, b, strict=True)))
    close(fattr.deeplift_shap(model, x, dist, target=1, custom_attribution_func=func),
          DeepLiftShap(model).attribute(x, dist, target=1, custom_attribution_func=func))
    close(fattr.deeplift_shap(model, x, dist, target=1, multiply_by_inputs=False),
          DeepLiftShap(model, multiply_by_inputs=False).attribute(x, dist, target=1))


# layer names of Every: net.0 Linear, net.1 ReLU, net.2 Linear, net.3 ELU, ..., net.12 Linear
@pytest.mark.parametrize("layer,to_input", [("net.1", False), ("net.4", False), ("net.6", False),
                                            ("net.6", True), ("net.12", True), ("net.9", False)])
def test_layer_deeplift(layer, to_input):
    model, x, b = every(), randn(B, 5, seed=1), randn(B, 5, seed=2)
    module = model.get_submodule(layer)
    attr, delta = fattr.layer_deeplift(model, layer, x, b, target=TARGET, return_delta=True,
                                       attribute_to_layer_input=to_input)
    ref, ref_delta = LayerDeepLift(model, module).attribute(x, b, target=TARGET, return_convergence_delta=True,
                                                            attribute_to_layer_input=to_input)
    close(attr, ref[0] if isinstance(ref, tuple) else ref)
    complete(model, x, b, attr, delta, TARGET)
    assert ref_delta.abs().max() < 1e-10
    local = fattr.layer_deeplift(model, module, x, b, target=TARGET, multiply_by_inputs=False,
                                 attribute_to_layer_input=to_input)
    ref = LayerDeepLift(model, module, multiply_by_inputs=False).attribute(x, b, target=TARGET,
                                                                          attribute_to_layer_input=to_input)
    close(local, ref[0] if isinstance(ref, tuple) else ref)


@pytest.mark.parametrize("to_input", [False, True])
def test_layer_deeplift_shap_and_custom_function(to_input):
    model, x, dist = every(), randn(3, 5, seed=1), randn(4, 5, seed=2)
    func = lambda m, a, r: tuple(t * (u - v) ** 2 for t, u, v in zip(m, a, r, strict=True))  # noqa: E731
    attr, delta = fattr.layer_deeplift_shap(model, "net.6", x, dist, target=[2, 0, 1], return_delta=True,
                                            attribute_to_layer_input=to_input)
    ref, ref_delta = LayerDeepLiftShap(model, model.net[6]).attribute(
        x, dist, target=[2, 0, 1], return_convergence_delta=True, attribute_to_layer_input=to_input)
    close(attr, ref[0] if isinstance(ref, tuple) else ref)
    assert delta.shape == ref_delta.shape == (12,)
    # computed here: complete on average over the baselines, and delta's pairs average to that gap
    changes = torch.stack([output_change(model, x, dist[j:j + 1], [2, 0, 1]) for j in range(4)], 1)  # (3, 4)
    gap = attr.detach().reshape(3, -1).sum(1) - changes.mean(1)
    assert float(gap.abs().max()) < EXACT
    torch.testing.assert_close(delta.detach().reshape(3, 4).mean(1), gap, rtol=0, atol=EXACT)
    got = fattr.layer_deeplift(model, "net.6", x, dist[:1], target=[2, 0, 1], custom_attribution_func=func,
                               attribute_to_layer_input=to_input)
    ref = LayerDeepLift(model, model.net[6]).attribute(x, dist[:1], target=[2, 0, 1], custom_attribution_func=func,
                                                       attribute_to_layer_input=to_input)
    close(got, ref[0] if isinstance(ref, tuple) else ref)


def test_softmax_matches_captum_for_one_example():
    model = _init(nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4), nn.Softmax(dim=1)), 4)
    x, b = randn(1, 5, seed=1), randn(1, 5, seed=2)
    close(fattr.deeplift(model, x, b, target=2), DeepLift(model).attribute(x, b, target=2))


# ------------------------------------------------------------------ where Captum is wrong

def _captum_delta(model: nn.Module, x: torch.Tensor, b: torch.Tensor, target: Any = 1) -> torch.Tensor:
    return DeepLift(model).attribute(x, b, target=target, return_convergence_delta=True)[1]


class Reused(nn.Module):
    """One ReLU module applied twice, and ``torch.relu`` / ``F.relu`` / ``Tensor.relu`` as functions."""

    def __init__(self, functional: bool):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(5, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        self.relu = nn.ReLU()
        self.functional = functional

    def forward(self, x):
        if self.functional:
            return self.c(torch.nn.functional.relu(self.b(torch.relu(self.a(x)))).relu())
        return self.c(self.relu(self.b(self.relu(self.a(x)))))


@pytest.mark.parametrize("functional", [False, True], ids=["reused-module", "functions"])
def test_reused_module_and_functional_relu_where_captum_fails(functional):
    model, x, b = _init(Reused(functional), 1), randn(B, 5, seed=1), randn(B, 5, seed=2)
    attr, delta = fattr.deeplift(model, x, b, target=1, return_delta=True)
    complete(model, x, b, attr, delta, 1)
    # Captum: a reused module keeps only its last call's input/output (here its backward hook then
    # raises; with one module use and one function call it returns wrong numbers), a function is not hooked
    if functional:
        assert _captum_delta(model, x, b).abs().max() > 1e-3
    else:
        with pytest.raises(RuntimeError, match="used more than once"):
            _captum_delta(model, x, b)


@pytest.mark.parametrize("layers", [
    lambda: [nn.Linear(5, 8), nn.ReLU(), nn.Tanh(), nn.Linear(8, 3)],
    lambda: [nn.Unflatten(1, (1, 5)), nn.Conv1d(1, 3, 2, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(),
             nn.Linear(9, 3)],
    lambda: [nn.Unflatten(1, (1, 5)), nn.Conv1d(1, 3, 2, padding=1), nn.MaxPool1d(2), nn.Sigmoid(), nn.Flatten(),
             nn.Linear(9, 3)],
], ids=["relu-tanh", "relu-maxpool", "maxpool-sigmoid"])
def test_adjacent_nonlinear_modules_where_captum_fails(layers):
    model, x, b = _init(nn.Sequential(*layers()), 2), randn(B, 5, seed=1), randn(B, 5, seed=2)
    attr, delta = fattr.deeplift(model, x, b, target=1, return_delta=True)
    complete(model, x, b, attr, delta, 1)
    assert _captum_delta(model, x, b).abs().max() > 1e-3


def test_overlapping_max_pool_windows_where_captum_fails():
    x, b = randn(B, 2, 7, 7, seed=1), randn(B, 2, 7, 7, seed=2)
    model = cnn(nn.MaxPool2d(3, 2), x)
    attr, delta = fattr.deeplift(model, x, b, target=1, return_delta=True)
    complete(model, x, b, attr, delta, 1)
    assert _captum_delta(model, x, b).abs().max() > 1e-3


def test_softmax_attributions_do_not_depend_on_the_other_examples_unlike_captum():
    model = _init(nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4), nn.Softmax(dim=1)), 4)
    x, b = randn(3, 5, seed=1), randn(3, 5, seed=2)
    batch = fattr.deeplift(model, x, b, target=2)
    for i in range(3):
        close(batch[i:i + 1], fattr.deeplift(model, x[i:i + 1], b[i:i + 1], target=2), rel=1e-12)
    captum_batch = DeepLift(model).attribute(x, b, target=2)
    captum_alone = DeepLift(model).attribute(x[:1], b[:1], target=2)
    assert (captum_batch[:1] - captum_alone).abs().max() > 1e-4  # Captum centres over the whole batch


def test_layer_input_of_a_nonlinearity_where_captum_fails():
    model, x, b = every(), randn(B, 5, seed=1), randn(B, 5, seed=2)
    attr, delta = fattr.layer_deeplift(model, "net.1", x, b, target=TARGET, return_delta=True,
                                       attribute_to_layer_input=True)
    complete(model, x, b, attr, delta, TARGET)
    _, ref_delta = LayerDeepLift(model, model.net[1]).attribute(x, b, target=TARGET, return_convergence_delta=True,
                                                                attribute_to_layer_input=True)
    assert ref_delta.abs().max() > 1e-4
