"""neuron_feature_ablation: feature ablation of one neuron, against Captum's NeuronFeatureAblation."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fattr

captum_attr = pytest.importorskip("captum.attr")


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).double()


@pytest.mark.parametrize("selector", [1, (2, 1, 1), (slice(0, 2), 1, slice(0, 3))])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_captum(selector, masked) -> None:
    model = _cnn()
    x = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    layer = model[2] if selector != 1 else model[5]
    selector = selector if selector != 1 else 1
    mask = (torch.arange(64).reshape(1, 1, 8, 8) // 16).expand(1, 2, 8, 8) if masked else None
    ours = fattr.neuron_feature_ablation(model, layer, x, 0.25, neuron_selector=selector, feature_mask=mask,
                                         perturbations_per_eval=3)
    theirs = captum_attr.NeuronFeatureAblation(model, layer).attribute(
        x, selector, baselines=0.25, feature_mask=mask, perturbations_per_eval=3)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_ablating_a_linear_neuron_gives_its_weights_times_the_input() -> None:
    """For a linear neuron, ablating feature i to 0 drops it by w_i * x_i (closed form)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    attr = fattr.neuron_feature_ablation(model, "0", x, neuron_selector=2)
    torch.testing.assert_close(attr, x * model[0].weight[2], rtol=1e-12, atol=1e-12)
