"""The batched surrogate fits of LIME / KernelSHAP against scikit-learn (one fit per example)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fattr._src.perturbation.linear import lasso, weighted_least_squares

sklearn = pytest.importorskip("sklearn.linear_model")


def problem(b: int, n: int, f: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(b, n, f, generator=g, dtype=torch.float64) < 0.5).double()
    y = x @ torch.randn(f, generator=g, dtype=torch.float64) + 0.1 * torch.randn(b, n, generator=g,
                                                                                    dtype=torch.float64)
    w = torch.rand(b, n, generator=g, dtype=torch.float64) + 0.05
    return x, y, w


def objective(x, y, w, beta, alpha):
    """scikit-learn's Lasso objective with sample weights and intercept, per example."""
    total = w.sum(1, keepdim=True)
    xm = (w.unsqueeze(2) * x).sum(1, keepdim=True) / total.unsqueeze(2)
    ym = (w * y).sum(1, keepdim=True) / total
    r = (y - ym) - ((x - xm) @ beta.unsqueeze(2)).squeeze(2)
    return (w * r ** 2).sum(1) / (2 * total.squeeze(1)) + alpha * beta.abs().sum(1)


@pytest.mark.parametrize("alpha", [0.001, 0.01, 0.2])
@pytest.mark.parametrize("shape", [(3, 30, 5), (4, 60, 12)])
def test_lasso_is_the_exact_minimiser(shape, alpha):
    x, y, w = problem(*shape, seed=shape[2])
    ours = lasso(x, y, w, alpha)
    for i in range(shape[0]):
        ref = sklearn.Lasso(alpha=alpha, tol=1e-14, max_iter=200000).fit(x[i].numpy(), y[i].numpy(),
                                                                         sample_weight=w[i].numpy())
        np.testing.assert_allclose(ours[i].numpy(), ref.coef_, rtol=0, atol=1e-9)


def test_lasso_underdetermined_is_no_worse_than_scikit_learn():
    """Fewer samples than features: many minimisers; fattr's objective is at most scikit-learn's."""
    x, y, w = problem(4, 20, 48, seed=1)
    ours = objective(x, y, w, lasso(x, y, w, 0.01), 0.01)
    theirs = torch.stack([torch.as_tensor(sklearn.Lasso(alpha=0.01).fit(
        x[i].numpy(), y[i].numpy(), sample_weight=w[i].numpy()).coef_) for i in range(4)])
    assert (ours <= objective(x, y, w, theirs, 0.01) + 1e-9).all()


def test_lasso_is_differentiable_on_its_support():
    x, y, w = problem(2, 30, 4, seed=3)
    y = y.requires_grad_()
    torch.autograd.gradcheck(lambda t: lasso(x, t, w, 0.01), (y,))


@pytest.mark.parametrize("shape", [(3, 30, 5), (2, 8, 12)])
def test_weighted_least_squares_is_scikit_learns(shape):
    x, y, w = problem(*shape, seed=7)
    ours = weighted_least_squares(x, y, w)
    for i in range(shape[0]):
        ref = sklearn.LinearRegression().fit(x[i].numpy(), y[i].numpy(), sample_weight=w[i].numpy())
        np.testing.assert_allclose(ours[i].numpy(), ref.coef_, rtol=0, atol=1e-8)
