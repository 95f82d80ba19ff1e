"""The research path methods against references kept in this file, and their axioms.

* IDGI against a direct implementation (a loop over steps and examples); exact completeness.
* Integrated Hessians against a loop over points and examples with ``torch.autograd.functional.hessian``;
  rows sum to IG, the whole to ``f(x) - f(b)``, symmetry, groups as sums of the full matrix.
* Expected gradients: the mean of many draws against the mean over the reference rows of their
  integrated gradients (64-node Gauss-Legendre); a loop over the points it drew.
* Guided IG: max_dist=0 is IG's left rule; a linear f is exact; the attribution is the left Riemann
  sum along the path it took (recorded from its calls of f).
* Blur IG: the blur matrices against scipy; the exact velocity against a finite difference; the exact
  path's completeness converges with n_steps.

float64 throughout; ``REL = 1e-12`` of the values' scale where a result is a reordering of the same sums.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fattr
from conftest import completeness_gap, make_cnn, make_mlp, randn
from fattr._src.paths.blur import blur_matrices

REL = 1e-12
seeds = st.integers(0, 2 ** 20)
RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def close(actual, expected, rel=REL):
    actual, expected = actual.detach(), expected.detach()
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=0, atol=rel * max(scale, 1e-300))


def value(f, x, target):
    out = f(x)
    return out[:, target] if target is not None else out.reshape(-1)


def grad_at(f, point, target):
    p = point.detach().clone().requires_grad_()
    return torch.autograd.grad(value(f, p, target).sum(), p)[0]


# --------------------------------------------------------------------------- IDGI

def idgi_loop(f, x, base, n_steps, method, target):
    """IDGI one example and one segment at a time (Yang et al.'s definition, written out)."""
    out = torch.zeros_like(x)
    for i in range(x.shape[0]):
        xi, bi = x[i:i + 1], base[i:i + 1] if base.shape[0] > 1 else base
        if method == "riemann_trapezoid":
            cuts = [k / (n_steps - 1) for k in range(n_steps)]
            segments = [(cuts[s], cuts[s + 1], [(cuts[s], 0.5), (cuts[s + 1], 0.5)]) for s in range(n_steps - 1)]
        else:
            off = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
            segments = [(s / n_steps, (s + 1) / n_steps, [((s + off) / n_steps, 1.0)]) for s in range(n_steps)]
        for lo, hi, nodes in segments:
            change = value(f, bi + hi * (xi - bi), target) - value(f, bi + lo * (xi - bi), target)
            for a, share in nodes:
                g = grad_at(f, bi + a * (xi - bi), target)
                out[i:i + 1] += share * g * g / (g * g).sum() * change
    return out


@given(seed=seeds, method=st.sampled_from(RULES), n_steps=st.integers(2, 9), b=st.integers(1, 3))
def test_idgi_matches_a_loop_and_is_exactly_complete(seed, method, n_steps, b):
    net = make_mlp(seed=seed % 997)
    x, base = randn(b, 5, seed=seed), randn(1, 5, seed=seed + 1)
    attr, delta = fattr.idgi(net, x, base, n_steps, method, target=2, return_delta=True)
    close(attr, idgi_loop(net, x, base, n_steps, method, 2))
    change = value(net, x, 2) - value(net, base.expand_as(x), 2)
    gap = attr.detach().sum(1) - change.detach()  # computed here, not by fattr
    assert float(gap.abs().max()) <= 1e-12 * (1 + float(change.detach().abs().max()))
    torch.testing.assert_close(delta.detach(), gap, rtol=0, atol=1e-12)


def test_idgi_chunks_args_and_tuples():
    net = make_mlp(n_in=7, seed=3)
    f = lambda a, c, scale: net(torch.cat([a, c], 1) * scale)  # noqa: E731
    x = (randn(3, 4, seed=1), randn(3, 3, seed=2))
    scale = randn(3, 1, seed=3).abs() + 0.5
    whole, delta = fattr.idgi(f, x, n_steps=6, target=[0, 1, 2], args=(scale,), return_delta=True)
    chunked = fattr.idgi(f, x, n_steps=6, target=[0, 1, 2], kwargs={"scale": scale}, chunk_size=4)
    for w, c in zip(whole, chunked, strict=True):
        close(c, w)
    gap = completeness_gap(f, x, None, whole, [0, 1, 2], (scale,))  # computed here, not by fattr
    assert float(gap.abs().max()) < 1e-12
    torch.testing.assert_close(delta.detach(), gap, rtol=0, atol=1e-12)
    # every example alone gives the same row: the per-example scale stayed with its example
    for i in range(3):
        alone = fattr.idgi(f, (x[0][i:i + 1], x[1][i:i + 1]), n_steps=6, target=[[0, 1, 2][i]], args=(scale[i:i + 1],))
        close(alone[0][0], whole[0][i])


def test_idgi_refuses_gauss_legendre_and_one_trapezoid_node():
    net = make_mlp()
    with pytest.raises(ValueError, match="method: expected a Riemann rule"):
        fattr.idgi(net, randn(2, 5), method="gausslegendre", target=0)
    with pytest.raises(ValueError, match="n_steps: expected at least 2 for riemann_trapezoid"):
        fattr.idgi(net, randn(2, 5), n_steps=1, method="riemann_trapezoid", target=0)


# --------------------------------------------------------------------------- integrated Hessians

def hessians_loop(f, x, base, n_steps, target):
    """Integrated Hessians by loops over examples and the (a, c) grid, autograd's Hessian at each point."""
    a, w = fattr.quadrature("gausslegendre", n_steps)
    n, d = x.shape
    out = torch.zeros(n, d, d, dtype=x.dtype)
    for i in range(n):
        diff = x[i] - base[0]
        for ak, wk in zip(a.tolist(), w.tolist(), strict=True):
            for cl, vl in zip(a.tolist(), w.tolist(), strict=True):
                p = base[0] + ak * cl * diff
                h = torch.autograd.functional.hessian(lambda z: value(f, z[None], target)[0], p)
                g = grad_at(f, p[None], target)[0]
                out[i] += wk * vl * (ak * cl * diff[:, None] * diff[None, :] * h + torch.diag(diff * g))
    return out


@given(seed=seeds, b=st.integers(1, 2), n_steps=st.integers(1, 4))
def test_integrated_hessians_match_a_loop_and_are_symmetric(seed, b, n_steps):
    net = make_mlp(n_in=4, seed=seed % 997)
    x, base = randn(b, 4, seed=seed), randn(1, 4, seed=seed + 1)
    gamma = fattr.integrated_hessians(net, x, base, n_steps, target=1)
    close(gamma, hessians_loop(net, x, base, n_steps, 1))
    close(gamma, gamma.transpose(1, 2))


@given(seed=seeds, b=st.integers(1, 3))
def test_integrated_hessians_sum_to_ig_and_to_the_output_change(seed, b):
    net = make_mlp(n_in=5, seed=seed % 997)
    x, base = randn(b, 5, seed=seed), randn(b, 5, seed=seed + 1)
    gamma, delta = fattr.integrated_hessians(net, x, base, 32, target=0, return_delta=True)
    ig = fattr.integrated_gradients(net, x, base, 64, target=0)
    scale = float(ig.abs().max()) + 1e-3
    # equal up to quadrature error, which falls exponentially with n_steps (Gauss-Legendre on a smooth
    # integrand): ~1e-3 at 8 nodes, ~1e-6 at 16, ~1e-13 at 32 on the worst seeds seen
    torch.testing.assert_close(gamma.sum(2).detach(), ig.detach(), rtol=0, atol=1e-9 * scale)
    gap = completeness_gap(net, x, base, gamma, 0)  # the interactions' total against f(x) - f(b), computed here
    assert float(gap.abs().max()) < 1e-9 * scale
    torch.testing.assert_close(delta.detach(), gap, rtol=0, atol=1e-12 * scale)


def test_integrated_hessians_groups_are_sums_of_the_full_matrix():
    cnn = make_cnn(seed=2)
    x = randn(2, 2, 6, 6, seed=3)
    full, d_full = fattr.integrated_hessians(cnn, x, n_steps=3, target=[1, 3], return_delta=True, chunk_size=4)
    assert full.shape == (2, 2, 6, 6, 2, 6, 6)
    mask = (torch.arange(36).reshape(1, 1, 6, 6) // 12).expand(1, 2, 6, 6) + 3 * torch.tensor([0, 1]).reshape(1, 2, 1, 1)
    groups, d_groups = fattr.integrated_hessians(cnn, x, n_steps=3, target=[1, 3], feature_mask=mask,
                                                 return_delta=True)
    member = torch.nn.functional.one_hot(mask.reshape(-1), 6).to(x.dtype)  # (72, 6)
    expected = torch.einsum("bij,ig,jh->bgh", full.reshape(2, 72, 72), member, member)
    close(groups, expected)
    close(d_groups, d_full, rel=1e-6)


def test_integrated_hessians_refuse_tuples_and_bad_masks():
    net = make_mlp()
    with pytest.raises(TypeError, match="inputs: expected one tensor"):
        fattr.integrated_hessians(net, (randn(2, 5), randn(2, 5)), target=0)
    with pytest.raises(TypeError, match="feature_mask: expected an integer tensor"):
        fattr.integrated_hessians(net, randn(2, 5), target=0, feature_mask=torch.zeros(5))
    with pytest.raises(ValueError, match="feature_mask: expected group ids broadcastable"):
        fattr.integrated_hessians(net, randn(2, 5), target=0, feature_mask=torch.zeros(3, dtype=torch.long))


# --------------------------------------------------------------------------- expected gradients

def test_expected_gradients_mean_is_the_mean_ig_over_the_references():
    net = make_mlp(n_in=4, seed=5)
    x, refs = randn(2, 4, seed=6), randn(3, 4, seed=7)
    n_samples = 20000
    attr = fattr.expected_gradients(net, x, refs, n_samples, target=2, generator=torch.Generator().manual_seed(0))
    exact = torch.stack([fattr.integrated_gradients(net, x, refs[m:m + 1], 64, target=2) for m in range(3)]).mean(0)
    # Monte Carlo: the per-draw terms are O(scale); the mean of 20000 is within ~5 / sqrt(20000) of it
    scale = float(exact.abs().max())
    torch.testing.assert_close(attr, exact, rtol=0, atol=5 * scale / math.sqrt(n_samples))


def test_expected_gradients_is_gradient_shap_without_noise():
    net = make_mlp(seed=8)
    x, refs = randn(3, 5, seed=9), randn(4, 5, seed=10)
    a, da = fattr.expected_gradients(net, x, refs, 7, target=1, generator=torch.Generator().manual_seed(3),
                                     return_delta=True)
    b, db = fattr.gradient_shap(net, x, refs, 7, 0.0, target=1, generator=torch.Generator().manual_seed(3),
                                return_delta=True)
    assert torch.equal(a, b) and torch.equal(da, db)


# --------------------------------------------------------------------------- Guided IG

@given(seed=seeds, n_steps=st.integers(1, 12), fraction=st.sampled_from([0.1, 0.25, 0.5]))
def test_guided_ig_with_no_deviation_is_left_riemann_ig(seed, n_steps, fraction):
    net = make_mlp(seed=seed % 997)
    x, base = randn(3, 5, seed=seed), randn(1, 5, seed=seed + 1)
    got = fattr.guided_integrated_gradients(net, x, base, n_steps, fraction=fraction, max_dist=0.0, target=0)
    close(got, fattr.integrated_gradients(net, x, base, n_steps, "riemann_left", target=0), rel=1e-10)


@given(seed=seeds, max_dist=st.sampled_from([0.02, 0.1, 1.0]), b=st.integers(1, 3))
def test_guided_ig_is_exact_for_linear_f_and_sums_along_its_own_path(seed, max_dist, b):
    w = randn(5, 2, seed=seed)
    x, base = randn(b, 5, seed=seed + 1), randn(b, 5, seed=seed + 2)
    attr = fattr.guided_integrated_gradients(lambda z: z @ w, x, base, 20, max_dist=max_dist, target=1)
    close(attr, w[:, 1] * (x - base), rel=1e-9)

    net = make_mlp(seed=seed % 997)
    seen = []

    def f(z):
        seen.append(z.detach().clone())
        return net(z)

    attr, delta = fattr.guided_integrated_gradients(f, x, base, 30, max_dist=max_dist, target=1, return_delta=True)
    path = torch.stack(seen[:30] + [x])  # the points of the 30 gradient passes, then the input
    grads = torch.stack([grad_at(net, p, 1) for p in path[:-1]])
    close(attr, ((path[1:] - path[:-1]) * grads).sum(0), rel=1e-8)  # the left Riemann sum along that path
    change = value(net, x, 1) - value(net, base, 1)  # completeness up to the coarse left sum's error
    gap = attr.detach().sum(1) - change.detach()  # computed here, not by fattr
    assert float(gap.abs().max()) < 0.1 * (float(change.abs().max()) + float(attr.abs().sum(1).max()) + 1e-3)
    torch.testing.assert_close(delta.detach(), gap, rtol=0, atol=1e-12)


def test_guided_ig_refuses_bad_fraction():
    with pytest.raises(ValueError, match=r"fraction: expected a number in \[0, 1\]"):
        fattr.guided_integrated_gradients(make_mlp(), randn(2, 5), fraction=1.5, target=0)


# --------------------------------------------------------------------------- Blur IG

@pytest.mark.parametrize("sigma", [0.0, 0.01, 0.2, 0.37, 1.0, 2.6, 50.0])
def test_blur_matrices_are_scipys_gaussian_filter(sigma):
    ndimage = pytest.importorskip("scipy.ndimage")
    v = np.random.default_rng(0).normal(size=(7, 5))
    rows, _ = blur_matrices([sigma], 7)
    cols, _ = blur_matrices([sigma], 5)
    ours = rows[0] @ torch.from_numpy(v) @ cols[0].T
    theirs = ndimage.gaussian_filter(v, sigma=[sigma, sigma], mode="constant") if sigma > 0 else v
    torch.testing.assert_close(ours, torch.from_numpy(theirs), rtol=0, atol=1e-14)


def test_blur_velocity_is_the_derivative_in_sigma():
    sigmas = [0.3, 1.1, 4.0]
    m, dm = blur_matrices(sigmas, 9, fixed_radius=16)
    h = 1e-6
    up, _ = blur_matrices([s + h for s in sigmas], 9, fixed_radius=16)
    down, _ = blur_matrices([s - h for s in sigmas], 9, fixed_radius=16)
    torch.testing.assert_close(dm, (up - down) / (2 * h), rtol=0, atol=1e-8)


def test_blur_ig_exact_velocity_converges_to_completeness():
    cnn = make_cnn(seed=4)
    x = randn(2, 2, 6, 6, seed=5)
    deltas = [fattr.blur_integrated_gradients(cnn, x, max_sigma=3.0, n_steps=n, velocity="exact", target=0,
                                              return_delta=True)[1].abs().max() for n in (25, 100, 400)]
    assert deltas[2] < deltas[1] < deltas[0] and float(deltas[2]) < 1e-3
    chunked = fattr.blur_integrated_gradients(cnn, x, max_sigma=3.0, n_steps=25, velocity="exact", target=0,
                                              chunk_size=7)
    close(chunked, fattr.blur_integrated_gradients(cnn, x, max_sigma=3.0, n_steps=25, velocity="exact", target=0))


def test_blur_ig_refuses_vectors_and_bad_velocity():
    with pytest.raises(ValueError, match="inputs: expected images"):
        fattr.blur_integrated_gradients(make_mlp(), randn(2, 5), target=0)
    with pytest.raises(ValueError, match="velocity: expected one of 'difference', 'exact'"):
        fattr.blur_integrated_gradients(make_cnn(), randn(1, 2, 6, 6), target=0, velocity="forward")


def test_expected_gradients_and_captums_gradient_shap_estimate_the_same_expectation():
    """Captum has no expected gradients by name; its GradientShap with stdevs=0 is the same estimator, drawing from
    the global RNG: both estimates must lie within Monte Carlo error of the quadrature expectation."""
    captum_attr = pytest.importorskip("captum.attr")
    net = make_mlp(n_in=4, seed=24)
    x, refs = randn(2, 4, seed=25), randn(3, 4, seed=26)
    n_samples = 20000
    exact = torch.stack([fattr.integrated_gradients(net, x, refs[m:m + 1], 64, target=0) for m in range(3)]).mean(0)
    ours = fattr.expected_gradients(net, x, refs, n_samples, target=0, generator=torch.Generator().manual_seed(5))
    state, np_state = torch.get_rng_state(), np.random.get_state()
    torch.manual_seed(5)  # Captum draws from the global torch and numpy RNGs: seed them, then restore them
    np.random.seed(5)
    try:
        theirs = captum_attr.GradientShap(net).attribute(x, refs, n_samples=n_samples, stdevs=0.0, target=0)
    finally:
        torch.set_rng_state(state)
        np.random.set_state(np_state)
    tol = 5 * float(exact.abs().max()) / math.sqrt(n_samples)
    torch.testing.assert_close(ours.detach(), exact.detach(), rtol=0, atol=tol)
    torch.testing.assert_close(theirs.detach(), exact.detach(), rtol=0, atol=tol)
