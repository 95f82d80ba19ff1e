"""Differential tests of the core methods against Captum 0.9 (the oracle).

Every model is float64, so the only differences left are Captum's own roundings:

* Captum keeps the quadrature weights in float32 (``torch.tensor(step_sizes).float()``
  in ``IntegratedGradients._attribute``) and builds the Riemann nodes with a
  float32 ``torch.linspace``. Each weight and node is therefore off by a relative
  ``<= 2**-24 ~ 6e-8``, which moves an attribution by about that much relative to
  the attribution scale (measured: <= 7e-8). We compare with
  ``CAPTUM_REL = 1e-6`` relative to the largest attribution of the tensor
  (~16x headroom, still far below any real disagreement). Feeding fattr Captum's
  own rounded nodes and weights through a callable ``method=`` removes that
  difference, and the two then agree to float64 rounding (``# Captum warns whenever it switches requires_grad on our inputs; that is its documented behaviour.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")

EXACT_REL = 1e-12``,
  ~4500 ulps of headroom for differently ordered sums over <= 50 steps).
* Saliency and Input x Gradient involve no quadrature: ``EXACT_REL``.
* Captum's trapezoid weights sum to ``(n - 1) / n`` instead of 1: its IG is exactly
  ``(n - 1) / n`` times fattr's (checked up to the float32 rounding above, and
  to float64 rounding with Captum's rounded nodes).

Deviations from Captum (documented here, tested where they can be):

* trapezoid rule scaled as above; float64 weights instead of float32;
* Riemann rules with ``n_steps=1`` work in fattr (Captum asserts ``n > 1``);
* ``args``: fattr tiles only tensors with one row per example; Captum tiles every
  tensor argument with a batch dim (a shared ``(k, ...)`` tensor breaks Captum);
* GradientSHAP draws one baseline row per sample shared by all inputs of a tuple;
  Captum draws an independent row for every input tensor (different expectation
  for multi-input models with cross terms), and from the global numpy/torch RNGs;
* noise-tunnel deltas are always example-first; Captum's are example-first only
  within each ``nt_samples_batch_size`` partition (partition-major overall).
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, NamedTuple

import numpy as np
import pytest
import torch
from captum.attr import (GradientShap, InputXGradient, IntegratedGradients, NoiseTunnel, Saliency)
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import nn

import fattr
from conftest import _init, make_3d, make_cnn, make_mlp, make_two_input, randn

# Captum warns whenever it switches requires_grad on our inputs; that is its documented behaviour.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")

EXACT_REL = 1e-12
CAPTUM_REL = 1e-6
METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
B = 3


def assert_close(actual: Any, expected: Any, rel: float) -> None:
    """Elementwise ``|a - e| <= rel * (|e| + max|e|)``: tolerance scales with the tensor's size of values."""
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_close(a, e, rel)
        return
    assert isinstance(actual, torch.Tensor)
    actual = actual.detach()   # fattr's attributions carry a graph to the parameters; compare values only
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    expected = expected.detach()
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * max(scale, 1e-300))


def captum_rule(method: str) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """Captum's nodes and weights exactly as its IG uses them (weights rounded to float32)."""
    step_sizes, alphas = approximation_parameters(method)

    def rule(n: int):
        w = torch.tensor(step_sizes(n)).float().double()
        return torch.tensor(alphas(n), dtype=torch.float64), w
    return rule


@contextlib.contextmanager
def global_seed(seed: int):
    """Seed the global torch and numpy RNGs for Captum's stochastic methods, restoring both after."""
    state = np.random.get_state()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


# --------------------------------------------------------------------------- cases

class Case(NamedTuple):
    f: nn.Module
    inputs: Any                 # tensor or tuple
    baselines: Any              # a full-shape baseline of the inputs' structure
    target: Any
    args: Any                   # fattr's args (tuple); Captum gets the same as additional_forward_args


def _case(name: str) -> Case:
    if name == "mlp":
        return Case(make_mlp(), randn(B, 5, seed=10), randn(B, 5, seed=20), [2, 0, 1], ())
    if name == "cnn":
        return Case(make_cnn(), randn(B, 2, 6, 6, seed=11), randn(B, 2, 6, 6, seed=21),
                    torch.tensor([3, 1, 0]), ())
    if name == "two_inputs":
        x = (randn(B, 4, seed=12), randn(B, 2, 3, seed=13))
        base = (randn(B, 4, seed=22), randn(B, 2, 3, seed=23))
        return Case(make_two_input(), x, base, 1, (randn(B, 1, seed=14), "sigmoid", 0.7))
    if name == "out3d":
        return Case(make_3d(), randn(B, 5, seed=15), randn(B, 5, seed=25), [(0, 1), (2, 3), (1, 0)], ())
    raise KeyError(name)


CASES = ("mlp", "cnn", "two_inputs", "out3d")


def _captum_kwargs(case: Case) -> dict:
    return {"target": case.target, "additional_forward_args": case.args if case.args else None}


# --------------------------------------------------------------------------- saliency, input x gradient

@pytest.mark.parametrize("abs_", [True, False])
@pytest.mark.parametrize("name", CASES)
def test_saliency_matches_captum(name: str, abs_: bool) -> None:
    c = _case(name)
    ours = fattr.saliency(c.f, c.inputs, target=c.target, args=c.args, abs=abs_)
    theirs = Saliency(c.f).attribute(c.inputs, abs=abs_, **_captum_kwargs(c))
    assert_close(ours, theirs, EXACT_REL)
    if not abs_:
        assert any(bool((t < 0).any()) for t in (ours if isinstance(ours, tuple) else (ours,)))


@pytest.mark.parametrize("name", CASES)
def test_input_x_gradient_matches_captum(name: str) -> None:
    c = _case(name)
    ours = fattr.input_x_gradient(c.f, c.inputs, target=c.target, args=c.args)
    theirs = InputXGradient(c.f).attribute(c.inputs, **_captum_kwargs(c))
    assert_close(ours, theirs, EXACT_REL)


# --------------------------------------------------------------------------- integrated gradients

@pytest.mark.parametrize("n_steps", [2, 7, 50])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CASES)
def test_ig_matches_captum(name: str, method: str, n_steps: int) -> None:
    c = _case(name)
    theirs, their_delta = IntegratedGradients(c.f).attribute(
        c.inputs, c.baselines, n_steps=n_steps, method=method, return_convergence_delta=True,
        **_captum_kwargs(c))
    ours, delta = fattr.integrated_gradients(c.f, c.inputs, c.baselines, n_steps, method, target=c.target,
                                             args=c.args, return_delta=True)
    # Captum's trapezoid weights are (n-1)/n of the textbook weights: all attributions scale by that.
    scale = (n_steps - 1) / n_steps if method == "riemann_trapezoid" else 1.0
    scaled = tuple(a * scale for a in ours) if isinstance(ours, tuple) else ours * scale
    assert_close(scaled, theirs, CAPTUM_REL)
    # deltas: sum(attr) - (f(x) - f(b)), with each library's own attributions
    attr_sum = sum(a.reshape(B, -1).sum(1) for a in (theirs if isinstance(theirs, tuple) else (theirs,)))
    gap = attr_sum - their_delta                       # = f(x) - f(b)
    expected_delta = attr_sum / scale - gap            # fattr's delta: its attributions are theirs / scale
    assert delta.shape == their_delta.shape == (B,) and delta.dtype == torch.float64
    torch.testing.assert_close(delta, expected_delta, rtol=0, atol=CAPTUM_REL * float(attr_sum.abs().max()))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CASES)
def test_ig_with_captums_rounded_rule_agrees_to_float64(name: str, method: str) -> None:
    """With Captum's own float32-rounded nodes and weights, the only difference left is summation order."""
    c, n = _case(name), 9
    theirs, their_delta = IntegratedGradients(c.f).attribute(
        c.inputs, c.baselines, n_steps=n, method=method, return_convergence_delta=True, **_captum_kwargs(c))
    ours, delta = fattr.integrated_gradients(c.f, c.inputs, c.baselines, n, captum_rule(method),
                                             target=c.target, args=c.args, return_delta=True)
    assert_close(ours, theirs, EXACT_REL)
    torch.testing.assert_close(delta, their_delta, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n_steps", [2, 3, 10, 51])
def test_trapezoid_is_captum_times_n_over_n_minus_1(n_steps: int) -> None:
    """Captum's trapezoid = fattr's * (n-1)/n: exactly, once the float32 rounding of Captum's rule is replayed."""
    c = _case("mlp")
    step_sizes, alphas = approximation_parameters("riemann_trapezoid")
    w32 = torch.tensor(step_sizes(n_steps)).float().double()
    a_captum = torch.tensor(alphas(n_steps), dtype=torch.float64)
    a, w = fattr.quadrature("riemann_trapezoid", n_steps)
    # the rules themselves: same nodes up to float32 rounding (Captum's float32 linspace is within one
    # float32 ulp of 1, 2**-24, of k/(n-1)), weights exactly the float32 rounding of fattr's * (n-1)/n
    assert float((a_captum - a).abs().max()) <= 2.0 ** -24
    assert torch.equal(w32, (w * (n_steps - 1) / n_steps).float().double())
    assert math.isclose(float(w32.sum()), (n_steps - 1) / n_steps, rel_tol=1e-7)
    # the attributions: fattr on Captum's nodes with fattr's weights, times (n-1)/n, is Captum
    replay = fattr.integrated_gradients(c.f, c.inputs, c.baselines, n_steps,
                                        lambda n: (a_captum, (w * (n - 1) / n).float().double()),
                                        target=c.target)
    theirs = IntegratedGradients(c.f).attribute(c.inputs, c.baselines, target=c.target, n_steps=n_steps,
                                                method="riemann_trapezoid")
    assert_close(replay, theirs, EXACT_REL)
    ours = fattr.integrated_gradients(c.f, c.inputs, c.baselines, n_steps, "riemann_trapezoid", target=c.target)
    assert_close(ours * (n_steps - 1) / n_steps, theirs, CAPTUM_REL)


def _baseline_forms(name: str) -> dict:
    """form -> (fattr's baselines, Captum's equivalent): Captum wants a tuple for tuple inputs."""
    c = _case(name)
    if name == "two_inputs":
        b1, b2 = c.baselines
        return {
            "none": (None, None),
            "scalar_for_every_input": (0.3, (0.3, 0.3)),
            "full": (c.baselines, c.baselines),
            "batch1": ((b1[:1], b2[:1]),) * 2,
            "tuple_scalar_tensor": ((-0.5, b2),) * 2,
            "tuple_batch1_int": ((b1[2:], 2),) * 2,
            "tuple_of_none": ((None, None), None),
        }
    return {form: (b, b) for form, b in
            {"none": None, "scalar": -0.4, "int": 1, "full": c.baselines, "batch1": c.baselines[1:2]}.items()}


@pytest.mark.parametrize("name,form", [(n, f) for n in ("mlp", "two_inputs") for f in _baseline_forms(n)])
def test_ig_baseline_forms_match_captum(name: str, form: str) -> None:
    c = _case(name)
    ours_base, their_base = _baseline_forms(name)[form]
    theirs, their_delta = IntegratedGradients(c.f).attribute(
        c.inputs, their_base, n_steps=12, method="gausslegendre", return_convergence_delta=True,
        **_captum_kwargs(c))
    ours, delta = fattr.integrated_gradients(c.f, c.inputs, ours_base, 12, captum_rule("gausslegendre"),
                                             target=c.target, args=c.args, return_delta=True)
    assert_close(ours, theirs, EXACT_REL)
    torch.testing.assert_close(delta, their_delta, rtol=0, atol=1e-12)
    ours = fattr.integrated_gradients(c.f, c.inputs, ours_base, 12, target=c.target, args=c.args)
    assert_close(ours, theirs, CAPTUM_REL)


def _target_forms():
    mlp, x = make_mlp(), randn(B, 5, seed=30)
    one_out = make_mlp(n_out=1, seed=5)
    out3d = make_3d()
    return {
        "none_B1_output": (one_out, x, None),
        "none_B_output": (lambda z: one_out(z)[:, 0] ** 2, x, None),
        "int": (mlp, x, 2),
        "negative_int": (mlp, x, -1),
        "0d_tensor": (mlp, x, torch.tensor(1)),
        "list": (mlp, x, [0, 2, 2]),
        "1d_tensor": (mlp, x, torch.tensor([1, 0, 2])),
        "tuple_3d": (out3d, x, (2, 1)),
        "list_of_tuples_3d": (out3d, x, [(0, 3), (2, 0), (1, 1)]),
    }


TARGETS = _target_forms()


@pytest.mark.parametrize("form", list(TARGETS))
def test_target_forms_match_captum(form: str) -> None:
    f, x, target = TARGETS[form]
    base = randn(B, 5, seed=31)
    rule = captum_rule("gausslegendre")
    assert_close(fattr.integrated_gradients(f, x, base, 8, rule, target=target),
                 IntegratedGradients(f).attribute(x, base, target=target, n_steps=8), EXACT_REL)
    assert_close(fattr.saliency(f, x, target=target, abs=False),
                 Saliency(f).attribute(x, target=target, abs=False), EXACT_REL)


def test_args_pair_per_example_tensors_and_pass_the_rest() -> None:
    """Per-example tensor args must follow their example through every path step, like Captum's."""
    c = _case("two_inputs")
    scale, mode, gain = c.args
    for args in [(scale, mode, gain), (scale,), (scale, "tanh")]:
        theirs = IntegratedGradients(c.f).attribute(c.inputs, c.baselines, target=[0, 2, 1],
                                                    additional_forward_args=args, n_steps=6)
        ours = fattr.integrated_gradients(c.f, c.inputs, c.baselines, 6, captum_rule("gausslegendre"),
                                          target=[0, 2, 1], args=args)
        assert_close(ours, theirs, EXACT_REL)
    # a single non-tuple tensor arg is wrapped like Captum does
    f1 = lambda x1, x2, s: c.f(x1, x2, s)  # noqa: E731
    assert_close(fattr.saliency(f1, c.inputs, target=1, args=scale, abs=False),
                 Saliency(f1).attribute(c.inputs, target=1, additional_forward_args=scale, abs=False), EXACT_REL)
    # pairing matters: a per-example arg shuffled across examples changes the result
    shuffled = fattr.integrated_gradients(c.f, c.inputs, c.baselines, 6, target=1, args=(scale.flip(0), mode))
    paired = fattr.integrated_gradients(c.f, c.inputs, c.baselines, 6, target=1, args=(scale, mode))
    assert not torch.allclose(shuffled[0], paired[0])


def test_shared_tensor_arg_is_passed_as_is() -> None:
    """Deviation: a tensor arg without one row per example is shared (Captum would tile it and fail)."""
    mlp, x, base = make_mlp(), randn(B, 5, seed=40), randn(B, 5, seed=41)
    mix = randn(5, 5, seed=42)
    g = lambda z, m: mlp(z @ m)  # noqa: E731
    ours = fattr.integrated_gradients(g, x, base, 10, captum_rule("gausslegendre"), target=1, args=(mix,))
    closure = lambda z: mlp(z @ mix)  # noqa: E731
    assert_close(ours, IntegratedGradients(closure).attribute(x, base, target=1, n_steps=10), EXACT_REL)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_middle"])
@pytest.mark.parametrize("name", CASES)
def test_ig_local_attribution_matches_captum(name: str, method: str) -> None:
    c = _case(name)
    theirs = IntegratedGradients(c.f, multiply_by_inputs=False).attribute(
        c.inputs, c.baselines, n_steps=10, method=method, **_captum_kwargs(c))
    ours = fattr.integrated_gradients(c.f, c.inputs, c.baselines, 10, captum_rule(method), target=c.target,
                                      args=c.args, multiply_by_inputs=False)
    assert_close(ours, theirs, EXACT_REL)


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 20])
@pytest.mark.parametrize("name", ["mlp", "two_inputs"])
def test_chunk_size_matches_internal_batch_size(name: str, chunk_size: int) -> None:
    """fattr's ``chunk_size`` counts path points; Captum's ``internal_batch_size`` counts rows (= points * B)."""
    c, n = _case(name), 20
    theirs = IntegratedGradients(c.f).attribute(c.inputs, c.baselines, n_steps=n, method="riemann_middle",
                                                internal_batch_size=chunk_size * B, **_captum_kwargs(c))
    rule = captum_rule("riemann_middle")
    ours = fattr.integrated_gradients(c.f, c.inputs, c.baselines, n, rule, target=c.target, args=c.args,
                                      chunk_size=chunk_size)
    assert_close(ours, theirs, EXACT_REL)
    whole = fattr.integrated_gradients(c.f, c.inputs, c.baselines, n, rule, target=c.target, args=c.args)
    assert_close(ours, whole, EXACT_REL)


# --------------------------------------------------------------------------- gradient shap

def _linear(n_in: int = 5, n_out: int = 3, seed: int = 7) -> nn.Module:
    return _init(nn.Linear(n_in, n_out), seed)


class TwoInputLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(6, 3)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.a(x1) * s + self.b(x2.flatten(1))


def test_gradient_shap_linear_single_baseline_is_deterministic() -> None:
    """Linear f, one baseline row, no noise: every draw gives grad * (x - b); equal to Captum's."""
    f, x, base = _linear(), randn(B, 5, seed=50), randn(1, 5, seed=51)
    with global_seed(0):
        theirs, their_delta = GradientShap(f).attribute(x, base, n_samples=6, stdevs=0.0, target=[0, 2, 1],
                                                        return_convergence_delta=True)
    ours, delta = fattr.gradient_shap(f, x, base, 6, 0.0, target=[0, 2, 1], return_delta=True,
                                      generator=torch.Generator().manual_seed(0))
    assert_close(ours, theirs, EXACT_REL)
    expected = f.weight[[0, 2, 1]].detach() * (x - base)
    assert_close(ours, expected, EXACT_REL)
    assert delta.shape == their_delta.shape == (B * 6,)
    torch.testing.assert_close(delta, torch.zeros_like(delta), rtol=0, atol=1e-13)
    torch.testing.assert_close(their_delta, torch.zeros_like(delta), rtol=0, atol=1e-13)


def test_gradient_shap_local_linear_ignores_every_draw() -> None:
    """multiply_by_inputs=False on a linear model: the mean gradient, whatever baselines and noise were drawn."""
    f = TwoInputLinear().to(torch.float64)
    _init(f, 8)
    x = (randn(B, 4, seed=52), randn(B, 2, 3, seed=53))
    dist = (randn(7, 4, seed=54), randn(7, 2, 3, seed=55))
    s = randn(B, 1, seed=56)
    with global_seed(1):
        theirs = GradientShap(f, multiply_by_inputs=False).attribute(
            x, dist, n_samples=5, stdevs=(0.1, 0.3), target=2, additional_forward_args=(s,))
    ours = fattr.gradient_shap(f, x, dist, 5, (0.1, 0.3), target=2, args=(s,), multiply_by_inputs=False,
                               generator=torch.Generator().manual_seed(1))
    assert_close(ours, theirs, EXACT_REL)


def test_gradient_shap_two_input_linear_single_row_matches_captum() -> None:
    f = TwoInputLinear().to(torch.float64)
    _init(f, 9)
    x = (randn(B, 4, seed=57), randn(B, 2, 3, seed=58))
    base = (randn(1, 4, seed=59), randn(1, 2, 3, seed=60))
    s = randn(B, 1, seed=61)
    with global_seed(2):
        theirs = GradientShap(f).attribute(x, base, n_samples=4, target=torch.tensor([1, 0, 2]),
                                           additional_forward_args=s)
    ours = fattr.gradient_shap(f, x, base, 4, target=torch.tensor([1, 0, 2]), args=s,
                               generator=torch.Generator().manual_seed(2))
    assert_close(ours, theirs, EXACT_REL)


class LinearCNN(nn.Module):
    """A CNN without nonlinearities: its gradient does not depend on the point, so no draw matters locally."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.fc = nn.Linear(3 * 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


class Linear3D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x).reshape(-1, 3, 4)


@pytest.mark.parametrize("name,target", [("cnn", [3, 0, 1]), ("out3d", (2, 1)), ("out3d", [(0, 3), (2, 2), (1, 0)])])
def test_gradient_shap_local_matches_captum_on_linear_cnn_and_3d_outputs(name: str, target: Any) -> None:
    if name == "cnn":
        f, shape = _init(LinearCNN(), 11), (2, 6, 6)
    else:
        f, shape = _init(Linear3D(), 12), (5,)
    x, dist = randn(B, *shape, seed=80), randn(6, *shape, seed=81)
    with global_seed(7):
        theirs, their_delta = GradientShap(f, multiply_by_inputs=False).attribute(
            x, dist, n_samples=5, stdevs=0.2, target=target, return_convergence_delta=True)
    ours, delta = fattr.gradient_shap(f, x, dist, 5, 0.2, target=target, multiply_by_inputs=False,
                                      return_delta=True, generator=torch.Generator().manual_seed(7))
    assert_close(ours, theirs, EXACT_REL)
    assert delta.shape == their_delta.shape == (B * 5,)


def test_gradient_shap_delta_is_example_first_like_captum() -> None:
    """Delta has B * n_samples entries, entry b * n_samples + s for example b (Captum repeat_interleaves)."""
    f, n_samples = make_mlp(), 4
    x = randn(B, 5, seed=62)
    base = randn(1, 5, seed=63)
    x[1] = base[0]                       # example 1 sits on the baseline: all its deltas are exactly 0
    with global_seed(3):
        _, their_delta = GradientShap(f).attribute(x, base, n_samples=n_samples, target=0,
                                                   return_convergence_delta=True)
    _, delta = fattr.gradient_shap(f, x, base, n_samples, target=0, return_delta=True,
                                   generator=torch.Generator().manual_seed(3))
    for d in (delta, their_delta):
        assert d.shape == (B * n_samples,)
        per_example = d.reshape(B, n_samples)
        assert bool((per_example[1] == 0).all())
        assert bool((per_example[[0, 2]].abs() > 1e-9).all())


class Quadratic(nn.Module):
    """``f(x) = x^T A x / 2 + c^T x`` (A symmetric), one value per example."""

    def __init__(self, d: int, seed: int) -> None:
        super().__init__()
        m = randn(d, d, seed=seed)
        self.register_buffer("A", (m + m.T) / 2)
        self.register_buffer("c", randn(d, seed=seed + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.einsum("bi,ij,bj->b", x, self.A, x) + x @ self.c

    def expected_gradient_shap(self, x: torch.Tensor, dist: torch.Tensor, sd: float) -> torch.Tensor:
        """The exact expectation: ``mean_m (x - b_m) * (A (x + b_m) / 2 + c) + diag(A) sd^2 / 2``."""
        u = x[:, None] - dist[None]                                   # (B, M, d)
        g = (x[:, None] + dist[None]) @ self.A / 2 + self.c            # (B, M, d)
        return (u * g).mean(1) + torch.diagonal(self.A) * sd ** 2 / 2


def _standard_error(f: nn.Module, x: torch.Tensor, dist: torch.Tensor, sd: float, n: int) -> torch.Tensor:
    """Standard error of an ``n``-sample mean: the per-sample spread from 2000 one-sample replicates."""
    reps = 2000
    one = fattr.gradient_shap(f, x.repeat(reps, 1), dist, 1, sd, target=0 if f.__class__ is not Quadratic
                              else None, generator=torch.Generator().manual_seed(99))
    return one.reshape(reps, *x.shape).std(0) / math.sqrt(n)


@pytest.mark.parametrize("sd", [0.0, 0.4])
def test_gradient_shap_statistically_matches_captum_and_the_exact_expectation(sd: float) -> None:
    """Quadratic f: both estimators are within 5 standard errors of the closed-form expectation."""
    f, n = Quadratic(4, seed=70), 3000
    x, dist = randn(B, 4, seed=71), randn(6, 4, seed=72)
    exact = f.expected_gradient_shap(x, dist, sd)
    se = _standard_error(f, x, dist, sd, n)
    ours = fattr.gradient_shap(f, x, dist, n, sd, generator=torch.Generator().manual_seed(5))
    with global_seed(5):
        theirs = GradientShap(f).attribute(x, dist, n_samples=n, stdevs=sd)
    assert bool(((ours - exact).abs() <= 5 * se + 1e-12).all())
    assert bool(((theirs - exact).abs() <= 5 * se + 1e-12).all())


def test_gradient_shap_statistically_matches_captum_on_an_mlp() -> None:
    f, n = make_mlp(), 3000
    x, dist = randn(B, 5, seed=73), randn(8, 5, seed=74)
    se = _standard_error(f, x, dist, 0.2, n)
    ours = fattr.gradient_shap(f, x, dist, n, 0.2, target=0, generator=torch.Generator().manual_seed(6))
    with global_seed(6):
        theirs = GradientShap(f).attribute(x, dist, n_samples=n, stdevs=0.2, target=0)
    # difference of two independent means: standard error sqrt(2) * se
    assert bool(((ours - theirs).abs() <= 5 * math.sqrt(2) * se + 1e-12).all())


# --------------------------------------------------------------------------- noise tunnel

NT_KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")


@pytest.mark.parametrize("kind", NT_KINDS)
@pytest.mark.parametrize("name", CASES)
def test_noise_tunnel_saliency_without_noise_matches_captum(name: str, kind: str) -> None:
    c = _case(name)
    sd = (0.0, 0.0) if isinstance(c.inputs, tuple) else 0.0
    theirs = NoiseTunnel(Saliency(c.f)).attribute(c.inputs, nt_type=kind, nt_samples=4, stdevs=sd, abs=False,
                                                  **_captum_kwargs(c))
    tunnel = fattr.noise_tunnel(fattr.saliency, kind=kind, n_samples=4, stdevs=sd)
    ours = tunnel(c.f, c.inputs, target=c.target, args=c.args, abs=False,
                  generator=torch.Generator().manual_seed(0))
    plain = fattr.saliency(c.f, c.inputs, target=c.target, args=c.args, abs=False)
    for o, t, p in zip(_tup(ours), _tup(theirs), _tup(plain), strict=True):
        p = p.detach()
        if kind == "smoothgrad":
            assert_close(o, p, EXACT_REL)
            assert_close(o, t, EXACT_REL)
        elif kind == "smoothgrad_sq":
            assert_close(o, p * p, EXACT_REL)
            assert_close(o, t, EXACT_REL)
        else:  # the variance of identical samples: zero up to the rounding of mean(p^2) - mean(p)^2
            tol = 1e-14 * float((p * p).max())
            torch.testing.assert_close(o.detach(), torch.zeros_like(p), rtol=0, atol=tol)
            torch.testing.assert_close(t, torch.zeros_like(p), rtol=0, atol=tol)


def _tup(x: Any) -> tuple:
    return x if isinstance(x, tuple) else (x,)


@pytest.mark.parametrize("kind", NT_KINDS)
@pytest.mark.parametrize("n_samples,chunk", [(5, None), (5, 2), (6, 3)])
def test_noise_tunnel_ig_without_noise_matches_captum(kind: str, n_samples: int, chunk) -> None:
    """IG inside the tunnel, with per-example baselines, list target and args, chunked like Captum's batches."""
    c = _case("two_inputs")
    nt = NoiseTunnel(IntegratedGradients(c.f))
    theirs, their_delta = nt.attribute(c.inputs, nt_type=kind, nt_samples=n_samples, stdevs=(0.0, 0.0),
                                       nt_samples_batch_size=chunk, baselines=c.baselines, target=[0, 2, 1],
                                       n_steps=8, additional_forward_args=c.args, return_convergence_delta=True)
    tunnel = fattr.noise_tunnel(fattr.integrated_gradients, kind=kind, n_samples=n_samples, stdevs=0.0,
                                chunk_size=chunk)
    ours, delta = tunnel(c.f, c.inputs, c.baselines, 8, captum_rule("gausslegendre"), target=[0, 2, 1],
                         args=c.args, return_delta=True)
    if kind == "vargrad":
        for o, t in zip(ours, theirs, strict=True):
            torch.testing.assert_close(o, t, rtol=0, atol=1e-12 * float(t.abs().max() + 1))
    else:
        assert_close(ours, theirs, EXACT_REL)
    assert delta.shape == their_delta.shape == (B * n_samples,)
    # Captum's deltas are example-first within each partition of nt_samples_batch_size samples, partition-major
    # overall (visible even without noise, as the examples' deltas differ); fattr's are example-first overall.
    sizes = [n_samples] if chunk is None else [chunk] * (n_samples // chunk) + [n_samples % chunk] * bool(
        n_samples % chunk)
    blocks = torch.split(their_delta, [B * k for k in sizes])
    example_first = torch.cat([blk.reshape(B, k) for blk, k in zip(blocks, sizes, strict=True)], dim=1).reshape(-1)
    torch.testing.assert_close(delta, example_first, rtol=0, atol=1e-12)
    if chunk is not None:
        assert not torch.equal(their_delta, example_first)


def _quadratic_saliency_samples(f: "Quadratic", x: torch.Tensor, sd: float, reps: int) -> torch.Tensor:
    """``reps`` independent noisy saliency maps per example, ``(reps, B, d)``, for standard errors."""
    one = fattr.noise_tunnel(fattr.saliency, n_samples=1, stdevs=sd)
    return one(f, x.repeat(reps, 1), abs=False, generator=torch.Generator().manual_seed(98)).reshape(reps, *x.shape)


@pytest.mark.parametrize("kind", NT_KINDS)
def test_noisy_tunnel_statistically_matches_captum_and_the_exact_expectation(kind: str) -> None:
    """Quadratic f: saliency q x + c is linear in x, so with noise N(0, sd^2) the expectations are closed-form:
    smoothgrad = q x + c, smoothgrad_sq = (q x + c)^2 + sd^2 sum_j q_ij^2, vargrad = (n-1)/n sd^2 sum_j q_ij^2.
    fattr and Captum (same n, independent draws) must both lie within 5 standard errors."""
    f, n, sd = Quadratic(4, seed=90), 3000, 0.5
    x = randn(B, 4, seed=91)
    g = x @ f.A + f.c
    spread = sd ** 2 * (f.A ** 2).sum(1)
    exact = {"smoothgrad": g, "smoothgrad_sq": g ** 2 + spread, "vargrad": (n - 1) / n * spread.expand_as(g)}[kind]
    samples = _quadratic_saliency_samples(f, x, sd, 2000)
    per_sample = {"smoothgrad": samples, "smoothgrad_sq": samples ** 2,
                  "vargrad": (samples - samples.mean(0)) ** 2}[kind]
    se = per_sample.std(0) / math.sqrt(n)
    ours = fattr.noise_tunnel(fattr.saliency, kind=kind, n_samples=n, stdevs=sd)(
        f, x, abs=False, generator=torch.Generator().manual_seed(8))
    with global_seed(8):
        theirs = NoiseTunnel(Saliency(f)).attribute(x, nt_type=kind, nt_samples=n, stdevs=sd, abs=False)
    assert bool(((ours - exact).abs() <= 5 * se).all())
    assert bool(((theirs - exact).abs() <= 5 * se).all())
