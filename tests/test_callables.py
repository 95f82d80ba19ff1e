"""Layer methods on any callable, ``kwargs`` for every method, and the fallback split (issue: transformers).

Over every registered method: a layer method given a function that calls the layer (and the layer as a
module object) gives what it gives on the module itself; a per-example keyword argument stays with its
example at every step, sample and ablation (equal to a loop over examples, each called alone).
"""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import fattr
from conftest import completeness_gap

from test_contract import N, NAMES, SPECS, call, data, leaves, make_net

LAYER_NAMES = [name for name in NAMES if SPECS[name].layer]


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_layer_methods_take_any_callable(name: str) -> None:
    spec, model = SPECS[name], make_net().eval()
    x, dist = data()
    f = lambda z: model(z) * 1.0  # noqa: E731  a function, not the module
    ours = call(spec, f, x, dist=dist, layer=model.body[1])
    reference = call(spec, model, x, dist=dist, layer="body.1")
    for a, b in zip(leaves(ours), leaves(reference), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


class Scaled(nn.Module):
    """A model with a keyword argument: ``scale`` multiplies the hidden layer, one row per example."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 8), nn.Tanh())
        self.head = nn.Sequential(nn.Tanh(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor, *, scale: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x) * scale)


class ScaledPositional(Scaled):
    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, scale=scale)


@pytest.mark.parametrize("name", [n for n in NAMES if SPECS[n].inputs == "features"])  # token ids: own tests
def test_kwargs_stay_with_their_example(name: str) -> None:
    spec = SPECS[name]
    torch.manual_seed(0)
    model = Scaled().double().eval()
    x, dist = data()
    scale = torch.linspace(0.5, 2.0, N, dtype=torch.float64).unsqueeze(1).expand(N, 8).contiguous()
    together = call(spec, model, x, dist=dist, kwargs={"scale": scale})
    if spec.stochastic:  # draws depend on the batch: the same call with scale passed in args instead
        positional = ScaledPositional().double().eval()
        positional.load_state_dict(model.state_dict())
        reference = call(spec, positional, x, dist=dist, args=(scale,))
        for a, b in zip(leaves(together), leaves(reference), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        return
    for i in range(N):
        alone = call(spec, model, x[i:i + 1], dist=dist, kwargs={"scale": scale[i:i + 1]},
                     **({"target": [0, 1, 2, 0][i]} if spec.targeted else {}))
        for a, b in zip(leaves(together), leaves(alone), strict=True):
            if a.shape[0] == N and b.shape[0] == 1:
                a = a[i:i + 1]
            elif a.shape[0] == b.shape[0] * N:  # per (example, sample) deltas
                a = a.reshape(N, -1)[i].reshape(b.shape)
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


class ReadsLayerWeight(nn.Module):
    """A parent whose forward reads an attribute of the layer (HF ViT and Swin embeddings do)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.proj.weight.dtype:
            x = x.to(self.proj.weight.dtype)
        return self.fc(self.proj(x).mean((2, 3)))


def test_a_parent_reading_the_layer_attributes_matches_captum() -> None:
    captum_attr = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    model, x = ReadsLayerWeight().double().eval(), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    ours = fattr.layer_integrated_gradients(model, "proj", x, target=1, n_steps=16)
    theirs = captum_attr.LayerIntegratedGradients(model, model.proj).attribute(x, target=1, n_steps=16)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-9)


class DataDependent(nn.Module):
    """Control flow on a tensor's value: neither torch.fx nor torch.export can capture it."""

    def __init__(self) -> None:
        super().__init__()
        self.proj, self.fc = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        if bool(h.sum() > 1e9):
            h = h * 2
        return self.fc(torch.tanh(h))


def test_the_fallback_warns_once_names_the_reason_and_is_exact() -> None:
    torch.manual_seed(0)
    model, x = DataDependent().double(), torch.randn(4, 3, dtype=torch.float64)
    fattr._src.layer.split._warned.clear()
    with pytest.warns(fattr.CaptureWarning, match=r"DataDependent for layer: torch\.fx: .*torch\.export: .*whole model"):
        attr, delta = fattr.layer_integrated_gradients(model, "proj", x, target=0, return_delta=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fattr.CaptureWarning)  # once per model class and layer
        fattr.layer_integrated_gradients(model, "proj", x, target=0)
    gap = completeness_gap(model, x, None, attr, 0)  # computed here, not by fattr
    assert float(gap.abs().max()) < 1e-6
    torch.testing.assert_close(delta.detach(), gap, rtol=0, atol=1e-12)
    s = fattr.split(model, "proj")
    assert s.captured is None and s.reason is None
    act, rest = s.head(x)
    assert s.captured is False and "torch.export" in s.reason
    torch.testing.assert_close(s.tail(act, rest), model(x))
    assert not model.proj._forward_hooks and not model.proj._forward_pre_hooks  # nothing left behind


def test_a_dotted_name_needs_a_module() -> None:
    model = make_net()
    with pytest.raises(TypeError, match=r"layer: expected a module object when the model is a function"):
        fattr.layer_gradient_x_activation(lambda z: model(z), "body.1", torch.randn(2, 6, dtype=torch.float64),
                                          target=0)
