"""What makes a split cheap per call stays correct: the generated head and tail, the resolution of a
layer, the pinned fingerprint, and one explanation per failed head.

The head and tail are Python source generated once per plan (``graph._Source``): each test here
compares them with the model on forwards whose graph holds every kind of argument the generator
writes (namedtuples, slices, lists, dicts, keywords, constants, attributes, ``no_grad`` blocks).
"""
from __future__ import annotations

import gc
import weakref
from collections import namedtuple
import pytest
import torch
from torch import nn

import fattr
from conftest import _init, randn
from fattr._src.layer import fingerprint

Pair = namedtuple("Pair", ["a", "b"])


class Busy(nn.Module):
    """A traced forward using every argument form: slices, lists, dicts via keywords, a namedtuple,
    a method with keywords, a tensor constant, a parameter read as an attribute, a no_grad block."""

    def __init__(self) -> None:
        super().__init__()
        self.pre, self.layer, self.post = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(9, 2)
        self.scale = nn.Parameter(torch.ones(6))

    def forward(self, x: torch.Tensor, *, shift: float = 0.0) -> torch.Tensor:
        h = self.pre(x)
        p = Pair(h[:, 1:4], h[:, ::2])
        with torch.no_grad():
            frozen = h.detach().sum(dim=1, keepdim=True)
        z = self.layer(torch.tanh(h)) * self.scale + torch.tensor([0.5])
        joined = torch.cat([z[:, :3], p.a * p.b, frozen.expand(-1, 3)], dim=1)
        return self.post(joined.clamp(min=-5.0, max=5.0) + shift)


@pytest.mark.parametrize("to_input", [False, True])
def test_generated_head_and_tail_reproduce_the_model(to_input: bool) -> None:
    model, x = _init(Busy(), seed=3), randn(5, 4, seed=4)
    split = fattr.split(model, "layer", attribute_to_layer_input=to_input)
    assert split.head(x)[0] is not None and split.captured
    for shift in (0.0, 1.5):
        activation, rest = split.head(x, shift=shift)
        torch.testing.assert_close(split.tail(activation, rest), model(x, shift=shift), rtol=0, atol=1e-12)
    # the activation is a copy, differentiable through the tail like the model's own
    a = activation.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(split.tail(a, rest).sum(), a)
    assert g.shape == activation.shape and bool(g.abs().sum() > 0)


def test_layer_methods_on_the_generated_plan_match_a_plain_loop() -> None:
    model, x = _init(Busy(), seed=5), randn(3, 4, seed=6)
    attr = fattr.layer_gradient_x_activation(model, "layer", x, target=1)
    act = model.layer(torch.tanh(model.pre(x))).detach().requires_grad_(True)
    head_out = act * model.scale + 0.5
    h = model.pre(x)
    joined = torch.cat([head_out[:, :3], h[:, 1:4] * h[:, ::2], h.detach().sum(1, keepdim=True).expand(-1, 3)], 1)
    (g,) = torch.autograd.grad(model.post(joined.clamp(-5, 5))[:, 1].sum(), act)
    torch.testing.assert_close(attr, g * act.detach(), rtol=0, atol=1e-12)


def test_a_named_layer_replaced_in_the_model_is_the_new_module() -> None:
    model = _init(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), seed=1)
    x = randn(2, 3, seed=2)
    first = fattr.layer_activation(model, "0", x)
    old = model[0]  # alive: only its registration tells it is no longer the model's
    model[0] = _init(nn.Linear(3, 4), seed=9)
    torch.testing.assert_close(fattr.layer_activation(model, "0", x), model[0](x), rtol=0, atol=0)
    assert not torch.equal(first, model[0](x)) and torch.equal(first, old(x))


def test_a_layer_removed_from_the_model_is_refused_again() -> None:
    model = _init(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), seed=1)
    layer, x = model[1], randn(2, 3, seed=2)
    fattr.layer_activation(model, layer, x)
    model[1] = nn.ReLU()
    with pytest.raises(ValueError, match=r"^layer: expected a submodule of the model"):
        fattr.layer_activation(model, layer, x)
    model.add_module("moved", layer)  # registered elsewhere (run last by the Sequential): found there
    torch.testing.assert_close(fattr.layer_activation(model, layer, x), model(x), rtol=0, atol=0)


def test_a_fingerprint_naming_a_collected_object_equals_no_other() -> None:
    """Ids name objects only while they live: a fingerprint whose object was collected is unequal to one
    with the same ids (the id may have been reused by a new object)."""
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    key, pins = fingerprint.fingerprint(model, (model[1],))
    assert (key, pins) == fingerprint.fingerprint(model, (model[1],))
    gone = nn.Linear(3, 4)
    stale = (key, pins[:-1] + (weakref.ref(gone),))  # as if the last object pinned had been ``gone``
    del gone
    gc.collect()
    assert stale[1][-1]() is None and stale != (key, pins) and (key, pins) != stale


def test_fingerprint_changes_with_the_module_tree_and_modes() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Tanh(), nn.Linear(4, 2)))
    layers = (model[1][1],)
    before = fingerprint.fingerprint(model, layers)
    assert before == fingerprint.fingerprint(model, layers)
    model[0] = nn.Linear(3, 4)
    assert before != fingerprint.fingerprint(model, layers)
    before = fingerprint.fingerprint(model, layers)
    model[1].eval()
    assert before != fingerprint.fingerprint(model, layers)
    before = fingerprint.fingerprint(model, layers)
    handle = model[1].register_forward_hook(lambda *a: None)
    assert before != fingerprint.fingerprint(model, layers)
    handle.remove()
    assert before == fingerprint.fingerprint(model, layers)


def test_a_head_given_inputs_of_another_dtype_names_them() -> None:
    model = _init(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), seed=1)  # float64
    head, _ = fattr.split(model, "1")
    with pytest.raises(TypeError, match=r"^inputs: expected tensors of the model's dtype \(torch.float64"):
        head(randn(2, 3, seed=2).float())


def test_a_module_in_training_mode_with_buffers_is_called_without_writing_them() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).double().train()
    before, x = model[1].running_mean.clone(), randn(6, 3, seed=3)
    a, _ = fattr.split(model, "2").head(x)
    assert torch.equal(model[1].running_mean, before)
    torch.testing.assert_close(a, model[2](model[1](model[0](x))), rtol=0, atol=1e-12)  # (this call writes)
