"""Differential tests of the perturbation family against Captum 0.9 (the oracle).

Models are float64; what is left are Captum's own roundings: Occlusion divides its sums
in float32 (``single_attrib.float() / weight``), the Shapley classes accumulate in float32
(``dtype=torch.float``), LIME / KernelSHAP fit their surrogate on ``.float()`` data. Those
comparisons use ``F32_REL`` (relative to the largest attribution); FeatureAblation keeps
the output's dtype and is compared to float64 rounding.

Stochastic methods share their random draws with Captum: Captum's
``permutation_generator`` is replaced by the orders fattr draws from the same seeded
generator (``shapley.permutations``), and LIME/KernelSHAP get the same interpretable
samples through a ``perturb_func`` (the samples fattr draws, read from its private
sampler with the same seed).

Deviations from Captum (documented in the docstrings):

* attributions keep the output's dtype (Captum returns float32 from Occlusion, Shapley, LIME);
* ``shapley_values`` evaluates the ``2^n`` coalitions once instead of ``n`` steps of all ``n!`` orders;
* a per-example output with ``target=None`` must have one value per example (Captum's
  multi-output mode, one attribution row per output element, is only for aggregate outputs).
"""
from __future__ import annotations

from typing import Any

import pytest
import torch
from captum.attr import FeatureAblation, Occlusion, ShapleyValues, ShapleyValueSampling

import fattr
from conftest import make_3d, make_cnn, make_mlp, make_two_input, randn
from fattr._src.perturbation.shapley import permutations

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

EXACT_REL = 1e-12
F32_REL = 2e-6
B = 3


def assert_close(actual: Any, expected: Any, rel: float) -> None:
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_close(a, e, rel)
        return
    assert isinstance(actual, torch.Tensor) and actual.shape == expected.shape, (actual.shape, expected.shape)
    actual, expected = actual.detach().double(), expected.detach().double()
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * max(scale, 1e-300))


class Setup:
    """A model, its inputs, extra args and targets, in fattr's and Captum's spelling."""

    def __init__(self, name: str):
        self.name = name
        self.kwargs: dict = {}
        if name == "mlp":
            self.model, self.inputs, self.args = make_mlp(), randn(B, 5, seed=1), ()
            self.target: Any = [0, 2, 1]
            self.mask: Any = torch.tensor([[0, 0, 1, 2, 2]])
            self.window: Any = (2,)
        elif name == "cnn":
            self.model, self.inputs, self.args = make_cnn(), randn(B, 2, 6, 6, seed=2), ()
            self.target = 3
            self.mask = (torch.arange(36).reshape(1, 1, 6, 6) // 12).expand(1, 2, 6, 6).contiguous()  # Captum views it
            self.window = (1, 3, 2)
        elif name == "two_inputs":
            self.model = make_two_input()
            self.inputs = (randn(B, 4, seed=3), randn(B, 2, 3, seed=4))
            self.args = (randn(B, 1, seed=5), "sigmoid", 1.5)
            self.target = [2, 0, 1]
            self.mask = (torch.tensor([[0, 1, 1, 2]]), torch.tensor([[[2, 3, 3], [4, 4, 0]]]))
            self.window = ((2,), (1, 2))
        elif name == "tuple_target":
            self.model, self.inputs, self.args = make_3d(), randn(B, 5, seed=6), ()
            self.target = (1, 2)
            self.mask = torch.tensor([[0, 1, 1, 2, 0]])
            self.window = (3,)
        else:  # pragma: no cover
            raise ValueError(name)

    @property
    def captum_args(self) -> Any:
        return self.args or None


SETUPS = ["mlp", "cnn", "two_inputs", "tuple_target"]


def baselines_for(setup: Setup, kind: str) -> Any:
    if kind == "none":
        return None
    if kind == "scalar":
        return 0.25
    if isinstance(setup.inputs, tuple):
        return tuple(randn(1, *x.shape[1:], seed=9 + i) for i, x in enumerate(setup.inputs))
    return randn(1, *setup.inputs.shape[1:], seed=9)


@pytest.mark.parametrize("ppe", [1, 4])
@pytest.mark.parametrize("masked", [False, True], ids=["elements", "mask"])
@pytest.mark.parametrize("base", ["none", "scalar", "tensor"])
@pytest.mark.parametrize("name", SETUPS)
def test_feature_ablation(name, base, masked, ppe):
    s = Setup(name)
    b = baselines_for(s, base)
    mask = s.mask if masked else None
    got = fattr.feature_ablation(s.model, s.inputs, b, target=s.target, args=s.args, feature_mask=mask,
                                 perturbations_per_eval=ppe)
    if isinstance(s.inputs, tuple) and isinstance(b, float):
        b = (b,) * len(s.inputs)  # Captum indexes a scalar baseline per input (fattr shares it)
    want = FeatureAblation(s.model).attribute(s.inputs, b, target=s.target, additional_forward_args=s.captum_args,
                                              feature_mask=mask, perturbations_per_eval=ppe)
    assert_close(got, want, EXACT_REL)


def test_feature_ablation_keyword_args_and_per_example_mask():
    s = Setup("two_inputs")
    mask = (torch.tensor([[0, 1, 1, 2], [2, 2, 1, 0], [0, 0, 0, 1]]), torch.tensor([[[2, 3, 3], [4, 4, 0]]]))
    got = fattr.feature_ablation(s.model, s.inputs, target=s.target, args=s.args[:1],
                                 kwargs={"mode": "sigmoid", "gain": 1.5}, feature_mask=mask, perturbations_per_eval=3)
    want = FeatureAblation(s.model).attribute(s.inputs, target=s.target, additional_forward_args=s.args,
                                              feature_mask=mask, perturbations_per_eval=3)
    assert_close(got, want, EXACT_REL)


@pytest.mark.parametrize("method", ["feature_ablation", "occlusion", "shapley_values"])
def test_aggregate_output(method):
    """``f`` returning one value for the whole batch: attributions with a batch dim of 1."""
    model, x = make_mlp(), randn(B, 5, seed=1)

    def total(inp):
        return model(inp)[:, 1].sum()

    mask = torch.tensor([[0, 0, 1, 2, 2]])
    if method == "feature_ablation":
        got = fattr.feature_ablation(total, x, 0.5, feature_mask=mask)
        want = FeatureAblation(total).attribute(x, 0.5, feature_mask=mask)
    elif method == "occlusion":
        got = fattr.occlusion(total, x, (2,), baselines=0.5)
        want = Occlusion(total).attribute(x, (2,), baselines=0.5)
    else:
        got = fattr.shapley_values(total, x, 0.5, feature_mask=mask)
        want = ShapleyValues(total).attribute(x, 0.5, feature_mask=mask)
    assert got.shape == (1, 5)
    assert_close(got, want, F32_REL)
    with pytest.raises(ValueError, match="perturbations_per_eval"):
        fattr.feature_ablation(total, x, perturbations_per_eval=2)


@pytest.mark.parametrize("ppe", [1, 5])
@pytest.mark.parametrize("strided", [False, True], ids=["stride1", "strided"])
@pytest.mark.parametrize("base", ["none", "tensor"])
@pytest.mark.parametrize("name", SETUPS)
def test_occlusion(name, base, strided, ppe):
    s = Setup(name)
    b = baselines_for(s, base)
    if strided:
        strides: Any = {"mlp": 2, "cnn": (1, 2, 1), "two_inputs": (1, (1, 2)), "tuple_target": (2,)}[name]
    else:
        strides = None
    got = fattr.occlusion(s.model, s.inputs, s.window, strides, b, target=s.target, args=s.args,
                          perturbations_per_eval=ppe)
    want = Occlusion(s.model).attribute(s.inputs, s.window, strides, b, target=s.target,
                                        additional_forward_args=s.captum_args, perturbations_per_eval=ppe)
    assert_close(got, want, F32_REL)


@pytest.mark.parametrize("ppe", [1, 3])
@pytest.mark.parametrize("base", ["none", "tensor"])
@pytest.mark.parametrize("name", SETUPS)
def test_shapley_values(name, base, ppe):
    s = Setup(name)
    b = baselines_for(s, base)
    got = fattr.shapley_values(s.model, s.inputs, b, target=s.target, args=s.args, feature_mask=s.mask,
                               perturbations_per_eval=ppe)
    want = ShapleyValues(s.model).attribute(s.inputs, b, target=s.target, additional_forward_args=s.captum_args,
                                            feature_mask=s.mask, perturbations_per_eval=ppe)
    assert_close(got, want, F32_REL)


@pytest.mark.parametrize("ppe", [1, 4])
@pytest.mark.parametrize("name", SETUPS)
def test_shapley_value_sampling_with_shared_orders(name, ppe):
    s = Setup(name)
    b = baselines_for(s, "tensor")
    got = fattr.shapley_value_sampling(s.model, s.inputs, b, target=s.target, args=s.args, feature_mask=s.mask,
                                       n_samples=6, perturbations_per_eval=ppe,
                                       generator=torch.Generator().manual_seed(11))
    n_features = len(torch.unique(torch.cat([m.reshape(-1) for m in (s.mask if isinstance(s.mask, tuple)
                                                                     else (s.mask,))])))
    orders = permutations(torch.Generator().manual_seed(11), 6, n_features).tolist()
    captum = ShapleyValueSampling(s.model)
    captum.permutation_generator = lambda n_features, n_samples: iter(orders)
    want = captum.attribute(s.inputs, b, target=s.target, additional_forward_args=s.captum_args,
                            feature_mask=s.mask, n_samples=6, perturbations_per_eval=ppe)
    assert_close(got, want, F32_REL)
