"""Guided IG and Blur IG against PAIR's ``saliency`` package (numpy core, one example at a time).

PAIR gets a ``call_model_function`` built from the same torch model (float64); fattr runs all
examples at once. ``saliency`` 0.2.1 still calls ``np.quantile(..., interpolation=)``, removed in
numpy 2: the test shims that keyword to ``method=``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fattr
from conftest import make_cnn, make_mlp, randn

saliency_core = pytest.importorskip("saliency.core")

_quantile = np.quantile


def _quantile_shim(a, q, *args, interpolation=None, **kwargs):
    if interpolation is not None:
        kwargs["method"] = interpolation
    return _quantile(a, q, *args, **kwargs)


@pytest.fixture
def old_numpy_quantile(monkeypatch):
    monkeypatch.setattr(np, "quantile", _quantile_shim)


def call_model_function(model, target, channels_last):
    """PAIR's interface: a batch of numpy inputs -> the gradients of ``model(x)[:, target]``."""
    def fn(x_batch, call_model_args=None, expected_keys=None):
        x = torch.tensor(np.asarray(x_batch), dtype=torch.float64)
        if channels_last:
            x = x.permute(0, 3, 1, 2)
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(model(x)[:, target].sum(), x)
        if channels_last:
            g = g.permute(0, 2, 3, 1)
        return {saliency_core.base.INPUT_OUTPUT_GRADIENTS: g.detach().numpy()}
    return fn


def _cases():
    return [("mlp", make_mlp(n_in=10, seed=4), randn(3, 10, seed=5), randn(1, 10, seed=6)),
            ("cnn", make_cnn(seed=7), randn(3, 2, 6, 6, seed=8), 0.1 * randn(1, 2, 6, 6, seed=9))]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
@pytest.mark.parametrize("max_dist,fraction", [(0.02, 0.25), (1.0, 0.1), (0.0, 0.25)])
def test_guided_ig_matches_pair(old_numpy_quantile, case, max_dist, fraction):
    name, model, x, base = case
    target, n_steps = 1, 40
    ours = fattr.guided_integrated_gradients(model, x, base, n_steps, fraction=fraction, max_dist=max_dist,
                                             target=target)
    fn = call_model_function(model, target, channels_last=False)
    theirs = np.stack([saliency_core.GuidedIG().GetMask(x[i].numpy(), fn, x_baseline=base[0].numpy(),
                                                         x_steps=n_steps, fraction=fraction, max_dist=max_dist)
                       for i in range(x.shape[0])])
    torch.testing.assert_close(ours, torch.from_numpy(theirs), rtol=0, atol=1e-6)
    assert ours.abs().max() > 1e-3  # not trivially zero


class ImageMLP(torch.nn.Module):
    """An MLP on flattened ``(C, H, W)`` images: Blur IG needs spatial axes."""

    def __init__(self) -> None:
        super().__init__()
        self.net = make_mlp(n_in=2 * 5 * 4, seed=10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


@pytest.mark.parametrize("model,shape", [(ImageMLP(), (3, 2, 5, 4)), (make_cnn(seed=11), (3, 2, 6, 6))],
                         ids=["mlp", "cnn"])
@pytest.mark.parametrize("options", [{}, {"max_sigma": 3.0, "n_steps": 30, "sqrt": True, "grad_step": 0.05}],
                         ids=["defaults", "sqrt"])
def test_blur_ig_matches_pair(model, shape, options):
    x = randn(*shape, seed=12)
    target = 2
    ours = fattr.blur_integrated_gradients(model, x, target=target, **options)
    fn = call_model_function(model, target, channels_last=True)
    pair_options = {("steps" if k == "n_steps" else k): v for k, v in options.items()}
    theirs = np.stack([saliency_core.BlurIG().GetMask(x[i].permute(1, 2, 0).numpy(), fn, **pair_options)
                       for i in range(x.shape[0])])
    torch.testing.assert_close(ours, torch.from_numpy(theirs).permute(0, 3, 1, 2), rtol=0, atol=1e-6)
    assert ours.abs().max() > 1e-3
