"""Perturbation methods with a feature mask: ``n_features`` gives the number of features statically,
so a masked call traces into one graph (``torch.compile(fullgraph=True)``, issue #16).

Without ``n_features`` the features are counted from the mask's values (a data-dependent shape);
with it the ids are the features' indices, checked to lie in ``[0, n_features)``: a ``ValueError``
eagerly, an assert in the graph (a ``RuntimeError`` when it runs) under ``torch.compile``.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fattr

counters = torch._dynamo.utils.counters
SPECS = {s.name: s for s in fattr.methods()}
# every method taking a feature (or layer) mask; the first four are deterministic
MASKED = ["feature_ablation", "shapley_values", "layer_feature_ablation", "neuron_feature_ablation",
          "shapley_value_sampling", "feature_permutation", "layer_feature_permutation", "lime", "kernel_shap"]
DETERMINISTIC = MASKED[:4]
TARGET = torch.tensor([0, 1, 2, 0])


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def _inputs():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(4, 6, generator=g) for _ in range(2)]


def _masks(name):
    """Two masks of the same shape with ids 0, 1, 2 all present (the layer's activation has 8 neurons)."""
    if name.startswith("layer_"):
        return [torch.tensor([[0, 0, 1, 1, 1, 2, 2, 2]]), torch.tensor([[2, 1, 0, 2, 1, 0, 0, 1]])]
    return [torch.tensor([[0, 0, 1, 1, 2, 2]]), torch.tensor([[2, 1, 0, 0, 1, 2]])]


def _fn(name, model, **options):
    """``fn(x, mask)``: the registry's generic call with the mask (``layer_mask`` at a layer)."""
    spec = SPECS[name]
    key = "layer_mask" if name.startswith("layer_") else "feature_mask"
    if "n_samples" in dict(spec.options):
        options.setdefault("n_samples", 4)
    baselines = 0.1 if spec.baselines == "optional" else None

    def fn(x, mask, seed=0):
        generator = torch.Generator().manual_seed(seed) if spec.stochastic else None
        return spec.call(model, x, layer=model[3], baselines=baselines, target=TARGET, generator=generator,
                         **{key: mask}, **options)
    return fn


def _fresh():
    torch._dynamo.reset()
    counters.clear()


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_masked_fullgraph_matches_eager_without_recompiles(name):
    """One graph per grad mode for masks of different values (same shape, same ``n_features``); the compiled
    result equals eager's with the features counted from the mask; an id out of range fails in the graph."""
    _fresh()
    model, xs, masks = _mlp(), _inputs(), _masks(name)
    counted, given = _fn(name, model), _fn(name, model, n_features=3)
    compiled = torch.compile(given, fullgraph=True)
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            for x, mask in zip(xs, masks):
                got = compiled(x, mask)
                torch.testing.assert_close(got, counted(x, mask), rtol=1e-4, atol=1e-5)
                assert got.requires_grad == grad  # differentiable as called, like eager
    assert counters["stats"]["unique_graphs"] == 2  # one per grad mode, none per mask
    for bad in (masks[0] + 1, masks[0] - 1):  # ids 1..3, ids -1..1: same shapes, no recompile
        with pytest.raises(RuntimeError, match=r"n_features\) = \[0, 3\)"):
            compiled(xs[0], bad)
    assert counters["stats"]["unique_graphs"] == 2


@pytest.mark.parametrize("name", MASKED)
def test_n_features_equals_the_count_for_dense_ids(name):
    """Ids ``0 .. n-1``, all present: the same features, the same draws, the same attributions."""
    model, xs, masks = _mlp(), _inputs(), _masks(name)
    for x, mask in zip(xs, masks):
        torch.testing.assert_close(_fn(name, model, n_features=3)(x, mask, 5), _fn(name, model)(x, mask, 5))


@pytest.mark.parametrize("name", MASKED)
def test_ids_out_of_range_are_a_value_error(name):
    model, x, mask = _mlp(), _inputs()[0], _masks(name)[0]
    label = "layer_mask" if name.startswith("layer_") else "feature_mask"
    with pytest.raises(ValueError, match=rf"^{label}: expected ids in \[0, n_features\) = \[0, 2\), got ids "
                                         r"from 0 to 2\. .*n_features"):
        _fn(name, model, n_features=2)(x, mask)
    with pytest.raises(ValueError, match=rf"^{label}: .*got ids from -1 to 1\."):
        _fn(name, model, n_features=3)(x, mask - 1)
    with pytest.raises(ValueError, match=r"^n_features: expected a positive int \(>= 1\), got int 0"):
        _fn(name, model, n_features=0)(x, mask)
    with pytest.raises(TypeError, match=r"^n_features: expected a positive int, got float 3\.0"):
        _fn(name, model, n_features=3.0)(x, mask)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_ids_without_elements_change_nothing(name):
    """Ids 0, 2 and 5 of ``n_features=7``: the features are those of the counted mask (ids 0, 1, 2); the
    absent ids are ablated (null players for the Shapley values) to no effect."""
    model, x = _mlp(), _inputs()[0]
    mask = _masks(name)[1]
    sparse = torch.tensor([0, 2, 5])[mask]
    torch.testing.assert_close(_fn(name, model, n_features=7)(x, sparse), _fn(name, model)(x, mask),
                               rtol=1e-5, atol=1e-6)


def test_a_tuple_of_inputs_with_shared_ids_and_no_mask():
    """Ids shared across the inputs of a tuple; ``feature_mask=None`` with ``n_features`` at least the
    number of elements (each element its own feature, numbered across the inputs)."""
    model = _mlp()
    f = lambda a, b: model(torch.cat([a, b], 1))  # noqa: E731
    x = _inputs()[0]
    pair, masks = (x[:, :2], x[:, 2:]), (torch.tensor([[1, 0]]), torch.tensor([[0, 2, 2, 1]]))
    for mask, n in ((masks, 3), (None, 6), (None, 9)):
        torch.testing.assert_close(fattr.feature_ablation(f, pair, target=TARGET, feature_mask=mask, n_features=n),
                                   fattr.feature_ablation(f, pair, target=TARGET, feature_mask=mask))
    with pytest.raises(ValueError, match=r"^feature_mask: expected ids in \[0, n_features\) = \[0, 5\), got ids "
                                         r"from 0 to 5\."):
        fattr.feature_ablation(f, pair, target=TARGET, n_features=5)


def test_absent_ids_in_the_interpretable_space():
    """LIME and KernelSHAP fit one coefficient per id in ``[0, n_features)``; for a linear ``f`` KernelSHAP's
    are the exact Shapley values, 0 for an id without elements. Shapley value sampling with absent ids
    (other draws) stays exact in sum (completeness)."""
    w = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0, 1.5])
    f = lambda x: x @ w  # noqa: E731
    x, mask = _inputs()[0], torch.tensor([[0, 0, 3, 3, 1, 1]])  # id 2 absent
    g = torch.Generator().manual_seed(0)
    coef = fattr.kernel_shap(f, x, feature_mask=mask, n_features=4, n_samples=64, return_input_shape=False,
                             generator=g)
    want = torch.stack([(x * w)[:, 0:2].sum(1), (x * w)[:, 4:6].sum(1), torch.zeros(4), (x * w)[:, 2:4].sum(1)], 1)
    torch.testing.assert_close(coef, want, rtol=1e-4, atol=1e-4)
    assert fattr.lime(f, x, feature_mask=mask, n_features=6, n_samples=16, return_input_shape=False,
                      generator=g).shape == (4, 6)
    attr = fattr.shapley_value_sampling(f, x, feature_mask=mask, n_features=5, n_samples=3, generator=g)
    torch.testing.assert_close(attr[:, 0::2].sum(1), f(x), rtol=1e-5, atol=1e-5)  # one element per feature
