"""Axioms and closed forms of the perturbation family (Hypothesis, deterministic ``ci`` profile), float64.

* feature ablation and occlusion of a linear model equal their closed forms;
* Shapley values: efficiency (exact for ``shapley_values`` and, by telescoping, for every
  sample of ``shapley_value_sampling``; the sampler is unbiased: its mean over many orders is
  the exact value), symmetry and dummy;
* KernelSHAP equals the exact Shapley values of linear models;
* results do not depend on ``perturbations_per_eval``;
* bad arguments are refused with the argument's name.
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fattr
from conftest import make_cnn, make_mlp, randn

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def linear(w: torch.Tensor, c: float = 0.3):
    """``f(x) = x.flatten(1) @ w + c``, ``w`` ``(E, K)``."""
    return lambda x: x.flatten(1) @ w + c


@st.composite
def grouped(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    n = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2 ** 16))
    groups = draw(st.integers(1, 5))
    per_example = draw(st.booleans())
    g = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, groups, ((n if per_example else 1),) + shape, generator=g)
    return shape, n, seed, mask


@given(grouped(), st.integers(1, 7), st.booleans())
def test_feature_ablation_of_a_linear_model_is_the_closed_form(case, ppe, tensor_baseline):
    shape, n, seed, mask = case
    x = randn(n, *shape, seed=seed)
    w = randn(math.prod(shape), 3, seed=seed + 1)
    b = randn(1, *shape, seed=seed + 2) if tensor_baseline else 0.7
    got = fattr.feature_ablation(linear(w), x, b, target=1, feature_mask=mask, perturbations_per_eval=ppe)
    contribution = ((x - b) * w[:, 1].reshape(shape)).reshape(n, -1)  # per element
    full_mask = mask.expand((n,) + shape).reshape(n, -1)
    per_group = torch.zeros(n, int(mask.max()) + 1, dtype=torch.float64).scatter_add(1, full_mask, contribution)
    want = per_group.gather(1, full_mask).reshape(x.shape)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@given(st.integers(2, 7), st.integers(2, 6), st.data())
def test_occlusion_of_a_linear_model_is_the_closed_form(h, w_, data):
    window = (data.draw(st.integers(1, h)), data.draw(st.integers(1, w_)))
    strides = (data.draw(st.integers(1, window[0])), data.draw(st.integers(1, window[1])))
    ppe = data.draw(st.integers(1, 9))
    x = randn(2, h, w_, seed=h * 10 + w_)
    weights = randn(h * w_, 2, seed=3)
    got = fattr.occlusion(linear(weights), x, window, strides, 0.2, target=0, perturbations_per_eval=ppe)
    contribution = (x - 0.2) * weights[:, 0].reshape(h, w_)
    total = torch.zeros_like(x)
    count = torch.zeros(h, w_, dtype=torch.float64)
    starts = [range(0, max(size - win, 0) + strides[d] if size > win else 1, strides[d])
              for d, (size, win) in enumerate(zip((h, w_), window, strict=True))]
    for i, j in itertools.product(*starts):
        box = torch.zeros(h, w_, dtype=torch.bool)
        box[i:i + window[0], j:j + window[1]] = True
        drop = (contribution * box).sum((1, 2))
        total += drop.reshape(2, 1, 1) * box
        count += box
    torch.testing.assert_close(got, total / count, rtol=1e-12, atol=1e-12)


def brute_force_shapley(v, n: int) -> torch.Tensor:
    """Shapley values from the definition (mean over all orders); ``v(keep: tuple of bools) -> (B,)``."""
    total = 0
    for order in itertools.permutations(range(n)):
        keep = [False] * n
        before = v(tuple(keep))
        gains = [None] * n
        for j in order:
            keep[j] = True
            after = v(tuple(keep))
            gains[j] = after - before
            before = after
        total = total + torch.stack(gains, dim=1)
    return total / math.factorial(n)


@given(st.integers(1, 4), st.integers(0, 1000))
def test_shapley_values_are_the_definition_and_efficient(n_features, seed):
    model = make_mlp(n_in=n_features, seed=seed % 7)
    x, b = randn(3, n_features, seed=seed), randn(1, n_features, seed=seed + 1)
    got = fattr.shapley_values(model, x, b, target=2, perturbations_per_eval=3)

    def v(keep):
        k = torch.tensor(keep)
        return model(torch.where(k, x, b))[:, 2]

    torch.testing.assert_close(got, brute_force_shapley(v, n_features), rtol=1e-10, atol=1e-12)
    delta = got.sum(1) - (model(x)[:, 2] - model(b)[:, 2])
    assert delta.abs().max() < 1e-12


@given(st.integers(0, 1000), st.integers(1, 6))
def test_shapley_sampling_is_efficient_for_every_sample(seed, n_samples):
    model = make_cnn()
    x = randn(2, 2, 6, 6, seed=seed)
    mask = (torch.arange(36).reshape(1, 1, 6, 6) % 5).expand(1, 2, 6, 6)
    attr = fattr.shapley_value_sampling(model, x, 0.1, target=1, feature_mask=mask, n_samples=n_samples,
                                        perturbations_per_eval=4, generator=torch.Generator().manual_seed(seed))
    size = torch.bincount(mask.reshape(-1))[mask.expand(attr.shape)]  # elements per feature
    per_feature_sum = (attr / size).sum((1, 2, 3))  # each feature's value counted once
    delta = per_feature_sum - (model(x)[:, 1] - model(torch.full_like(x[:1], 0.1))[:, 1])
    assert delta.abs().max() < 1e-10


def test_shapley_sampling_is_unbiased():
    """The mean over many random orders is the exact value (3 features: 6 orders, each with
    probability 1/6; 6000 draws put the mean within ~4 standard errors of it)."""
    model = make_mlp(n_in=3)
    x = randn(2, 3, seed=4)
    exact = fattr.shapley_values(model, x, target=0)
    many = fattr.shapley_value_sampling(model, x, target=0, n_samples=6000, perturbations_per_eval=2000,
                                        generator=torch.Generator().manual_seed(0))
    spread = 0.05 * float(exact.abs().max())
    assert (many - exact).abs().max() < spread


@given(st.integers(3, 5), st.integers(0, 1000), st.sampled_from(["shapley_values", "shapley_value_sampling",
                                                                    "kernel_shap"]))
def test_symmetry_and_dummy(n_features, seed, method):
    """Features 0 and 1 enter ``f`` the same way and have equal values: equal attributions (exactly
    for the exact values; the sampler and KernelSHAP estimate it); feature 2 is unused: zero."""
    model = make_mlp(n_in=n_features, seed=seed % 5)
    with torch.no_grad():
        first = model[0].weight
        first[:, 1] = first[:, 0]
        first[:, 2] = 0.0
    x = randn(3, n_features, seed=seed)
    x[:, 1] = x[:, 0]
    kw = {} if method == "shapley_values" else {"n_samples": 400, "generator": torch.Generator().manual_seed(seed)}
    attr = getattr(fattr, method)(model, x, target=1, perturbations_per_eval=50, **kw)
    scale = float(attr.abs().max()) + 1e-12
    assert attr[:, 2].abs().max() <= (1e-12 if method != "kernel_shap" else 0.05 * scale)  # KernelSHAP: estimated
    tolerance = 1e-12 if method == "shapley_values" else 0.1 * scale
    assert (attr[:, 0] - attr[:, 1]).abs().max() <= tolerance


@given(grouped(), st.integers(0, 100))
def test_kernel_shap_of_a_linear_model_is_the_exact_shapley_value(case, seed):
    shape, n, data_seed, mask = case
    mask = mask[:1]  # interpretable features shared by the batch
    x = randn(n, *shape, seed=data_seed)
    w = randn(math.prod(shape), 2, seed=data_seed + 1)
    f = linear(w)
    k = int(mask.max()) + 1
    got = fattr.kernel_shap(f, x, 0.3, target=0, feature_mask=mask, n_samples=12 + 4 * k, perturbations_per_eval=8,
                            generator=torch.Generator().manual_seed(seed))
    exact = fattr.shapley_values(f, x, 0.3, target=0, feature_mask=mask)
    present = torch.isin(torch.arange(k), mask)
    if bool(present.all()):  # an id missing from the mask is a feature that never matters (coefficient 0)
        torch.testing.assert_close(got, exact, rtol=1e-7, atol=1e-7)


def test_kernel_shap_converges_to_shapley_values_of_a_nonlinear_model():
    model = make_mlp(n_in=4)
    x = randn(2, 4, seed=5)
    exact = fattr.shapley_values(model, x, target=0)
    estimate = fattr.kernel_shap(model, x, target=0, n_samples=3000, perturbations_per_eval=1000,
                                 generator=torch.Generator().manual_seed(1))
    assert (estimate - exact).abs().max() < 0.05 * float(exact.abs().max())


@pytest.mark.parametrize("method", ["feature_ablation", "occlusion", "shapley_value_sampling", "shapley_values",
                                    "lime", "kernel_shap", "feature_permutation"])
def test_perturbations_per_eval_does_not_change_results(method):
    model, x = make_cnn(), randn(3, 2, 6, 6, seed=1)
    mask = (torch.arange(36).reshape(1, 1, 6, 6) // 6).expand(1, 2, 6, 6)
    fn = getattr(fattr, method)

    def run(ppe):
        kw = {"perturbations_per_eval": ppe}
        if method == "occlusion":
            return fn(model, x, (2, 3, 3), (1, 2, 2), target=0, **kw)
        kw["feature_mask"] = mask
        if method in ("shapley_value_sampling", "lime", "kernel_shap", "feature_permutation"):
            kw["generator"] = torch.Generator().manual_seed(3)
        if method in ("lime", "kernel_shap"):
            kw["n_samples"] = 30
        return fn(model, x, target=0, **kw)

    one = run(1)
    for ppe in (4, 1000):
        torch.testing.assert_close(run(ppe), one, rtol=1e-10, atol=1e-12)


def test_show_progress_draws_a_bar_on_stderr(capsys):
    model, x = make_mlp(), randn(2, 5)
    quiet = fattr.feature_ablation(model, x, target=0)
    loud = fattr.feature_ablation(model, x, target=0, show_progress=True, perturbations_per_eval=2)
    torch.testing.assert_close(quiet, loud, rtol=1e-12, atol=1e-12)
    err = capsys.readouterr().err
    assert "feature_ablation" in err and "3/3" in err


@pytest.mark.parametrize("call, kind, match", [
    (lambda m, x: fattr.feature_ablation(m, x, feature_mask=torch.zeros(1, 5)), TypeError, "feature_mask"),
    (lambda m, x: fattr.feature_ablation(m, x, feature_mask=torch.zeros(2, 5, dtype=torch.long)), ValueError,
     "feature_mask"),
    (lambda m, x: fattr.feature_ablation(m, x, target=0, perturbations_per_eval=0), ValueError,
     "perturbations_per_eval"),
    (lambda m, x: fattr.feature_ablation(lambda t: m(t).sum(), x, perturbations_per_eval=2), ValueError,
     "aggregate mode"),
    (lambda m, x: fattr.occlusion(m, x, (6,), target=0), ValueError, "sliding_window_shapes"),
    (lambda m, x: fattr.occlusion(m, x, (2,), 3, target=0), ValueError, "strides"),
    (lambda m, x: fattr.occlusion(m, x, 2, target=0), TypeError, "sliding_window_shapes"),
    (lambda m, x: fattr.shapley_values(lambda t: t.sum(1), torch.ones(2, 21)), ValueError, "at most 20"),
    (lambda m, x: fattr.shapley_value_sampling(m, x, target=0, n_samples=0), ValueError, "n_samples"),
    (lambda m, x: fattr.feature_permutation(m, x[:1], target=0), ValueError, "at least 2 examples"),
    (lambda m, x: fattr.lime(m, x, target=0, interpretable_model=object()), TypeError, "interpretable_model"),
    (lambda m, x: fattr.lime(m, x, target=0, similarity_func=3), TypeError, "similarity_func"),
    (lambda m, x: fattr.kernel_shap(m, x, target=0, generator=7), TypeError, "generator"),
])
def test_bad_arguments_are_refused_by_name(call, kind, match):
    with pytest.raises(kind, match=match):
        call(make_mlp(), randn(3, 5))


@pytest.mark.parametrize("method", ["feature_ablation", "occlusion", "shapley_value_sampling", "shapley_values",
                                    "lime", "kernel_shap", "feature_permutation"])
def test_keyword_arguments_follow_the_args_pairing_rule(method):
    """``kwargs`` (a per-example tensor among them) give what the same values as ``args`` give."""
    from conftest import make_two_input
    model = make_two_input()
    xs = (randn(4, 4, seed=1), randn(4, 2, 3, seed=2))
    scale = randn(4, 1, seed=3)
    fn = getattr(fattr, method)
    extra = {"perturbations_per_eval": 3}
    if method in ("shapley_value_sampling", "lime", "kernel_shap", "feature_permutation"):
        extra["generator"] = None  # replaced below by a fresh seeded generator per call
    if method == "shapley_values":
        extra["feature_mask"] = (torch.tensor([[0, 1, 1, 2]]), torch.tensor([[[2, 3, 3], [0, 0, 1]]]))
    lead = (xs, ((2,), (1, 2))) if method == "occlusion" else (xs,)

    def run(**kw):
        if "generator" in extra:
            extra["generator"] = torch.Generator().manual_seed(0)
        return fn(model, *lead, target=[0, 1, 2, 0], **extra, **kw)

    positional = run(args=(scale, "sigmoid", 0.5))
    keywords = run(args=(), kwargs={"scale": scale, "mode": "sigmoid", "gain": 0.5})
    for a, b in zip(positional, keywords, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("contiguous", [False, True])
def test_features_without_a_mask_are_every_element_numbered_across_inputs(contiguous):
    """No mask: the dense numbering comes from the shapes alone (no value read, so it compiles with
    fullgraph), and equals the numbering counted from the ids' values."""
    from fattr._src.perturbation.features import Features, features_of, group_ids
    xs = (torch.randn(2, 3, 2), torch.randn(2, 4))
    got, want = features_of(None, xs, contiguous=contiguous), Features.of(group_ids(None, xs), contiguous)
    assert got.n == want.n == 10
    for a, b in zip(got.index, want.index, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
