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
Its nodes come from ``numpy.polynomial.legendre.leggauss`` up to 100 nodes (an
eigenvalue problem: O(n^2) memory, O(n^3) time) and, beyond, from Newton's iteration on
the three-term recurrence started at Tricomi's asymptotic nodes (O(n) memory, O(n^2)
time: ~0.1 s for 3 000 nodes, ~1 s for the largest rule, :data:`MAX_GAUSS_LEGENDRE`
nodes; numpy needs 4.6 s for 3 000). Rules are cached.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Optional, Tuple, Union

import numpy as np
import torch

from .errors import Shown, check_positive_int, fail
from .tracing import is_compiling

Rule = Callable[[int], Tuple[torch.Tensor, torch.Tensor]]
Method = Union[str, Rule]

METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
MAX_GAUSS_LEGENDRE = 20_000  # O(n^2) time: about a second at this size, once (cached)
_EIGEN_UP_TO = 100  # numpy's leggauss (Golub-Welsch, O(n^2) memory) up to here
_CACHE_SIZE = 16
_TENSOR_CACHE_SIZE = 32


_CACHE: "OrderedDict[Tuple[str, int], Tuple[Tuple[float, ...], Tuple[float, ...]]]" = OrderedDict()
_LOCK = threading.Lock()


@torch.compiler.assume_constant_result  # type: ignore[untyped-decorator]
def _nodes(method: str, n: int) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Nodes and weights as Python floats (float64), cached (the last few rules); a constant for
    ``torch.compile``."""
    key = (method, n)
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    a, w = _nodes_np(method, n)
    value = (tuple(a.tolist()), tuple(w.tolist()))
    with _LOCK:
        _CACHE[key] = value
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return value


def _legendre(n: int, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``P_n(x)`` and ``P_{n-1}(x)`` by the three-term recurrence (O(len(x)) memory)."""
    p0, p1, t = np.ones_like(x), x.copy(), np.empty_like(x)
    for j in range(2, n + 1):  # p_j = ((2j - 1) x p_{j-1} - (j - 1) p_{j-2}) / j, in place
        np.multiply(x, p1, out=t)
        t *= (2 * j - 1) / j
        p0 *= (j - 1) / j
        t -= p0
        p0, p1, t = p1, t, p0
    return p1, p0


def legendre_newton(n: int) -> Tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [-1, 1], ascending, in O(n) memory.

    The nodes ``cos(theta_k)`` of the nonnegative half (the rule is symmetric), started at
    Tricomi's asymptotic approximation ``x ~ (1 - (n-1)/(8 n^3) - (39 - 28/sin^2 t)/(384 n^4)) cos t``,
    ``t = pi (4k - 1)/(4n + 2)``, refined by Newton's iteration on ``P_n(cos theta)`` in ``theta``;
    weights ``2 sin^2 theta / (n (x P_n(x) - P_{n-1}(x)))^2`` (``2 / ((1 - x^2) P_n'(x)^2)`` without the
    cancellation of ``1 - x^2`` near the ends).
    """
    if n == 1:
        return np.zeros(1), np.full(1, 2.0)
    m = (n + 1) // 2
    t = np.pi * (4 * np.arange(1, m + 1, dtype=np.float64) - 1) / (4 * n + 2)
    theta = np.arccos((1 - (n - 1) / (8.0 * n ** 3) - (39 - 28 / np.sin(t) ** 2) / (384.0 * n ** 4)) * np.cos(t))
    active = np.arange(m)  # the nodes still moving: after one step, only a few near the ends
    for _ in range(10):  # one to three steps from these starting points
        x, sin = np.cos(theta[active]), np.sin(theta[active])
        p, q = _legendre(n, x)
        numerator = n * (x * p - q)  # = -(1 - x^2) P_n'(x) = -sin^2(theta) P_n'(x)
        step = p * sin / numerator   # P_n / (d/dtheta P_n(cos theta)), d/dtheta = sin * numerator / sin^2
        theta[active] -= step
        active = active[np.abs(step) > 1e-11]  # quadratic convergence: the error left is ~ n * step^2 < 1e-16
        if active.size == 0:
            break
    x, sin = np.cos(theta), np.sin(theta)
    p, q = _legendre(n, x)
    w = 2.0 * sin * sin / (n * (x * p - q)) ** 2
    if n % 2:  # the middle node is 0 exactly
        x[-1] = 0.0
    # descending nonnegative half -> the whole rule, ascending
    xs = np.concatenate([-x, x[::-1][n % 2:]])
    ws = np.concatenate([w, w[::-1][n % 2:]])
    return xs, ws


def _nodes_np(method: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(n, dtype=np.float64)
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n) if n <= _EIGEN_UP_TO else legendre_newton(n)
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
    alphas, weights = rule(method, n_steps, dtype=dtype, device=device)
    return alphas.clone(), weights.clone()


_Key = Tuple[str, int, torch.dtype, torch.dtype, torch.device]
_TENSORS: "OrderedDict[_Key, Tuple[torch.Tensor, torch.Tensor]]" = OrderedDict()


def rule(method: Method, n_steps: int, *, dtype: torch.dtype = torch.float64,
         device: Union[torch.device, str, None] = None,
         weights_dtype: Optional[torch.dtype] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`quadrature` for fattr's own use (the weights in ``weights_dtype``, default ``dtype``):
    a named rule's tensors are cached per ``(method, n_steps, dtypes, device)`` (the last few) and
    shared between calls, so they must never be modified in place. A callable ``method`` is called
    every time (not cached); under ``torch.compile`` nothing is cached."""
    weights_dtype = dtype if weights_dtype is None else weights_dtype
    if isinstance(method, str) and not isinstance(n_steps, bool) and isinstance(n_steps, int) \
            and not is_compiling():
        where = torch.device("cpu") if device is None else torch.device(device)
        key = (method, n_steps, dtype, weights_dtype, where)
        if key[4].type != "cpu" and key[4].index is None:  # "cuda": whichever device is current
            return _build(method, n_steps, dtype, weights_dtype, device)
        with _LOCK:
            hit = _TENSORS.get(key)
            if hit is not None:
                _TENSORS.move_to_end(key)
                return hit
        with torch.inference_mode(False):  # plain tensors, usable in graphs whatever the caller's mode
            value = _build(method, n_steps, dtype, weights_dtype, key[4])
        with _LOCK:
            _TENSORS[key] = value
            while len(_TENSORS) > _TENSOR_CACHE_SIZE:
                _TENSORS.popitem(last=False)
        return value
    return _build(method, n_steps, dtype, weights_dtype, device)


def _build(method: Method, n_steps: int, dtype: torch.dtype, weights_dtype: torch.dtype,
           device: Union[torch.device, str, None]) -> Tuple[torch.Tensor, torch.Tensor]:
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
        if method == "gausslegendre" and n_steps > MAX_GAUSS_LEGENDRE:
            fail("n_steps", f"at most {MAX_GAUSS_LEGENDRE} for method='gausslegendre' (its nodes take O(n^2) "
                 "time to compute)", n_steps, "At this many steps use method='riemann_middle', whose error "
                 "(O(1/n^2)) is already below float32 rounding, or fewer Gauss-Legendre nodes: they converge "
                 "much faster.")
        a, w = _nodes(method, n_steps)
        alphas = torch.tensor(a, dtype=torch.float64)
        weights = torch.tensor(w, dtype=torch.float64)
    else:
        fail("method", "one of " + ", ".join(repr(m) for m in METHODS) + " or a callable n_steps -> (alphas, weights)",
             method, kind=TypeError if not isinstance(method, str) else ValueError)
    return alphas.to(dtype=dtype, device=device), weights.to(dtype=weights_dtype, device=device)
