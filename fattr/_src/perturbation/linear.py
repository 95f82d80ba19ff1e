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
from torch import Tensor


def _scaled(x: Tensor, y: Tensor, w: Tensor) -> Tuple[Tensor, Tensor]:
    """``(A, r)`` with the weighted squared loss ``|A beta - r|^2 / 2`` (the lasso's, and a multiple of the least
    squares'): rows centred on the weighted means (the intercept) and scaled by ``sqrt(w / sum w)``."""
    total = w.sum(1, keepdim=True)
    xm = (w.unsqueeze(2) * x).sum(1, keepdim=True) / total.unsqueeze(2)
    ym = (w * y).sum(1, keepdim=True) / total
    root = (w.clamp(min=0) / total).sqrt()
    return root.unsqueeze(2) * (x - xm), root * (y - ym)


def weighted_least_squares(x: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """Coefficients ``(B, F)`` of the weighted least-squares fits with intercept."""
    a, r = _scaled(x, y, w)
    return (torch.linalg.pinv(a) @ r.unsqueeze(2)).squeeze(2)


def _mv(a: Tensor, v: Tensor) -> Tensor:
    return (a @ v.unsqueeze(2)).squeeze(2)


def _polish(a: Tensor, r: Tensor, alpha: float, active: Tensor, sign: Tensor) -> Tensor:
    """The (minimum-norm) lasso solution for a given support and signs: ``A_S^T A_S beta_S = A_S^T r - alpha
    sign_S``, 0 elsewhere, as ``pinv(A_S) pinv(A_S)^T (A_S^T r - alpha sign_S)`` (samples x features only)."""
    rhs = torch.where(active, _mv(a.transpose(1, 2), r) - alpha * sign, torch.zeros_like(sign))
    p = torch.linalg.pinv(a * active.unsqueeze(1).to(a.dtype))  # (B, F, n)
    return _mv(p, _mv(p.transpose(1, 2), rhs))


def _optimal(a: Tensor, r: Tensor, alpha: float, beta: Tensor, active: Tensor, sign: Tensor) -> Tensor:
    """Per example, whether ``beta`` (with support ``active``) satisfies the lasso's optimality conditions:
    signs as assumed on the support, ``|gradient| <= alpha`` off it, stationarity on it."""
    grad = _mv(a.transpose(1, 2), _mv(a, beta) - r)
    slack = 1e-9 * (alpha + _mv(a.transpose(1, 2), r).abs().amax(1, keepdim=True))
    signs = ((torch.sign(beta) == sign) | ~active).all(1)
    outside = ((grad.abs() <= alpha + slack) | active).all(1)
    return signs & outside & (((grad + alpha * sign).abs() <= slack) | ~active).all(1)


def _fista(a: Tensor, r: Tensor, alpha: float, max_iter: int) -> Tuple[Tensor, Tensor]:
    """FISTA's iterate and, per example, whether it is optimal polished on its support (``a``, ``r`` detached)."""
    step = 1.0 / (torch.linalg.matrix_norm(a, ord=2).unsqueeze(1) ** 2).clamp(min=torch.finfo(a.dtype).tiny)
    beta = torch.zeros(a.shape[0], a.shape[2], dtype=a.dtype, device=a.device)
    z, t, check = beta, 1.0, 10
    for i in range(1, max_iter + 1):
        v = z - step * _mv(a.transpose(1, 2), _mv(a, z) - r)
        new = torch.sign(v) * (v.abs() - step * alpha).clamp(min=0)  # soft thresholding
        t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
        z = new + ((t - 1) / t_new) * (new - beta)
        beta, t = new, t_new
        if i == check or i == max_iter:
            check *= 2
            active, sign = beta != 0, torch.sign(beta)
            if bool(_optimal(a, r, alpha, _polish(a, r, alpha, active, sign), active, sign).all()):
                break
    active, sign = beta != 0, torch.sign(beta)
    return beta, _optimal(a, r, alpha, _polish(a, r, alpha, active, sign), active, sign).unsqueeze(1)


# a loop stopping on the data: Dynamo ran it eagerly with each helper a compiled frame (guarded every call)
_fista_eagerly = torch.compiler.disable(_fista, reason="FISTA's loop stops on the data")


def lasso(x: Tensor, y: Tensor, w: Tensor, alpha: float, *, max_iter: int = 1000) -> Tensor:
    """Coefficients ``(B, F)`` of the weighted lasso fits with intercept (see the module docstring).

    FISTA runs until, for every example, the solution polished on its current support satisfies the
    lasso's optimality (KKT) conditions (checked after 10, 20, 40, ... iterations): the polished
    solution is then the exact minimiser. Examples not there after ``max_iter`` iterations keep
    FISTA's iterate (as scikit-learn stops at its ``max_iter=1000``; an underdetermined fit, fewer
    samples than features, may have many minimisers). Every step works on the ``samples x features``
    design (no ``features x features`` Gram matrix), in float64; returned in ``y``'s dtype. Under
    ``torch.compile`` FISTA runs eagerly (its loop stops on the data), the polished solution compiles."""
    a, r = _scaled(x.double(), y.double(), w.double())
    beta, exact = _fista_eagerly(a.detach(), r.detach(), alpha, max_iter)
    active, sign = beta != 0, torch.sign(beta)
    # differentiable: the exact solution on its support (the lasso's derivative with the support fixed)
    return torch.where(exact, _polish(a, r, alpha, active, sign), beta).to(y.dtype)
