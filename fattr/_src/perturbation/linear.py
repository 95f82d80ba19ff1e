"""Batched surrogate fits for LIME and KernelSHAP: one weighted linear model per example, all at once.

Each example ``b`` has its own design ``X[b]`` ``(n, F)``, targets ``y[b]`` ``(n,)`` and sample
weights ``w[b]`` ``(n,)``; both fits have an intercept (centred with the weighted means), as
scikit-learn's ``LinearRegression`` and ``Lasso`` that Captum uses:

* :func:`weighted_least_squares`: the minimum-norm minimiser of ``sum_i w_i (y_i - c - X_i beta)^2``
  (a batched pseudo-inverse, like scikit-learn's ``lstsq``);
* :func:`lasso`: the minimiser of ``1 / (2 sum_i w_i) * sum_i w_i (y_i - c - X_i beta)^2 + alpha |beta|_1``
  (scikit-learn's ``Lasso`` objective with ``sample_weight``), by accelerated proximal gradient
  (FISTA) to convergence, then polished on its support by one linear solve, which makes the
  result exact and differentiable (its derivative is the lasso's, with the support fixed).
"""
from __future__ import annotations

from typing import Tuple

import torch

Tensor = torch.Tensor


def _centred(x: Tensor, y: Tensor, w: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    total = w.sum(1, keepdim=True)
    xm = (w.unsqueeze(2) * x).sum(1, keepdim=True) / total.unsqueeze(2)
    ym = (w * y).sum(1, keepdim=True) / total
    return x - xm, y - ym, total


def weighted_least_squares(x: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """Coefficients ``(B, F)`` of the weighted least-squares fits with intercept."""
    xc, yc, _ = _centred(x, y, w)
    root = w.clamp(min=0).sqrt()
    design = root.unsqueeze(2) * xc
    return (torch.linalg.pinv(design) @ (root * yc).unsqueeze(2)).squeeze(2)


def _soft(v: Tensor, t: Tensor) -> Tensor:
    return torch.sign(v) * (v.abs() - t).clamp(min=0)


def _polish(gram: Tensor, corr: Tensor, alpha: float, active: Tensor, sign: Tensor) -> Tensor:
    """The lasso solution for a given support and signs: ``gram_AA beta_A = corr_A - alpha sign_A``, 0 elsewhere."""
    both = active.unsqueeze(2) & active.unsqueeze(1)
    eye = torch.eye(gram.shape[1], dtype=gram.dtype, device=gram.device).expand_as(gram)
    system = torch.where(both, gram, eye)
    rhs = torch.where(active, corr - alpha * sign, torch.zeros_like(corr))
    return (torch.linalg.pinv(system) @ rhs.unsqueeze(2)).squeeze(2)


def _optimal(gram: Tensor, corr: Tensor, alpha: float, beta: Tensor, active: Tensor, sign: Tensor) -> Tensor:
    """Per example, whether ``beta`` (with support ``active``) satisfies the lasso's optimality conditions:
    signs as assumed on the support, ``|gradient| <= alpha`` off it, stationarity on it."""
    grad = (gram @ beta.unsqueeze(2)).squeeze(2) - corr
    slack = 1e-9 * (alpha + corr.abs().amax(1, keepdim=True))
    signs = ((torch.sign(beta) == sign) | ~active).all(1)
    outside = ((grad.abs() <= alpha + slack) | active).all(1)
    inside = (((grad + alpha * sign).abs() <= slack) | ~active).all(1)
    return signs & outside & inside


def lasso(x: Tensor, y: Tensor, w: Tensor, alpha: float, *, max_iter: int = 1000) -> Tensor:
    """Coefficients ``(B, F)`` of the weighted lasso fits with intercept (see the module docstring).

    FISTA runs until, for every example, the solution polished on its current support satisfies the
    lasso's optimality (KKT) conditions (checked after 10, 20, 40, ... iterations): the polished
    solution is then the exact minimiser. Examples not there after ``max_iter`` iterations keep
    FISTA's iterate (as scikit-learn stops at its ``max_iter=1000``; an underdetermined fit, fewer
    samples than features, may have many minimisers). Computed in float64, returned in ``y``'s dtype."""
    dtype = y.dtype
    x, y, w = x.double(), y.double(), w.double()
    xc, yc, total = _centred(x, y, w)
    gram = (xc.transpose(1, 2) * w.unsqueeze(1)) @ xc / total.unsqueeze(2)  # (B, F, F)
    corr = ((xc * w.unsqueeze(2)).transpose(1, 2) @ yc.unsqueeze(2)).squeeze(2) / total  # (B, F)
    with torch.no_grad():
        g, c = gram.detach(), corr.detach()
        lipschitz = torch.linalg.eigvalsh(g)[:, -1:].clamp(min=torch.finfo(g.dtype).tiny)  # (B, 1)
        step = 1.0 / lipschitz
        beta = torch.zeros_like(c)
        z, t, check = beta, 1.0, 10
        for i in range(1, max_iter + 1):
            new = _soft(z - step * ((g @ z.unsqueeze(2)).squeeze(2) - c), step * alpha)
            t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
            z = new + ((t - 1) / t_new) * (new - beta)
            beta, t = new, t_new
            if i == check or i == max_iter:
                check *= 2
                active, sign = beta != 0, torch.sign(beta)
                if bool(_optimal(g, c, alpha, _polish(g, c, alpha, active, sign), active, sign).all()):
                    break
        active, sign = beta != 0, torch.sign(beta)
        exact = _optimal(g, c, alpha, _polish(g, c, alpha, active, sign), active, sign).unsqueeze(1)
    # differentiable: the exact solution on its support (the lasso's derivative with the support fixed)
    return torch.where(exact, _polish(gram, corr, alpha, active, sign), beta).to(dtype)
