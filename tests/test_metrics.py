"""Deletion and insertion curves against a loop reference and closed forms; the metrics' batching
contract (chunks, differentiability, purity); randomization_check."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fattr
import fattr.metrics
from conftest import make_cnn, make_mlp, make_two_input, randn

seeds = st.integers(0, 2 ** 20)


def curve_loop(f, x, attr, target, baseline, n_steps, mask=None):
    """One example and one point at a time, features ranked by sorted() (a plain-Python reference)."""
    n = x.shape[0]
    curves = torch.zeros(n, n_steps + 1, 2, dtype=x.dtype)
    for i in range(n):
        flat_x, flat_a = x[i].reshape(-1), attr[i].reshape(-1)
        ids = list(range(flat_x.numel())) if mask is None else mask.expand_as(x[i:i + 1])[0].reshape(-1).tolist()
        feats = sorted(set(ids))
        score = {g: sum(float(flat_a[j]) for j in range(len(ids)) if ids[j] == g) for g in feats}
        order = sorted(range(len(feats)), key=lambda r: (-score[feats[r]], r))
        for k in range(n_steps + 1):
            m = (k * len(feats)) // n_steps
            chosen = {feats[r] for r in order[:m]}
            gone = torch.tensor([g in chosen for g in ids])
            deleted = torch.where(gone, torch.full_like(flat_x, baseline), flat_x).reshape(x[i].shape)
            inserted = torch.where(gone, flat_x, torch.full_like(flat_x, baseline)).reshape(x[i].shape)
            out = f(torch.stack([deleted, inserted]))
            curves[i, k] = out[:, target] if target is not None else out.reshape(-1)
    return curves[..., 0], curves[..., 1]


@given(seed=seeds, n_steps=st.integers(1, 9), baseline=st.sampled_from([0.0, -0.5]))
def test_curves_match_a_loop(seed, n_steps, baseline):
    net = make_mlp(seed=seed % 997)
    x = randn(3, 5, seed=seed)
    attr = torch.round(randn(3, 5, seed=seed + 1) * 2) / 2  # ties on purpose: broken by index
    dele, d_auc = fattr.metrics.deletion(net, x, attr, target=1, baselines=baseline, n_steps=n_steps)
    ins, i_auc = fattr.metrics.insertion(net, x, attr, target=1, baselines=baseline, n_steps=n_steps)
    ref_d, ref_i = curve_loop(net, x, attr, 1, baseline, n_steps)
    torch.testing.assert_close(dele.detach(), ref_d, rtol=0, atol=1e-12)
    torch.testing.assert_close(ins.detach(), ref_i, rtol=0, atol=1e-12)
    trapezoid = lambda c: torch.trapezoid(c, dx=1.0 / n_steps, dim=1)  # noqa: E731
    torch.testing.assert_close(d_auc.detach(), trapezoid(ref_d), rtol=0, atol=1e-12)
    torch.testing.assert_close(i_auc.detach(), trapezoid(ref_i), rtol=0, atol=1e-12)


def test_curves_with_a_feature_mask_match_a_loop():
    cnn = make_cnn(seed=3)
    x = randn(2, 2, 6, 6, seed=4)
    attr = randn(2, 2, 6, 6, seed=5)
    mask = (torch.arange(36).reshape(1, 1, 6, 6) // 9).expand(1, 2, 6, 6) * 10  # 4 patches over both channels
    dele, _ = fattr.metrics.deletion(cnn, x, attr, target=[0, 3], feature_mask=mask, n_steps=4)
    for i, t in enumerate([0, 3]):
        ref_d, _ = curve_loop(cnn, x[i:i + 1], attr[i:i + 1], t, 0.0, 4, mask=mask)
        torch.testing.assert_close(dele[i:i + 1].detach(), ref_d, rtol=0, atol=1e-12)


def test_linear_model_in_closed_form():
    """f = w . x, attributions w * x: deletion removes the largest terms first, so its curve is
    f(x) minus the running sum of the sorted terms, and insertion is the running sum itself."""
    w = randn(6, seed=6)
    x = randn(4, 6, seed=7)
    f = lambda z: z @ w  # noqa: E731
    terms = w * x
    dele, d_auc = fattr.metrics.deletion(f, x, terms, n_steps=6)
    ins, i_auc = fattr.metrics.insertion(f, x, terms, n_steps=6)
    running = torch.cat([torch.zeros(4, 1, dtype=x.dtype), terms.sort(1, descending=True).values.cumsum(1)], 1)
    torch.testing.assert_close(dele, f(x)[:, None] - running, rtol=0, atol=1e-12)
    torch.testing.assert_close(ins, running, rtol=0, atol=1e-12)
    torch.testing.assert_close(d_auc + i_auc, f(x), rtol=0, atol=1e-12)  # the two curves add up to f(x)
    # the attribution order is optimal for deletion: any other order deletes less early
    _, shuffled = fattr.metrics.deletion(f, x, randn(4, 6, seed=8), n_steps=6)
    assert bool((d_auc <= shuffled + 1e-12).all())


def test_curves_with_tuples_args_and_one_forward_call():
    model = make_two_input()
    xs, scale = (randn(3, 4, seed=9), randn(3, 2, 3, seed=10)), randn(3, 1, seed=11)
    attrs = fattr.saliency(model, xs, target=2, args=(scale,), abs=False)
    calls = []

    def f(a, b, s):
        calls.append(a.shape[0])
        return model(a, b, s)

    curve, auc = fattr.metrics.insertion(f, xs, attrs, target=2, args=(scale,), n_steps=5)
    assert calls == [18] and curve.shape == (3, 6) and auc.shape == (3,)
    torch.testing.assert_close(curve[:, -1], model(*xs, scale)[:, 2], rtol=0, atol=1e-12)
    torch.testing.assert_close(curve[:, 0], model(torch.zeros(3, 4, dtype=torch.float64),
                                                  torch.zeros(3, 2, 3, dtype=torch.float64), scale)[:, 2],
                               rtol=0, atol=1e-12)


def test_curves_are_differentiable_in_the_parameters_and_leave_the_model_alone():
    net = make_mlp(seed=12)
    x = randn(2, 5, seed=13)
    attr = fattr.integrated_gradients(net, x, target=0, n_steps=8).detach()
    _, auc = fattr.metrics.deletion(net, x, attr, target=0, n_steps=5)
    weight = net[0].weight
    (g,) = torch.autograd.grad(auc.sum(), weight)
    with torch.no_grad():
        weight[0, 0] += 1e-6
        up = fattr.metrics.deletion(net, x, attr, target=0, n_steps=5)[1].sum()
        weight[0, 0] -= 2e-6
        down = fattr.metrics.deletion(net, x, attr, target=0, n_steps=5)[1].sum()
        weight[0, 0] += 1e-6
    torch.testing.assert_close(g[0, 0], (up - down) / 2e-6, rtol=1e-5, atol=1e-8)


def test_curves_refuse_bad_input():
    net = make_mlp()
    x = randn(2, 5)
    with pytest.raises(ValueError, match="attributions: expected shape"):
        fattr.metrics.deletion(net, x, randn(2, 4), target=0)
    with pytest.raises(TypeError, match="feature_mask: expected an integer tensor"):
        fattr.metrics.insertion(net, x, x, target=0, feature_mask=torch.zeros(5))
    with pytest.raises(TypeError, match="n_steps: expected a positive int"):
        fattr.metrics.insertion(net, x, x, target=0, n_steps=2.5)


def test_infidelity_is_differentiable_in_the_attributions():
    net = make_mlp(seed=14)
    x = randn(2, 5, seed=15)
    attr = fattr.saliency(net, x, target=1, abs=False).requires_grad_()

    def noise(inputs, generator=None):
        z = 0.1 * torch.randn(inputs.shape, generator=generator, dtype=inputs.dtype)
        return z, inputs - z

    score = fattr.metrics.infidelity(net, noise, x, attr, target=1, n_perturb_samples=6,
                                     generator=torch.Generator().manual_seed(0))
    (g,) = torch.autograd.grad(score.sum(), attr)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    again = fattr.metrics.infidelity(net, noise, x, attr.detach(), target=1, n_perturb_samples=6,
                                     generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(score.detach(), again, rtol=0, atol=0)


# --------------------------------------------------------------------------- randomization_check

def test_randomization_check_leaves_the_model_and_rng_alone_and_is_reproducible():
    net = make_mlp(seed=16)
    x = randn(3, 5, seed=17)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    state = torch.get_rng_state()
    a = fattr.metrics.randomization_check(fattr.saliency, net, x, target=0, generator=torch.Generator().manual_seed(1))
    b = fattr.metrics.randomization_check(fattr.saliency, net, x, target=0, generator=torch.Generator().manual_seed(1))
    assert list(a) == ["4", "2", "0"]  # every layer with parameters, from the output down
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert all(bool((r.abs() <= 1 + 1e-12).all()) for r in a.values())


def test_randomization_check_correlations_are_spearmans():
    stats = pytest.importorskip("scipy.stats")
    net = make_mlp(seed=18)
    x = randn(2, 5, seed=19)
    layers = ["2", net[0]]
    got = fattr.metrics.randomization_check(fattr.input_x_gradient, net, x, target=1, layers=layers,
                                            generator=torch.Generator().manual_seed(2), absolute=False)
    assert list(got) == ["2", "0"]
    # redo the cascade by hand with the same draws
    import copy
    from fattr._src.metrics.randomization import _reinitialise
    twin, g = copy.deepcopy(net), torch.Generator().manual_seed(2)
    ref = fattr.input_x_gradient(net, x, target=1)
    for name in ["2", "0"]:
        _reinitialise(twin.get_submodule(name), g)
        new = fattr.input_x_gradient(twin, x, target=1)
        for i in range(2):
            rho = stats.spearmanr(ref[i].detach().numpy(), new[i].detach().numpy()).statistic
            assert abs(float(got[name][i]) - rho) < 1e-12


def test_randomization_check_of_a_model_blind_method_stays_at_one():
    net = make_mlp(seed=20)
    x = randn(2, 5, seed=21)
    blind = lambda model, inputs, target=None: inputs * 2  # noqa: E731
    got = fattr.metrics.randomization_check(blind, net, x, generator=torch.Generator().manual_seed(0))
    assert all(torch.allclose(r, torch.ones(2, dtype=torch.float64)) for r in got.values())
    with pytest.raises(ValueError, match=r"layers\[0\]: expected the dotted name"):
        fattr.metrics.randomization_check(blind, net, x, layers=["nope"])


def test_metrics_docstring_examples():
    """``fattr.metrics`` re-exports functions defined under ``fattr._src``: doctest them here."""
    import doctest

    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    attempted = 0
    for name in fattr.metrics.__all__:
        for test in finder.find(getattr(fattr.metrics, name), name, globs={}):
            runner.run(test)
            attempted += len(test.examples)
    assert attempted >= 5 * 3 and runner.failures == 0, runner.summarize()


def test_demo_metrics_table_rows_only_for_pixel_shaped_attributions():
    from types import SimpleNamespace

    from fattr.demo.attribute import Outcome
    from fattr.demo.metrics import table

    cnn = make_cnn(seed=22)
    x = randn(3, 2, 6, 6, seed=23)
    y = torch.tensor([0, 1, 2])
    spec = SimpleNamespace(layer=False)
    outcomes = [Outcome("integrated_gradients", spec, attributions=fattr.integrated_gradients(cnn, x, target=y)),
                Outcome("a_layer_map", spec, attributions=torch.zeros(3, 4, 2, 2)),
                Outcome("broken", spec, error="ValueError: boom")]
    text = table(cnn, x, y, outcomes, seed=0)
    rows = text.splitlines()
    assert len(rows) == 3 and rows[2].startswith("| `integrated_gradients` |")
    _, auc = fattr.metrics.deletion(cnn, x, outcomes[0].attributions, target=y, n_steps=16)
    assert f"| {float(auc.mean()):.2f} |" in rows[2]
