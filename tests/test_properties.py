"""Property tests of the core methods (Hypothesis, deterministic ``ci`` profile from conftest).

The axioms (completeness, linearity, dummy, symmetry) in float64, exactness of the
quadrature through the whole IG pipeline, float64 accuracy against closed-form
integrals, convergence of the delta with ``n_steps``, and simple references kept
beside the fast code: a Python loop over steps with ``torch.autograd.grad``
(naive IG), finite differences, and loops over the samples a stochastic method
actually drew.

Tolerances (float64, eps = 2.2e-16): results assembled from <= 64 steps of sums
over a handful of features agree with a reference computed in another order to
~1e-15 relative to the attribution scale; ``REL = 1e-12`` leaves > 1000x headroom
and still catches any missing weight, step or factor. Exact checks (dummy,
symmetry) use equality: the same floating-point operations give the same bits.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import fattr
from conftest import completeness_gap, make_mlp, make_two_input, randn

REL = 1e-12
METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
seeds = st.integers(0, 2 ** 20)
methods = st.sampled_from(METHODS)


def close(actual: Any, expected: Any, rel: float = REL) -> None:
    """``|a - e| <= rel * max|e|`` elementwise (per tensor of a tuple): the tolerance scales with the values."""
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            close(a, e, rel)
        return
    actual, expected = actual.detach(), expected.detach()
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=0, atol=rel * max(scale, 1e-300))


def _tup(x: Any) -> tuple:
    return x if isinstance(x, tuple) else (x,)


# --------------------------------------------------------------------------- references

def naive_ig(f: Callable, inputs: Any, baselines: Any, alphas: torch.Tensor, weights: torch.Tensor,
             target: Any, args: tuple = ()) -> Any:
    """Integrated gradients by a Python loop over steps with ``torch.autograd.grad`` (no fattr code)."""
    xs, bs = _tup(inputs), _tup(baselines)
    total = [torch.zeros_like(x) for x in xs]
    for a, w in zip(alphas.tolist(), weights.tolist(), strict=True):
        pts = [(b + a * (x - b)).detach().requires_grad_() for x, b in zip(xs, bs, strict=True)]
        out = f(*pts, *args)
        sel = _select(out, target)
        grads = torch.autograd.grad(sel.sum(), pts)
        total = [t + w * g for t, g in zip(total, grads, strict=True)]
    attr = tuple(t * (x - b) for t, x, b in zip(total, xs, bs, strict=True))
    return attr if isinstance(inputs, tuple) else attr[0]


def _select(out: torch.Tensor, target: Any) -> torch.Tensor:
    if target is None:
        return out.reshape(out.shape[0])
    if isinstance(target, int):
        return out[:, target]
    return out[torch.arange(out.shape[0]), torch.as_tensor(target)]


def _grad_loop(f: Callable, x: torch.Tensor, target: Any, args: tuple = ()) -> torch.Tensor:
    """Per-row gradients of the selected output, one row at a time."""
    rows = []
    for i in range(x.shape[0]):
        xi = x[i:i + 1].detach().requires_grad_()
        t = target if not isinstance(target, list) else [target[i]]
        a = tuple(v[i:i + 1] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == x.shape[0] else v
                  for v in args)
        rows.append(torch.autograd.grad(_select(f(xi, *a), t).sum(), xi)[0])
    return torch.cat(rows)


# --------------------------------------------------------------------------- completeness

@given(seed=seeds, method=methods, n=st.integers(1, 12), b=st.integers(1, 4), d=st.integers(1, 6))
def test_completeness_is_exact_for_linear_f_with_every_rule(seed: int, method: str, n: int, b: int,
                                                            d: int) -> None:
    w, c = randn(3, d, seed=seed), randn(3, seed=seed + 1)
    f = lambda x: x @ w.T + c  # noqa: E731
    x, base = randn(b, d, seed=seed + 2), randn(b, d, seed=seed + 3)
    target = [int(t) for t in torch.arange(b) % 3]
    attr, delta = fattr.integrated_gradients(f, x, base, n, method, target=target, return_delta=True)
    close(attr, w[target] * (x - base))
    scale = float((w[target] * (x - base)).abs().sum()) + 1
    gap = completeness_gap(f, x, base, attr, target)  # computed here, not by fattr
    assert float(gap.abs().max()) <= 1e-13 * scale
    torch.testing.assert_close(delta, gap, rtol=0, atol=1e-13 * scale)
    # the local attribution is the (constant) gradient itself
    close(fattr.integrated_gradients(f, x, base, n, method, target=target, multiply_by_inputs=False),
          w[target].clone())


@given(seed=seeds, n=st.integers(1, 6), method=st.sampled_from(("gausslegendre", "riemann_middle",
                                                                 "riemann_trapezoid")))
def test_completeness_is_exact_for_quadratic_f_with_rules_exact_for_lines(seed: int, n: int, method: str) -> None:
    """A quadratic f has a gradient linear along the path: midpoint, trapezoid and Gauss-Legendre are exact."""
    m = randn(4, 4, seed=seed)
    q, c = m + m.T, randn(4, seed=seed + 1)
    f = lambda x: 0.5 * ((x @ q) * x).sum(1) + x @ c  # noqa: E731
    x, base = randn(3, 4, seed=seed + 2), randn(3, 4, seed=seed + 3)
    attr, delta = fattr.integrated_gradients(f, x, base, n, method, return_delta=True)
    # closed form: grad at the midpoint of the segment times (x - b)
    close(attr, ((x + base) / 2 @ q + c) * (x - base))
    gap = completeness_gap(f, x, base, attr)  # computed here, not by fattr
    assert float(gap.abs().max()) <= 1e-13 * (float(attr.abs().sum()) + 1)
    torch.testing.assert_close(delta, gap, rtol=0, atol=1e-13 * (float(attr.abs().sum()) + 1))


def _poly_divided_difference(coef: list[float], s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
    """``(p(s1) - p(s0)) / (s1 - s0)`` for ``p(s) = sum_j c_j s^j``, without dividing (stable at s1 = s0)."""
    out = torch.zeros_like(s0)
    for j, cj in enumerate(coef):
        for m in range(j):
            out = out + cj * s1 ** m * s0 ** (j - 1 - m)
    return out


@given(seed=seeds, degree=st.integers(1, 11), extra=st.integers(0, 2), data=st.data())
def test_gauss_legendre_ig_is_exact_for_polynomials_along_the_path(seed: int, degree: int, extra: int,
                                                                   data) -> None:
    """f = p(v . x) with deg p = d: the integrand has degree d - 1, so n >= d/2 Gauss-Legendre nodes are exact."""
    coef = data.draw(st.lists(st.floats(-1, 1), min_size=degree + 1, max_size=degree + 1), label="coef")
    n = math.ceil(degree / 2) + extra
    v = randn(5, seed=seed)
    v = v / v.norm()
    f = lambda x: sum(cj * (x @ v) ** j for j, cj in enumerate(coef))  # noqa: E731
    x, base = randn(4, 5, seed=seed + 1), randn(4, 5, seed=seed + 2)
    attr = fattr.integrated_gradients(f, x, base, n, "gausslegendre")
    s0, s1 = base @ v, x @ v
    expected = (x - base) * v * _poly_divided_difference(coef, s0, s1)[:, None]
    # rounding bound: every term of the polynomial is at most |c_j| j M^(j-1) in size
    big = max(1.0, float(torch.cat([s0, s1]).abs().max()))
    bound = sum(abs(cj) * j * big ** (j - 1) for j, cj in enumerate(coef)) * (x - base).abs() * v.abs()
    assert bool(((attr - expected).abs() <= 1e-13 * (bound + 1e-300) + 1e-300).all())


@given(seed=seeds, exponents=st.lists(st.integers(0, 3), min_size=4, max_size=4), extra=st.integers(1, 4))
def test_gauss_legendre_ig_is_exact_for_multivariate_monomials(seed: int, exponents: list[int], extra: int) -> None:
    """f = prod_i x_i^e_i has degree d = sum e_i along a straight path: every rule with n >= d/2 nodes is exact,
    so n and n + extra Gauss-Legendre nodes agree to rounding (and differ once n is too small)."""
    d = sum(exponents)
    assume(d >= 1)
    e = torch.tensor(exponents, dtype=torch.float64)
    f = lambda z: (z ** e).prod(1)  # noqa: E731
    x, base = randn(3, 4, seed=seed), randn(3, 4, seed=seed + 1)
    n = math.ceil(d / 2)
    exact = fattr.integrated_gradients(f, x, base, n + extra)
    close(fattr.integrated_gradients(f, x, base, n), exact, rel=1e-11)
    if d >= 3:   # n - 1 nodes integrate degree 2n - 3 < d - 1 exactly only by accident
        assert not torch.allclose(fattr.integrated_gradients(f, x, base, n - 1), exact, rtol=1e-9, atol=0)


@pytest.mark.parametrize("fn", ["exp", "sin"])
@given(seed=seeds)
def test_gauss_legendre_ig_is_float64_accurate_against_the_analytic_integral(fn: str, seed: int) -> None:
    """f = exp(v . x) or sin(v . x): IG has a closed form; 24 Gauss-Legendre nodes reach float64 accuracy."""
    v = randn(6, seed=seed)
    v = 1.5 * v / v.norm()
    x, base = randn(4, 6, seed=seed + 1), randn(4, 6, seed=seed + 2)
    s0, s1 = base @ v, x @ v
    h = s1 - s0
    safe = torch.where(h == 0, torch.ones_like(h), h)
    if fn == "exp":
        f = lambda z: torch.exp(z @ v)  # noqa: E731
        mean_grad = torch.where(h == 0, torch.exp(s0), torch.exp(s0) * torch.expm1(h) / safe)
    else:
        f = lambda z: torch.sin(z @ v)  # noqa: E731
        # (sin s1 - sin s0) / h = 2 cos((s0 + s1) / 2) sin(h / 2) / h, stable for small h
        mean_grad = torch.where(h == 0, torch.cos(s0), 2 * torch.cos((s0 + s1) / 2) * torch.sin(h / 2) / safe)
    attr = fattr.integrated_gradients(f, x, base, 24, "gausslegendre")
    expected = (x - base) * v * mean_grad[:, None]
    assert attr.dtype == torch.float64
    torch.testing.assert_close(attr, expected, rtol=1e-13, atol=1e-15)
    # float32 inputs stay float32 and are float32-accurate only
    attr32 = fattr.integrated_gradients(lambda z: f(z.double()).float(), x.float(), base.float(), 24)
    assert attr32.dtype == torch.float32
    torch.testing.assert_close(attr32.double(), expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- convergence

@given(seed=seeds, method=methods)
def test_delta_shrinks_with_n_steps_for_a_smooth_net(seed: int, method: str) -> None:
    """Rates: left/right O(1/n), middle/trapezoid O(1/n^2), Gauss-Legendre exponential (tanh/softplus net)."""
    f = make_mlp(seed=seed % 1000)
    x, base = 2 * randn(4, 5, seed=seed + 1), randn(4, 5, seed=seed + 2)

    def err(n: int) -> float:
        _, delta = fattr.integrated_gradients(f, x, base, n, method, target=0, return_delta=True)
        return float(delta.detach().abs().sum())

    scale = float((f(x)[:, 0] - f(base)[:, 0]).abs().sum().detach()) + 1
    if method == "gausslegendre":  # at 64 nodes only rounding is left (measured <= 2e-15 * scale)
        assert err(64) <= 1e-12 * scale
        assert err(64) <= err(4)
    else:
        e8, e64 = err(8), err(64)
        ratio = {"riemann_left": 0.3, "riemann_right": 0.3}.get(method, 0.1)   # ideal: 1/8 and 1/64
        assert e64 <= ratio * e8 + 1e-13 * scale


# --------------------------------------------------------------------------- linearity, dummy, symmetry

def _all_methods(n_steps: int = 6) -> dict:
    """name -> attribution function ``fn(f, x, base) -> attr`` with every random draw seeded."""
    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(1234)
    smooth = fattr.noise_tunnel(fattr.saliency, kind="smoothgrad", n_samples=3, stdevs=0.2)
    return {
        **{f"ig_{m}": (lambda m: lambda f, x, b: fattr.integrated_gradients(f, x, b, n_steps, m, target=1))(m)
           for m in METHODS},
        "saliency": lambda f, x, b: fattr.saliency(f, x, target=1, abs=False),
        "input_x_gradient": lambda f, x, b: fattr.input_x_gradient(f, x, target=1),
        "gradient_shap": lambda f, x, b: fattr.gradient_shap(f, x, b, 4, 0.1, target=1, generator=gen()),
        "smoothgrad": lambda f, x, b: smooth(f, x, target=1, abs=False, generator=gen()),
        "path_attribution": lambda f, x, b: fattr.path_attribution(f, lambda a: b + (x - b) * a ** 2,
                                                                    n_steps, target=1),
    }


ALL = _all_methods()


@pytest.mark.parametrize("name", list(ALL))
@given(seed=seeds, a=st.floats(-3, 3), b=st.floats(-3, 3))
def test_linearity(name: str, seed: int, a: float, b: float) -> None:
    """attr(a f + b g) = a attr(f) + b attr(g) for every method (same draws from the same seeded generator)."""
    f, g = make_mlp(seed=seed % 997), make_mlp(seed=seed % 997 + 1)
    h = lambda z: a * f(z) + b * g(z)  # noqa: E731
    x, base = randn(3, 5, seed=seed), randn(3, 5, seed=seed + 1)
    method = ALL[name]
    expected = a * method(f, x, base) + b * method(g, x, base)
    scale = (abs(a) + abs(b)) * (method(f, x, base).abs() + method(g, x, base).abs()).max().detach()
    torch.testing.assert_close(method(h, x, base).detach(), expected.detach(), rtol=0,
                               atol=REL * float(scale) + 1e-300)


@pytest.mark.parametrize("name", list(ALL))
@given(seed=seeds, keep=st.lists(st.booleans(), min_size=5, max_size=5))
def test_dummy_features_get_exactly_zero(name: str, seed: int, keep: list[bool]) -> None:
    """Features f never reads get exactly 0 from every method."""
    assume(any(keep))
    idx = torch.tensor([i for i, k in enumerate(keep) if k])
    net = make_mlp(n_in=len(idx), seed=seed % 997)
    f = lambda z: net(z[:, idx])  # noqa: E731
    x, base = randn(3, 5, seed=seed), randn(3, 5, seed=seed + 1)
    attr = ALL[name](f, x, base)
    dummy = torch.tensor([not k for k in keep])
    assert bool((attr[:, dummy] == 0).all())
    if name != "smoothgrad":  # the used features do get attributions
        assert bool((attr[:, ~dummy] != 0).any())


SYMMETRIC = {**{n: m for n, m in ALL.items() if n not in ("smoothgrad", "gradient_shap")},
             "gradient_shap_no_noise": lambda f, x, b: fattr.gradient_shap(
                 f, x, b, 4, target=1, generator=torch.Generator().manual_seed(0))}


@pytest.mark.parametrize("name", list(SYMMETRIC))
@given(seed=seeds, i=st.integers(0, 4), j=st.integers(0, 4))
def test_symmetric_features_get_equal_attributions(name: str, seed: int, i: int, j: int) -> None:
    """f symmetric in features i and j, input and baseline with x_i = x_j, b_i = b_j: attr_i = attr_j exactly.

    (Input noise differs between i and j, so noisy methods are symmetric only in expectation.)
    """
    assume(i != j)
    net = make_mlp(n_in=5, seed=seed % 997)
    rest = [k for k in range(5) if k not in (i, j)]

    def f(z: torch.Tensor) -> torch.Tensor:
        sym = torch.stack([z[:, i] + z[:, j], z[:, i] * z[:, j]], dim=1)
        return net(torch.cat([sym, z[:, rest]], dim=1))

    x, base = randn(3, 5, seed=seed), randn(3, 5, seed=seed + 1)
    x[:, j], base[:, j] = x[:, i], base[:, i]
    attr = SYMMETRIC[name](f, x, base)
    assert torch.equal(attr[:, i], attr[:, j])


# --------------------------------------------------------------------------- path_attribution

def _paths(x: torch.Tensor, base: torch.Tensor, v: torch.Tensor) -> dict:
    return {
        "power": lambda a: base + (x - base) * a ** 3,
        "curved": lambda a: base + (x - base) * a + torch.sin(math.pi * a) * v,
        "detour": lambda a: base + (x - base) * a ** 2 + a * (1 - a) * v * 3,
    }


@pytest.mark.parametrize("path_name", ["power", "curved", "detour"])
@given(seed=seeds)
def test_path_attribution_satisfies_completeness_on_non_straight_paths(path_name: str, seed: int) -> None:
    f = make_mlp(seed=seed % 997)
    x, base, v = randn(3, 5, seed=seed), randn(3, 5, seed=seed + 1), 0.5 * randn(3, 5, seed=seed + 2)
    path = _paths(x, base, v)[path_name]
    attr, delta = fattr.path_attribution(f, path, 128, target=2, return_delta=True)
    attr, delta, gap = attr.detach(), delta.detach(), (f(x)[:, 2] - f(base)[:, 2]).detach()
    scale = float(gap.abs().max()) + float(attr.abs().sum(1).max()) + 1
    # quadrature error of 128 Gauss-Legendre nodes on an analytic integrand (tanh/softplus net): measured
    # <= 1e-14 * scale over 500 seeds (64 nodes can leave 6e-9 for the cubic reparametrisation)
    torch.testing.assert_close(attr.sum(1), gap, rtol=0, atol=1e-9 * scale)
    torch.testing.assert_close(delta, attr.sum(1) - gap, rtol=0, atol=1e-13 * scale)


@given(seed=seeds, p=st.integers(1, 4))
def test_path_attribution_is_exact_for_quadratic_f_on_polynomial_paths(seed: int, p: int) -> None:
    """Quadratic f on a degree-p path: the integrand grad . velocity has degree 2p - 1; p nodes suffice."""
    m = randn(4, 4, seed=seed)
    q = m + m.T
    f = lambda z: 0.5 * ((z @ q) * z).sum(1)  # noqa: E731
    x, base, v = randn(2, 4, seed=seed + 1), randn(2, 4, seed=seed + 2), randn(2, 4, seed=seed + 3)
    path = lambda a: base + (x - base) * a ** p + a * (1 - a) ** (p - 1) * v  # noqa: E731
    attr, delta = fattr.path_attribution(f, path, p, return_delta=True)
    bound = 1e-13 * (float(attr.abs().sum()) + float(f(x).abs().max()) + 1)
    ends = path(torch.tensor(1.0, dtype=torch.float64)), path(torch.tensor(0.0, dtype=torch.float64))
    gap = completeness_gap(f, *ends, attr)  # against f(path(1)) - f(path(0)), computed here, not by fattr
    assert float(gap.abs().max()) <= bound
    torch.testing.assert_close(delta, gap, rtol=0, atol=bound)


@given(seed=seeds, method=methods, n=st.integers(1, 10))
def test_path_attribution_on_the_straight_line_is_integrated_gradients(seed: int, method: str, n: int) -> None:
    f = make_two_input(seed=seed % 997)
    x = (randn(2, 4, seed=seed), randn(2, 2, 3, seed=seed + 1))
    base = (randn(2, 4, seed=seed + 2), randn(2, 2, 3, seed=seed + 3))
    args = (randn(2, 1, seed=seed + 4), "sigmoid")
    line = lambda a: tuple(b + a * (xi - b) for xi, b in zip(x, base, strict=True))  # noqa: E731
    close(fattr.path_attribution(f, line, n, method, target=[0, 2], args=args),
          fattr.integrated_gradients(f, x, base, n, method, target=[0, 2], args=args))


# --------------------------------------------------------------------------- simple references

@given(seed=seeds, method=methods, n=st.integers(1, 9), chunk=st.one_of(st.none(), st.integers(1, 10)),
       target=st.sampled_from([0, [2, 0, 1], "tensor"]))
def test_ig_matches_a_python_loop_over_steps(seed: int, method: str, n: int, chunk, target) -> None:
    f = make_two_input(seed=seed % 997)
    x = (randn(3, 4, seed=seed), randn(3, 2, 3, seed=seed + 1))
    base = (randn(3, 4, seed=seed + 2), randn(1, 2, 3, seed=seed + 3))
    args = (randn(3, 1, seed=seed + 4), "tanh", 0.5)
    tgt = torch.tensor([1, 1, 2]) if target == "tensor" else target
    alphas, weights = fattr.quadrature(method, n)
    expected = naive_ig(f, x, base, alphas, weights, [1, 1, 2] if target == "tensor" else target, args)
    close(fattr.integrated_gradients(f, x, base, n, method, target=tgt, args=args, chunk_size=chunk), expected)


@given(seed=seeds, target=st.sampled_from([0, 2, [1, 0, 2]]))
def test_saliency_and_input_x_gradient_match_loops_and_finite_differences(seed: int, target) -> None:
    f = make_mlp(seed=seed % 997)
    x = randn(3, 5, seed=seed)
    grads = _grad_loop(f, x, target)
    close(fattr.saliency(f, x, target=target, abs=False), grads)
    close(fattr.saliency(f, x, target=target), grads.abs())
    close(fattr.input_x_gradient(f, x, target=target), x * grads)
    # central differences: truncation h^2 |f'''| / 6 ~ 1e-12, rounding eps |f| / h ~ 1e-10
    h, fd = 1e-6, torch.zeros_like(x)
    for k in range(5):
        e = torch.zeros_like(x)
        e[:, k] = h
        fd[:, k] = (_select(f(x + e), target) - _select(f(x - e), target)).detach() / (2 * h)
    torch.testing.assert_close(fattr.saliency(f, x, target=target, abs=False).detach(), fd, rtol=1e-7, atol=1e-8)


@given(seed=seeds, n_samples=st.integers(1, 6), b=st.integers(1, 3), multiply=st.booleans())
def test_gradient_shap_matches_a_loop_over_the_points_it_drew(seed: int, n_samples: int, b: int,
                                                              multiply: bool) -> None:
    """One baseline row, no noise: recover each drawn point, redo the gradients by a loop, compare the means."""
    net = make_mlp(seed=seed % 997)
    seen: list[torch.Tensor] = []

    def f(z: torch.Tensor) -> torch.Tensor:
        if not seen:  # the first call is the batched gradient over all n_samples * B points (step-major)
            seen.append(torch.tensor(z.tolist(), dtype=torch.float64))
        return net(z)

    x, base = randn(b, 5, seed=seed), randn(1, 5, seed=seed + 1)
    attr = fattr.gradient_shap(f, x, base, n_samples, target=1, multiply_by_inputs=multiply,
                               generator=torch.Generator().manual_seed(seed))
    pts = seen[0].reshape(n_samples, b, 5)
    # every point lies on the segment from the baseline to its own example
    alpha = ((pts - base) / (x - base))[..., 0]
    torch.testing.assert_close(pts, base + alpha[..., None] * (x - base), rtol=0, atol=1e-12)
    assert bool(((alpha >= 0) & (alpha <= 1)).all())
    grads = torch.stack([_grad_loop(net, pts[s], 1) for s in range(n_samples)])
    per_sample = grads * (x - base) if multiply else grads
    close(attr, per_sample.mean(0))


def _recording(method: Callable) -> tuple[Callable, list]:
    """``method`` with the same signature that also records the (noisy) inputs it is called with."""
    calls: list = []

    def recorded(f, inputs, *, target=None, args=(), abs=True):
        calls.append((inputs, target, args))
        return method(f, inputs, target=target, args=args, abs=abs)
    return recorded, calls


@pytest.mark.parametrize("kind", ["smoothgrad", "smoothgrad_sq", "vargrad"])
@given(seed=seeds, n_samples=st.integers(1, 5), chunk=st.one_of(st.none(), st.integers(1, 4)))
def test_noise_tunnel_reduces_like_a_loop_over_its_noisy_samples(kind: str, seed: int, n_samples: int,
                                                                  chunk) -> None:
    """The reduction formulas, and per-example target/args pairing, against a loop over the same noise."""
    net = make_mlp(n_in=6, seed=seed % 997)
    f = lambda z, s, mode: net(z * s if mode == "scale" else z)  # noqa: E731
    x, s = randn(3, 6, seed=seed), randn(3, 1, seed=seed + 1)
    method, calls = _recording(fattr.saliency)
    tunnel = fattr.noise_tunnel(method, kind=kind, n_samples=n_samples, stdevs=0.3, chunk_size=chunk)
    target = [2, 0, 1]
    attr = tunnel(f, x, target=target, args=(s, "scale"), abs=False, generator=torch.Generator().manual_seed(seed))
    noisy = torch.cat([c[0].reshape(-1, 3, 6) for c in calls])      # (n_samples, B, 6), sample-major
    assert noisy.shape[0] == n_samples
    assert len(calls) == (1 if chunk is None else math.ceil(n_samples / chunk))
    assert not torch.equal(noisy[0], x)
    samples = torch.stack([_grad_loop(f, noisy[k], target, (s, "scale")) for k in range(n_samples)])
    mean, sq = samples.mean(0), (samples ** 2).mean(0)
    expected = {"smoothgrad": mean, "smoothgrad_sq": sq, "vargrad": sq - mean ** 2}[kind]
    torch.testing.assert_close(attr.detach(), expected, rtol=0, atol=REL * float(sq.max()))


@given(seed=seeds, n_samples=st.integers(1, 4), chunk=st.one_of(st.none(), st.integers(1, 3)))
def test_noise_tunnel_deltas_are_example_first(seed: int, n_samples: int, chunk) -> None:
    """IG in a tunnel: entry b * n_samples + s of the delta belongs to example b, noisy sample s."""
    f = make_mlp(seed=seed % 997)
    seen: list = []

    def ig(f, inputs, baselines=None, n_steps=50, *, target=None, return_delta=False):
        seen.append((inputs, baselines))
        return fattr.integrated_gradients(f, inputs, baselines, n_steps, target=target, return_delta=return_delta)

    x, base = randn(3, 5, seed=seed), randn(3, 5, seed=seed + 1)
    # an unregistered method declares its per-example parameters itself (registered ones: MethodSpec.per_example)
    tunnel = fattr.noise_tunnel(ig, n_samples=n_samples, stdevs=0.5, chunk_size=chunk, per_example=("baselines",))
    _, delta = tunnel(f, x, base, 4, target=1, return_delta=True, generator=torch.Generator().manual_seed(seed))
    noisy = torch.cat([c[0].reshape(-1, 3, 5) for c in seen])
    bases = torch.cat([c[1].reshape(-1, 3, 5) for c in seen])
    assert torch.equal(bases, base.expand_as(bases))     # per-example baselines tiled with their example
    expected = torch.stack([fattr.integrated_gradients(f, noisy[k], base, 4, target=1, return_delta=True)[1]
                            for k in range(n_samples)])  # (n_samples, B)
    torch.testing.assert_close(delta.detach(), expected.t().reshape(-1).detach(), rtol=0, atol=1e-12)


@given(seed=seeds)
def test_stochastic_methods_are_reproducible_from_the_generator(seed: int) -> None:
    f, x, dist = make_mlp(seed=seed % 997), randn(2, 5, seed=seed), randn(4, 5, seed=seed + 1)
    tunnel = fattr.noise_tunnel(fattr.integrated_gradients, kind="vargrad", n_samples=3, stdevs=0.2)
    for run in (lambda g: fattr.gradient_shap(f, x, dist, 3, 0.1, target=0, generator=g),
                lambda g: tunnel(f, x, None, 4, target=0, generator=g)):
        first = run(torch.Generator().manual_seed(seed))
        assert torch.equal(first, run(torch.Generator().manual_seed(seed)))
        assert not torch.equal(first, run(torch.Generator().manual_seed(seed + 1)))


@given(seed=seeds, method=methods)
def test_local_attribution_times_difference_is_the_global_one(seed: int, method: str) -> None:
    f = make_mlp(seed=seed % 997)
    x, base = randn(3, 5, seed=seed), randn(1, 5, seed=seed + 1)
    local = fattr.integrated_gradients(f, x, base, 7, method, target=0, multiply_by_inputs=False)
    close(local * (x - base), fattr.integrated_gradients(f, x, base, 7, method, target=0))
