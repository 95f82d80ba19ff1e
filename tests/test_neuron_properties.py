"""Neuron methods: axioms (Hypothesis, deterministic ``ci`` profile), closed forms, several neurons in
one pass, selector forms and error messages."""
from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import fattr
from conftest import _init, make_mlp, randn


def relu_mlp(seed: int) -> nn.Module:
    return _init(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), seed)


def activation(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    head, _ = fattr.split(model, layer)
    return head(x)[0]


# --------------------------------------------------------------------------- axioms

@given(seed=st.integers(0, 10_000), neuron=st.integers(0, 7), base_scale=st.floats(-1.0, 1.0))
def test_neuron_integrated_gradients_completeness(seed: int, neuron: int, base_scale: float) -> None:
    """Attributions sum to the neuron's activation change ``act(x)[j] - act(b)[j]`` (smooth MLP,
    Gauss-Legendre: exact to float64 rounding at 64 nodes)."""
    model, x = make_mlp(seed=seed), randn(4, 5, seed=seed + 1)
    base = base_scale * randn(1, 5, seed=seed + 2)
    attr = fattr.neuron_integrated_gradients(model, "3", x, base, 64, neuron_selector=neuron)
    change = activation(model, "3", x)[:, neuron] - activation(model, "3", base)[:, neuron]
    torch.testing.assert_close(attr.sum(1), change, rtol=1e-9, atol=1e-10)


@given(seed=st.integers(0, 10_000), neuron=st.integers(0, 4))
def test_neuron_deeplift_summation_to_delta_is_exact(seed: int, neuron: int) -> None:
    model, x, base = relu_mlp(seed), randn(5, 4, seed=seed + 1), randn(1, 4, seed=seed + 2)
    attr = fattr.neuron_deeplift(model, "3", x, base, neuron_selector=neuron)
    change = activation(model, "3", x)[:, neuron] - activation(model, "3", base)[:, neuron]
    torch.testing.assert_close(attr.sum(1), change, rtol=0, atol=1e-12)


@given(seed=st.integers(0, 10_000), target=st.integers(0, 2))
def test_neuron_conductances_of_a_cut_layer_sum_to_the_output_change(seed: int, target: int) -> None:
    """Every path from the input to the output crosses layer ``1``: its neurons' conductances sum to
    ``F(x) - F(b)`` (Gauss-Legendre, 48 nodes)."""
    model, x = make_mlp(seed=seed), randn(3, 5, seed=seed + 1)
    total = sum(fattr.neuron_conductance(model, "1", x, None, 48, "gausslegendre", neuron_selector=j,
                                         target=target).sum(1) for j in range(8))
    change = model(x)[:, target] - model(torch.zeros(1, 5, dtype=torch.float64))[:, target]
    torch.testing.assert_close(total, change.detach(), rtol=1e-8, atol=1e-9)


@given(seed=st.integers(0, 10_000), neuron=st.integers(0, 7))
def test_neuron_gradient_of_a_linear_layer_is_its_weight_row(seed: int, neuron: int) -> None:
    model, x = make_mlp(seed=seed), randn(3, 5, seed=seed + 1)
    grad = fattr.neuron_gradient(model, "0", x, neuron_selector=neuron)
    torch.testing.assert_close(grad, model[0].weight[neuron].detach().expand(3, 5), rtol=0, atol=0)


@given(seed=st.integers(0, 10_000), neuron=st.integers(0, 4))
def test_dummy_features_get_nothing(seed: int, neuron: int) -> None:
    """A feature the neuron does not read (its weight column zeroed) gets zero attribution from every method."""
    model = relu_mlp(seed)
    with torch.no_grad():
        model[0].weight[:, 2] = 0
    x, base = randn(4, 4, seed=seed + 1), randn(1, 4, seed=seed + 2)
    dist = randn(3, 4, seed=seed + 3)
    g = torch.Generator().manual_seed(seed)
    results = [
        fattr.neuron_gradient(model, "3", x, neuron_selector=neuron),
        fattr.neuron_integrated_gradients(model, "3", x, base, 8, neuron_selector=neuron),
        fattr.neuron_gradient_shap(model, "3", x, dist, 4, neuron_selector=neuron, generator=g),
        fattr.neuron_deeplift(model, "3", x, base, neuron_selector=neuron),
        fattr.neuron_deeplift_shap(model, "3", x, dist, neuron_selector=neuron),
        fattr.neuron_guided_backprop(model, "3", x, neuron_selector=neuron),
        fattr.neuron_deconvolution(model, "3", x, neuron_selector=neuron),
        fattr.neuron_conductance(model, "3", x, base, 8, neuron_selector=neuron, target=1),
    ]
    for r in results:
        assert torch.equal(r[:, 2], torch.zeros(4, dtype=torch.float64))


# --------------------------------------------------------------------------- selectors and several neurons

def test_selector_forms_agree() -> None:
    """An int, a one-entry tuple, a one-neuron slice, a callable per example and a callable returning
    one value select the same neuron."""
    model, x = make_mlp(), randn(4, 5, seed=3)
    forms = [2, (2,), (slice(2, 3),), lambda a: a[:, 2], lambda a: a[0, 2]]
    results = [fattr.neuron_integrated_gradients(model, "1", x, n_steps=8, neuron_selector=s) for s in forms]
    for r in results[1:]:
        torch.testing.assert_close(r, results[0], rtol=1e-13, atol=1e-15)


def test_a_callable_returning_one_value_is_taken_per_example() -> None:
    model, x = make_mlp(), randn(4, 5, seed=3)
    total = fattr.neuron_gradient(model, "1", x, neuron_selector=lambda a: a.sum())
    per_example = fattr.neuron_gradient(model, "1", x, neuron_selector=lambda a: a.sum(1))
    torch.testing.assert_close(total, per_example, rtol=1e-13, atol=1e-15)


class Counting(nn.Module):
    def __init__(self, inner: nn.Module, log: list) -> None:
        super().__init__()
        self.inner, self.log = inner, log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(x.shape[0])
        return self.inner(x)


@pytest.mark.parametrize("method", ["neuron_gradient", "neuron_integrated_gradients", "neuron_deeplift",
                                    "neuron_guided_backprop", "neuron_deeplift_shap"])
def test_several_neurons_in_one_batched_pass_equal_separate_calls(method: str) -> None:
    log: list = []
    mlp = relu_mlp(3)
    model = nn.Sequential(Counting(mlp[:2], log), mlp[2], mlp[3], mlp[4])  # "2": the second ReLU, 5 neurons
    x, base = randn(4, 4, seed=1), randn(1, 4, seed=2)
    fn = getattr(fattr, method)
    extra: dict = {}
    positional: tuple = ()
    if method == "neuron_integrated_gradients":
        positional, extra = (base,), {"n_steps": 6}
    elif method == "neuron_deeplift":
        positional = (base,)
    elif method == "neuron_deeplift_shap":
        positional = (randn(3, 4, seed=5),)
    selectors = [0, (slice(1, 4),), lambda a: a[:, 4] - a[:, 0]]
    log.clear()
    together = fn(model, "2", x, *positional, neuron_selector=selectors, **extra)
    calls_together = list(log)
    assert isinstance(together, list) and len(together) == 3
    for s, got in zip(selectors, together, strict=True):
        alone = fn(model, "2", x, *positional, neuron_selector=s, **extra)
        torch.testing.assert_close(got, alone, rtol=1e-12, atol=1e-14)
    assert len(calls_together) <= 2 and calls_together[0] >= 3 * 4  # one batched head pass (two for DeepLift)


def test_several_neurons_with_tuple_inputs_and_args() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.act = nn.Linear(3, 4), nn.Linear(2, 4), nn.Tanh()

        def forward(self, x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            return self.act(self.a(x) * scale + self.b(y))

    model = _init(Two(), 0)
    xs, scale = (randn(5, 3, seed=1), randn(5, 2, seed=2)), randn(5, 1, seed=3)
    base = (randn(5, 3, seed=4), 0.5)
    together = fattr.neuron_integrated_gradients(model, "act", xs, base, 8, neuron_selector=[1, 3], args=(scale,))
    for j, got in zip([1, 3], together, strict=True):
        alone = fattr.neuron_integrated_gradients(model, "act", xs, base, 8, neuron_selector=j, args=(scale,))
        assert isinstance(got, tuple)
        for g, a in zip(got, alone, strict=True):
            torch.testing.assert_close(g, a, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("selector,kind,match", [
    (3.0, TypeError, "neuron_selector: expected an int"),
    (True, TypeError, "neuron_selector: expected an int"),
    ((), TypeError, "neuron_selector: expected an int, a non-empty tuple"),
    ((1, "a"), TypeError, "neuron_selector: expected a tuple of ints and slices"),
    ((1, 2), ValueError, r"neuron_selector: expected 1 index\(es\)"),
    (9, ValueError, "neuron_selector: expected indices in range"),
    ((slice(8, 10),), ValueError, "neuron_selector: expected a region with at least one neuron"),
    (lambda a: a[:, :2], ValueError, "neuron_selector: expected a callable returning one value per example"),
    (lambda a: 1.0, TypeError, "neuron_selector: expected a callable returning a tensor"),
    ([], ValueError, "neuron_selector: expected a selector or a non-empty list"),
    ([0, "x"], TypeError, r"neuron_selector\[1\]: expected an int"),
])
def test_bad_selectors_are_refused_with_the_argument_named(selector, kind, match) -> None:
    model, x = make_mlp(), randn(3, 5, seed=1)
    with pytest.raises(kind, match=match):
        fattr.neuron_gradient(model, "1", x, neuron_selector=selector)


def test_other_errors() -> None:
    model, x = make_mlp(), randn(3, 5, seed=1)
    with pytest.raises(TypeError, match="neuron_conductance takes a single neuron"):
        fattr.neuron_conductance(model, "1", x, neuron_selector=[0, 1], target=0)
    with pytest.raises(TypeError, match="attribute_to_neuron_input: expected True or False"):
        fattr.neuron_gradient(model, "1", x, neuron_selector=0, attribute_to_neuron_input=1)
    with pytest.raises(TypeError, match="layer: expected a module object when the model is a function"):
        fattr.neuron_gradient(lambda t: t, "1", x, neuron_selector=0)
    with pytest.raises(TypeError, match="model: expected a callable"):
        fattr.neuron_gradient(3, "1", x, neuron_selector=0)
    with pytest.raises(ValueError, match="layer"):
        fattr.neuron_gradient(model, "nope", x, neuron_selector=0)


def test_index_selector_on_a_layer_with_several_tensors_is_refused() -> None:
    class Pair(nn.Module):
        def forward(self, x: torch.Tensor):
            return x, 2 * x

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pair, self.out = Pair(), nn.Linear(3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a, b = self.pair(x)
            return self.out(a + b)

    model, x = _init(Net(), 0), randn(2, 3, seed=1)
    with pytest.raises(ValueError, match="Pass a callable neuron_selector"):
        fattr.neuron_gradient(model, "pair", x, neuron_selector=0)
    grad = fattr.neuron_gradient(model, "pair", x, neuron_selector=lambda acts: acts[0][:, 1] + acts[1][:, 1])
    torch.testing.assert_close(grad, torch.tensor([[0.0, 3.0, 0.0]] * 2, dtype=torch.float64))


def test_no_warning_on_a_plain_model() -> None:
    model, x = relu_mlp(0), randn(3, 4, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fattr.neuron_deeplift(model, "3", x, neuron_selector=1)
        fattr.neuron_guided_backprop(model, "3", x, neuron_selector=1)


@given(seed=st.integers(0, 10_000), i=st.integers(0, 3), j=st.integers(0, 3), neuron=st.integers(0, 4))
def test_symmetric_features_get_equal_attributions(seed: int, i: int, j: int, neuron: int) -> None:
    """A model whose first layer reads features i and j alike, ``x_i = x_j`` and ``b_i = b_j``: every
    deterministic neuron method gives ``attr_i = attr_j`` exactly."""
    if i == j:
        return
    model = relu_mlp(seed)
    with torch.no_grad():
        model[0].weight[:, j] = model[0].weight[:, i]
    x, base = randn(3, 4, seed=seed + 1), randn(1, 4, seed=seed + 2)
    x[:, j], base[:, j] = x[:, i], base[:, i]
    for attr in (fattr.neuron_gradient(model, "3", x, neuron_selector=neuron),
                 fattr.neuron_integrated_gradients(model, "3", x, base, 8, neuron_selector=neuron),
                 fattr.neuron_deeplift(model, "3", x, base, neuron_selector=neuron),
                 fattr.neuron_guided_backprop(model, "3", x, neuron_selector=neuron),
                 fattr.neuron_conductance(model, "3", x, base, 8, neuron_selector=neuron, target=0)):
        assert torch.equal(attr[:, i], attr[:, j])


def test_only_the_part_of_the_model_up_to_the_layer_runs() -> None:
    """The neuron's value depends on the head only: the layers after it never run (Captum runs them all)."""
    before, after = [], []
    mlp = relu_mlp(1)
    model = nn.Sequential(Counting(mlp[:2], before), mlp[2], mlp[3], Counting(mlp[4:], after))
    x = randn(4, 4, seed=1)
    fattr.neuron_integrated_gradients(model, "2", x, n_steps=5, neuron_selector=1)
    fattr.neuron_deeplift(model, "2", x, neuron_selector=1)
    fattr.neuron_guided_backprop(model, "2", x, neuron_selector=1)
    assert before and not after
