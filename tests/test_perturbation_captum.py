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
        for a, e in zip(actual, expected, strict=True):
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


# ------------------------------------------------------------------ LIME and KernelSHAP (shared samples)

def n_interp(mask: Any, inputs: Any) -> int:
    if mask is None:
        return sum(x[0].numel() for x in (inputs if isinstance(inputs, tuple) else (inputs,)))
    flat = torch.cat([m.reshape(-1) for m in (mask if isinstance(mask, tuple) else (mask,))])
    return int(flat.max() - flat.min()) + 1


def feeder(z: torch.Tensor):
    """A Captum perturb_func replaying fattr's samples ``z`` ``(R, S, F)``, one example after another (Captum
    makes a new generator per example, in order)."""
    state = {"example": 0}

    def samples(original_inp, **kwargs):
        b = state["example"]
        state["example"] += 1
        for row in z[b]:
            yield row.long().reshape(1, -1)

    return samples


def captum_surrogate(kernel: bool, s: Setup, z: torch.Tensor, **init: Any):
    from captum.attr import KernelShap, Lime
    if kernel:
        explainer = KernelShap(s.model)
        explainer.perturb_func = feeder(z)
        return explainer
    return Lime(s.model, perturb_func=feeder(z), **init)


@pytest.mark.parametrize("shape", [True, False], ids=["input_shape", "coefficients"])
@pytest.mark.parametrize("ppe", [1, 6])
@pytest.mark.parametrize("kernel", [False, True], ids=["lime", "kernel_shap"])
@pytest.mark.parametrize("name", SETUPS)
def test_lime_and_kernel_shap_with_shared_samples(name, kernel, ppe, shape):
    from fattr._src.perturbation.lime import bernoulli_samples, kernel_shap_samples
    s = Setup(name)
    b = baselines_for(s, "tensor")
    n_samples = 30
    sampler = kernel_shap_samples if kernel else bernoulli_samples
    z = sampler(torch.Generator().manual_seed(5), B, n_samples, n_interp(s.mask, s.inputs))
    method = fattr.kernel_shap if kernel else fattr.lime
    got = method(s.model, s.inputs, b, target=s.target, args=s.args, feature_mask=s.mask, n_samples=n_samples,
                 perturbations_per_eval=ppe, return_input_shape=shape, generator=torch.Generator().manual_seed(5))
    want = captum_surrogate(kernel, s, z).attribute(
        s.inputs, b, target=s.target, additional_forward_args=s.captum_args, feature_mask=s.mask,
        n_samples=n_samples, perturbations_per_eval=ppe, return_input_shape=shape)
    assert_close(got, want, 2e-5)  # Captum fits on float32 data (sklearn's float32 lasso / lstsq)


def test_lime_every_element_a_feature():
    from fattr._src.perturbation.lime import bernoulli_samples
    s = Setup("mlp")
    z = bernoulli_samples(torch.Generator().manual_seed(1), B, 40, 5)
    got = fattr.lime(s.model, s.inputs, target=s.target, n_samples=40, generator=torch.Generator().manual_seed(1))
    want = captum_surrogate(False, s, z).attribute(s.inputs, target=s.target, n_samples=40)
    assert_close(got, want, 2e-5)


@pytest.mark.parametrize("model_kind", ["captum_model", "sklearn_estimator"])
def test_lime_with_user_model_similarity_and_perturb_func(model_kind):
    """Captum's interfaces: a Captum ``Model`` or a scikit-learn estimator as surrogate, Captum-signature
    ``similarity_func`` and ``perturb_func``; the same objects given to Captum."""
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr._core.lime import get_exp_kernel_similarity_function
    from sklearn.linear_model import Ridge
    s = Setup("two_inputs")
    similarity = get_exp_kernel_similarity_function("euclidean", kernel_width=2.0)
    g = torch.Generator().manual_seed(3)
    z = torch.rand(B, 25, 5, generator=g) < 0.5
    surrogate = SkLearnRidge(alpha=0.5) if model_kind == "captum_model" else Ridge(alpha=0.5)
    got = fattr.lime(s.model, s.inputs, target=s.target, args=s.args, feature_mask=s.mask, n_samples=25,
                     interpretable_model=surrogate, similarity_func=similarity, perturb_func=feeder(z),
                     perturbations_per_eval=5)
    want = captum_surrogate(False, s, z, interpretable_model=SkLearnRidge(alpha=0.5),
                            similarity_func=similarity).attribute(
        s.inputs, target=s.target, additional_forward_args=s.args, feature_mask=s.mask, n_samples=25,
        perturbations_per_eval=5)
    assert_close(got, want, 2e-5)


@pytest.mark.parametrize("kernel", [False, True], ids=["lime", "kernel_shap"])
def test_surrogates_in_aggregate_mode(kernel):
    from fattr._src.perturbation.lime import bernoulli_samples, kernel_shap_samples
    s = Setup("mlp")
    model = s.model
    s.model = lambda x: model(x)[:, 0].sum()  # type: ignore[assignment]
    z = (kernel_shap_samples if kernel else bernoulli_samples)(torch.Generator().manual_seed(2), 1, 30, 3)
    method = fattr.kernel_shap if kernel else fattr.lime
    got = method(s.model, s.inputs, feature_mask=s.mask, n_samples=30, generator=torch.Generator().manual_seed(2))
    want = captum_surrogate(kernel, s, z).attribute(s.inputs, feature_mask=s.mask, n_samples=30)
    assert got.shape == (1, 5)
    assert_close(got, want, 2e-5)


# ------------------------------------------------------------------ feature permutation (shared shuffles)

@pytest.mark.parametrize("aggregate", [False, True], ids=["per_example", "aggregate"])
@pytest.mark.parametrize("name", SETUPS)
def test_feature_permutation_with_shared_shuffles(name, aggregate):
    from captum.attr import FeaturePermutation
    from fattr._src.perturbation.permutation import shuffles
    s = Setup(name)
    n = 5
    inputs = tuple(torch.cat([x, 0.5 * x[:2]]) for x in s.inputs) if isinstance(s.inputs, tuple) \
        else torch.cat([s.inputs, 0.5 * s.inputs[:2]])
    args = tuple(torch.cat([a, a[:2]]) if isinstance(a, torch.Tensor) else a for a in s.args)
    target = s.target + s.target[:2] if isinstance(s.target, list) else s.target
    model = s.model
    f = (lambda *xs: model(*xs)[(slice(None),) + ((target,) if isinstance(target, int) else
                                                   tuple(target) if isinstance(target, tuple) else ())].sum()
         if not isinstance(target, list) else model(*xs).gather(1, torch.tensor(target).reshape(-1, 1)).sum()) \
        if aggregate else model
    ppe = 1 if aggregate else 3
    t = None if aggregate else target
    if name == "two_inputs":  # no feature spanning both inputs (Captum shuffles each input on its own)
        s.mask = (torch.tensor([[0, 1, 1, 2]]), torch.tensor([[[3, 4, 4], [5, 5, 3]]]))
    perms = shuffles(torch.Generator().manual_seed(8), n_interp(s.mask, inputs), n)
    replay = iter(perms)

    def perm_func(x, mask):
        p = next(replay)
        return x[p] * mask + x * ~mask

    got = fattr.feature_permutation(f, inputs, target=t, args=args, feature_mask=s.mask, perturbations_per_eval=ppe,
                                    generator=torch.Generator().manual_seed(8))
    want = FeaturePermutation(f, perm_func=perm_func).attribute(inputs, target=t, additional_forward_args=args or None,
                                                                feature_mask=s.mask, perturbations_per_eval=ppe)
    assert_close(got, want, EXACT_REL)


@pytest.mark.parametrize("ppe", [1, 3])
@pytest.mark.parametrize("name", SETUPS)
def test_feature_permutation_with_perm_func(name, ppe):
    """Captum's ``perm_func`` (here a deterministic roll of the batch), given to both."""
    from captum.attr import FeaturePermutation
    s = Setup(name)

    def roll(x, mask):
        return torch.where(mask, x.roll(1, 0), x)

    got = fattr.feature_permutation(s.model, s.inputs, target=s.target, args=s.args, feature_mask=s.mask,
                                    perturbations_per_eval=ppe, perm_func=roll)
    want = FeaturePermutation(s.model, perm_func=roll).attribute(
        s.inputs, target=s.target, additional_forward_args=s.captum_args, feature_mask=s.mask,
        perturbations_per_eval=ppe)
    assert_close(got, want, EXACT_REL)
