"""Quadrature rules: nodes, weights, exactness, error terms, dtypes and the Captum relation.

Tolerances: weights and nodes are computed in float64 from closed forms (or numpy's
``leggauss``); sums of ``n <= 200`` of them are exact to a few ulps, so ``1e-13``
(absolute, the values are O(1)) leaves > 100x headroom while catching any
mis-scaled rule (Captum's trapezoid is off by ``1/n >= 0.005``).
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fattr

METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
TOL = 1e-13


def _exact_rule(method: str, n: int) -> tuple[list[Fraction], list[Fraction]]:
    """The Riemann rules of DESIGN.md in exact rational arithmetic."""
    k = range(n)
    if method == "riemann_trapezoid":
        if n == 1:
            return [Fraction(1, 2)], [Fraction(1)]
        w = [Fraction(1, n - 1)] * n
        w[0] = w[-1] = Fraction(1, 2 * (n - 1))
        return [Fraction(i, n - 1) for i in k], w
    offset = {"riemann_left": Fraction(0), "riemann_right": Fraction(1), "riemann_middle": Fraction(1, 2)}[method]
    return [(i + offset) / n for i in k], [Fraction(1, n)] * n


@given(method=st.sampled_from(METHODS), n=st.integers(1, 200))
def test_weights_sum_to_one_and_nodes_lie_in_the_unit_interval(method: str, n: int) -> None:
    alphas, weights = fattr.quadrature(method, n)
    assert alphas.shape == weights.shape == (n,)
    assert alphas.dtype == weights.dtype == torch.float64
    assert abs(float(weights.sum()) - 1.0) <= TOL
    assert bool((alphas >= 0).all() and (alphas <= 1).all())
    assert bool((weights > 0).all())
    assert bool((alphas[1:] > alphas[:-1]).all())


@given(method=st.sampled_from(METHODS), n=st.integers(1, 60))
def test_symmetric_rules_are_symmetric(method: str, n: int) -> None:
    """Middle, trapezoid and Gauss-Legendre are symmetric about 1/2; left and right mirror each other."""
    alphas, weights = fattr.quadrature(method, n)
    if method in ("riemann_left", "riemann_right"):
        other = "riemann_right" if method == "riemann_left" else "riemann_left"
        mirror, mirror_w = fattr.quadrature(other, n)
        torch.testing.assert_close(alphas, 1 - mirror.flip(0), rtol=0, atol=TOL)
        torch.testing.assert_close(weights, mirror_w.flip(0), rtol=0, atol=TOL)
    else:
        torch.testing.assert_close(alphas + alphas.flip(0), torch.ones_like(alphas), rtol=0, atol=TOL)
        torch.testing.assert_close(weights, weights.flip(0), rtol=0, atol=TOL)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 50])
@pytest.mark.parametrize("method", METHODS[1:])
def test_riemann_rules_follow_the_design_table(method: str, n: int) -> None:
    alphas, weights = fattr.quadrature(method, n)
    exact_a, exact_w = _exact_rule(method, n)
    # each float64 entry is the correctly rounded rational (or within one ulp of it)
    torch.testing.assert_close(alphas, torch.tensor([float(a) for a in exact_a], dtype=torch.float64),
                               rtol=2 ** -52, atol=0)
    torch.testing.assert_close(weights, torch.tensor([float(w) for w in exact_w], dtype=torch.float64),
                               rtol=2 ** -52, atol=0)


@pytest.mark.parametrize("n", [1, 2, 5, 20, 64])
def test_gauss_legendre_is_numpys_rule_rescaled(n: int) -> None:
    x, w = np.polynomial.legendre.leggauss(n)
    alphas, weights = fattr.quadrature("gausslegendre", n)
    torch.testing.assert_close(alphas, torch.from_numpy((x + 1) / 2), rtol=0, atol=1e-15)
    torch.testing.assert_close(weights, torch.from_numpy(w / 2), rtol=0, atol=1e-15)


@given(data=st.data(), n=st.integers(1, 25))
def test_gauss_legendre_is_exact_up_to_degree_2n_minus_1(data, n: int) -> None:
    """sum_k w_k a_k^d = 1/(d+1) for every d <= 2n-1."""
    degree = data.draw(st.integers(0, 2 * n - 1), label="degree")
    alphas, weights = fattr.quadrature("gausslegendre", n)
    assert abs(float((weights * alphas ** degree).sum()) - 1 / (degree + 1)) <= TOL


@pytest.mark.parametrize("n", range(1, 9))
def test_gauss_legendre_misses_degree_2n_by_its_remainder(n: int) -> None:
    """The n-point rule is not exact for a^(2n): its remainder on [0, 1] is (n!)^4 / ((2n+1) ((2n)!)^2)."""
    alphas, weights = fattr.quadrature("gausslegendre", n)
    err = float((weights * alphas ** (2 * n)).sum()) - 1 / (2 * n + 1)
    expected = -math.factorial(n) ** 4 / ((2 * n + 1) * math.factorial(2 * n) ** 2)
    assert math.isclose(err, expected, rel_tol=1e-6)


@given(n=st.integers(2, 300))
def test_riemann_error_terms_on_a_quadratic(n: int) -> None:
    """Integrating a^2 on [0, 1] (exact 1/3), each rule's error has a closed form in n."""
    def integral(method: str) -> float:
        a, w = fattr.quadrature(method, n)
        return float((w * a ** 2).sum())

    exact = 1 / 3
    assert math.isclose(integral("riemann_middle") - exact, -1 / (12 * n ** 2), rel_tol=1e-8, abs_tol=1e-15)
    assert math.isclose(integral("riemann_trapezoid") - exact, 1 / (6 * (n - 1) ** 2), rel_tol=1e-8,
                        abs_tol=1e-15)
    assert math.isclose(integral("riemann_left") - exact, -1 / (2 * n) + 1 / (6 * n ** 2), rel_tol=1e-8)
    assert math.isclose(integral("riemann_right") - exact, 1 / (2 * n) + 1 / (6 * n ** 2), rel_tol=1e-8)


@pytest.mark.parametrize("n", [2, 3, 4, 10, 50, 51])
def test_captums_trapezoid_weights_sum_to_n_minus_1_over_n(n: int) -> None:
    """The documented difference: Captum's trapezoid weights are fattr's times (n-1)/n (so sum to that)."""
    from captum.attr._utils.approximation_methods import approximation_parameters
    step_sizes, alphas = approximation_parameters("riemann_trapezoid")
    theirs = torch.tensor(step_sizes(n), dtype=torch.float64)
    a, w = fattr.quadrature("riemann_trapezoid", n)
    torch.testing.assert_close(theirs, w * (n - 1) / n, rtol=2 ** -51, atol=0)
    assert math.isclose(float(theirs.sum()), (n - 1) / n, rel_tol=1e-14)
    torch.testing.assert_close(torch.tensor(alphas(n), dtype=torch.float64), a, rtol=0, atol=2 ** -24)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("method", METHODS)
def test_dtype_is_a_cast_of_the_float64_rule(method: str, dtype: torch.dtype) -> None:
    a64, w64 = fattr.quadrature(method, 11)
    a, w = fattr.quadrature(method, 11, dtype=dtype, device="cpu")
    assert a.dtype == w.dtype == dtype and a.device.type == "cpu"
    assert torch.equal(a, a64.to(dtype)) and torch.equal(w, w64.to(dtype))


def test_returned_tensors_are_fresh() -> None:
    """Rules are cached internally; writing into a returned tensor must not change later calls."""
    a, w = fattr.quadrature("gausslegendre", 6)
    a_copy, w_copy = a.clone(), w.clone()
    a.zero_()
    w.fill_(3.0)
    again_a, again_w = fattr.quadrature("gausslegendre", 6)
    assert torch.equal(again_a, a_copy) and torch.equal(again_w, w_copy)


def test_a_callable_rule_is_used_as_given() -> None:
    rule = lambda n: (torch.linspace(0.1, 0.9, n), torch.full((n,), 1.0 / n))  # noqa: E731
    a, w = fattr.quadrature(rule, 5)
    assert a.dtype == w.dtype == torch.float64
    torch.testing.assert_close(a, torch.linspace(0.1, 0.9, 5).double())
    # numpy arrays and lists work too, and the dtype argument applies
    a, w = fattr.quadrature(lambda n: (np.linspace(0, 1, n), [1.0 / n] * n), 4, dtype=torch.float32)
    assert a.dtype == torch.float32 and w.tolist() == [0.25] * 4


@pytest.mark.parametrize("method,alpha", [("riemann_left", 0.0), ("riemann_right", 1.0),
                                          ("riemann_middle", 0.5), ("riemann_trapezoid", 0.5),
                                          ("gausslegendre", 0.5)])
def test_one_step(method: str, alpha: float) -> None:
    """n_steps=1 works for every rule (Captum asserts n > 1 for Riemann rules); one-point trapezoid = midpoint."""
    a, w = fattr.quadrature(method, 1)
    assert a.tolist() == [alpha] and w.tolist() == [1.0]


@pytest.mark.parametrize("bad,kind,words", [
    ("simpson", ValueError, ["method", "'gausslegendre'", "'riemann_trapezoid'", "simpson"]),
    (3, TypeError, ["method"]),
    (lambda n: torch.ones(n), TypeError, ["method", "(alphas, weights)"]),
    (lambda n: (torch.ones(n + 1), torch.ones(n)), ValueError, ["method", "length n_steps=4"]),
])
def test_bad_method(bad, kind, words) -> None:
    with pytest.raises(kind) as info:
        fattr.quadrature(bad, 4)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("n,kind", [(0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError)])
def test_bad_n_steps(n, kind) -> None:
    with pytest.raises(kind, match="n_steps"):
        fattr.quadrature("riemann_left", n)
