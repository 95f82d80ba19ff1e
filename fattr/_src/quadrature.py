"""Quadrature rules on [0, 1]: nodes (alphas) and weights, computed in float64.

========================  =========================  ================================
method                    alphas (k = 0 .. n-1)      weights
========================  =========================  ================================
``riemann_left``          ``k / n``                  ``1 / n``
``riemann_right``         ``(k + 1) / n``            ``1 / n``
``riemann_middle``        ``(k + 1/2) / n``          ``1 / n``
``riemann_trapezoid``     ``k / (n - 1)``            ``1 / (n - 1)``, halved at both ends
``gausslegendre``         ``(x_k + 1) / 2``          ``w_k / 2`` (Legendre nodes x_k, w_k)
========================  =========================  ================================

Every rule's weights sum to 1. Captum's trapezoid weights sum to ``(n - 1) / n``
(its attributions are that factor too small); fattr uses the textbook rule.
An ``n``-point Gauss-Legendre rule integrates polynomials of degree ``2n - 1`` exactly.
"""
from __future__ import annotations

from typing import Callable, Tuple, Union

import numpy as np
import torch

from .errors import Shown, check_positive_int, fail

Rule = Callable[[int], Tuple[torch.Tensor, torch.Tensor]]
Method = Union[str, Rule]

METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


def _assume_constant(fn):
    mark = getattr(getattr(torch, "compiler", None), "assume_constant_result", None)
    return mark(fn) if mark is not None else fn


_CACHE: dict = {}


@_assume_constant
def _nodes(method: str, n: int) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Nodes and weights as Python floats (float64), cached; a constant for ``torch.compile``."""
    key = (method, n)
    if key not in _CACHE:
        a, w = _nodes_np(method, n)
        _CACHE[key] = (tuple(a.tolist()), tuple(w.tolist()))
    return _CACHE[key]


def _nodes_np(method: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(n, dtype=np.float64)
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n)
        return (x + 1.0) / 2.0, w / 2.0
    if method == "riemann_trapezoid":
        if n == 1:  # one node: the midpoint rule is the only sensible 1-point trapezoid
            return np.array([0.5]), np.array([1.0])
        w = np.full(n, 1.0 / (n - 1))
        w[0] = w[-1] = 0.5 / (n - 1)
        return k / (n - 1), w
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
    return (k + offset) / n, np.full(n, 1.0 / n)


def quadrature(method: Method, n_steps: int, *, dtype: torch.dtype = torch.float64,
               device: Union[torch.device, str, None] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of a quadrature rule on [0, 1].

    Args:
      method: one of ``"riemann_left"``, ``"riemann_right"``, ``"riemann_middle"``,
        ``"riemann_trapezoid"``, ``"gausslegendre"``, or a callable ``n_steps -> (alphas, weights)``.
      n_steps: number of nodes, >= 1.
      dtype, device: of the returned tensors (computed in float64, then cast).

    Returns:
      ``(alphas, weights)``, two 1-D tensors of length ``n_steps``; the weights sum to 1.

    Example:
      >>> import fattr, torch
      >>> alphas, weights = fattr.quadrature("riemann_trapezoid", 3)
      >>> alphas.tolist(), weights.tolist()
      ([0.0, 0.5, 1.0], [0.25, 0.5, 0.25])
      >>> a, w = fattr.quadrature("gausslegendre", 4)   # exact for cubics' integrals up to degree 7
      >>> float((w * a**7).sum()) - 1 / 8 < 1e-15
      True
    """
    n_steps = check_positive_int("n_steps", n_steps)
    if callable(method):
        got = method(n_steps)
        if not (isinstance(got, tuple) and len(got) == 2):
            fail("method", "a callable returning (alphas, weights)", got, kind=TypeError)
        alphas, weights = (torch.as_tensor(t, dtype=torch.float64) for t in got)
        if alphas.shape != (n_steps,) or weights.shape != (n_steps,):
            fail("method", f"a callable returning two 1-D tensors of length n_steps={n_steps}",
                 Shown(f"shapes {tuple(alphas.shape)} and {tuple(weights.shape)}"))
    elif isinstance(method, str) and method in METHODS:
        a, w = _nodes(method, n_steps)
        alphas = torch.tensor(a, dtype=torch.float64)
        weights = torch.tensor(w, dtype=torch.float64)
    else:
        fail("method", "one of " + ", ".join(repr(m) for m in METHODS) + " or a callable n_steps -> (alphas, weights)",
             method, kind=TypeError if not isinstance(method, str) else ValueError)
    return alphas.to(dtype=dtype, device=device), weights.to(dtype=dtype, device=device)
