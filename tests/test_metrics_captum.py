"""``fattr.metrics.infidelity`` and ``sensitivity_max`` against ``captum.metrics`` on the same perturbations.

Both libraries call the perturbation function on the inputs repeated example-major, in the same
chunks; a function drawing from its own seeded generator therefore gives both the same draws.
float64 models: the scores agree to rounding (``rtol=1e-10``).
"""
from __future__ import annotations

import pytest
import torch

import fattr
import fattr.metrics
from conftest import make_cnn, make_mlp, make_two_input, randn

captum_metrics = pytest.importorskip("captum.metrics")


class Noise:
    """A perturbation function with its own seeded generator (Captum's contract: inputs -> (I, x - I))."""

    def __init__(self, seed: int, scale: float = 0.1, with_baselines: bool = False):
        self.g = torch.Generator().manual_seed(seed)
        self.scale = scale
        self.with_baselines = with_baselines

    def draw(self, x):
        return self.scale * torch.randn(x.shape, generator=self.g, dtype=x.dtype)

    def __call__(self, inputs, baselines=None):
        if isinstance(inputs, tuple):
            noise = tuple(self.draw(x) for x in inputs)
            return noise, tuple(x - z for x, z in zip(inputs, noise, strict=True))
        noise = self.draw(inputs)
        if self.with_baselines:  # binary masks towards the baseline, as for global attributions
            keep = (torch.rand(inputs.shape, generator=self.g, dtype=inputs.dtype) < 0.5).to(inputs.dtype)
            return keep, inputs - keep * (inputs - baselines)
        return noise, inputs - noise


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("max_examples_per_batch", [None, 6, 7])
def test_infidelity_matches_captum(normalize, max_examples_per_batch):
    net = make_mlp(seed=3)
    x = randn(3, 5, seed=4)
    target = [0, 2, 1]
    attr = fattr.integrated_gradients(net, x, target=target, n_steps=16)
    ours = fattr.metrics.infidelity(net, Noise(0), x, attr, target=target, n_perturb_samples=9,
                                    max_examples_per_batch=max_examples_per_batch, normalize=normalize)
    theirs = captum_metrics.infidelity(net, Noise(0), x, attr, target=target, n_perturb_samples=9,
                                       max_examples_per_batch=max_examples_per_batch, normalize=normalize)
    assert ours.shape == theirs.shape == (3,)
    torch.testing.assert_close(ours.detach(), theirs, rtol=1e-10, atol=1e-14)


def test_infidelity_matches_captum_with_baselines_args_and_tuples():
    net = make_cnn(seed=5)
    x, base = randn(2, 2, 6, 6, seed=6), randn(2, 2, 6, 6, seed=7)
    attr = fattr.integrated_gradients(net, x, base, target=3, n_steps=8)
    ours = fattr.metrics.infidelity(net, Noise(1, with_baselines=True), x, attr, baselines=base, target=3,
                                    n_perturb_samples=5)
    theirs = captum_metrics.infidelity(net, Noise(1, with_baselines=True), x, attr, baselines=base, target=3,
                                       n_perturb_samples=5)
    torch.testing.assert_close(ours.detach(), theirs, rtol=1e-10, atol=1e-14)

    model = make_two_input()
    xs, scale = (randn(3, 4, seed=8), randn(3, 2, 3, seed=9)), randn(3, 1, seed=10)
    attrs = fattr.saliency(model, xs, target=1, args=(scale,), abs=False)
    ours = fattr.metrics.infidelity(model, Noise(2), xs, attrs, target=1, args=(scale,), n_perturb_samples=4,
                                    max_examples_per_batch=6)
    theirs = captum_metrics.infidelity(model, Noise(2), xs, attrs, target=1, additional_forward_args=(scale,),
                                       n_perturb_samples=4, max_examples_per_batch=6)
    torch.testing.assert_close(ours.detach(), theirs, rtol=1e-10, atol=1e-14)


class Uniform:
    """Captum's default perturbation (uniform in the L-inf ball), from its own generator."""

    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def __call__(self, inputs, radius):
        if isinstance(inputs, tuple):
            return tuple(self(x, radius) for x in inputs)
        return inputs + (2 * torch.rand(inputs.shape, generator=self.g, dtype=inputs.dtype) - 1) * radius


@pytest.mark.parametrize("norm_ord", ["fro", 1, float("inf")])
@pytest.mark.parametrize("max_examples_per_batch", [None, 8])
def test_sensitivity_max_matches_captum(norm_ord, max_examples_per_batch):
    from captum.attr import Saliency

    net = make_mlp(seed=11)
    x = randn(4, 5, seed=12)
    target = torch.tensor([0, 1, 2, 0])
    ours_fn = lambda inputs, target: fattr.saliency(net, inputs, target=target)  # noqa: E731
    ours = fattr.metrics.sensitivity_max(ours_fn, x, Uniform(3), perturb_radius=0.1, n_perturb_samples=7,
                                         norm_ord=norm_ord, max_examples_per_batch=max_examples_per_batch,
                                         target=target)
    theirs = captum_metrics.sensitivity_max(Saliency(net).attribute, x, Uniform(3), perturb_radius=0.1,
                                            n_perturb_samples=7, norm_ord=norm_ord,
                                            max_examples_per_batch=max_examples_per_batch, target=target)
    assert ours.shape == theirs.shape == (4,)
    assert float(ours.min()) > 0
    torch.testing.assert_close(ours.detach(), theirs, rtol=1e-10, atol=1e-14)


def test_sensitivity_max_matches_captum_with_baselines_and_args():
    from captum.attr import IntegratedGradients

    model = make_two_input()
    xs, scale = (randn(3, 4, seed=13), randn(3, 2, 3, seed=14)), randn(3, 1, seed=15)
    base = (randn(3, 4, seed=16), 0.0)

    def ours_fn(inputs, target, baselines, args):
        return fattr.integrated_gradients(model, inputs, baselines, 8, "riemann_right", target=target, args=args)

    def theirs_fn(inputs, target, baselines, additional_forward_args):
        return IntegratedGradients(model).attribute(inputs, baselines, target=target, n_steps=8,
                                                    method="riemann_right",
                                                    additional_forward_args=additional_forward_args)

    ours = fattr.metrics.sensitivity_max(ours_fn, xs, Uniform(4), n_perturb_samples=5, target=[0, 1, 2],
                                         baselines=base, args=(scale,))
    theirs = captum_metrics.sensitivity_max(theirs_fn, xs, Uniform(4), n_perturb_samples=5, target=[0, 1, 2],
                                            baselines=base, additional_forward_args=(scale,))
    torch.testing.assert_close(ours.detach(), theirs, rtol=1e-8, atol=1e-12)


def test_default_perturbation_is_uniform_in_the_ball_and_from_the_generator():
    seen = []

    def explain(inputs):
        seen.append(inputs.detach().clone())
        return inputs ** 2

    x = randn(3, 4, seed=17)
    a = fattr.metrics.sensitivity_max(explain, x, perturb_radius=0.05, n_perturb_samples=50,
                                      generator=torch.Generator().manual_seed(0))
    moved = seen[1] - x.repeat_interleave(50, 0)
    assert float(moved.abs().max()) <= 0.05 and float(moved.abs().max()) > 0.045
    assert abs(float(moved.mean())) < 0.005
    state = torch.get_rng_state()
    b = fattr.metrics.sensitivity_max(explain, x, perturb_radius=0.05, n_perturb_samples=50,
                                      generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.equal(state, torch.get_rng_state())
