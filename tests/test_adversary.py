"""Adversarial tests of what fattr remembers across calls (issue 11): a second call after the model or
its surroundings changed must give what a fresh call gives.

The reference is always independent of the memory under test: a deep copy of the model in its new state
(a new object: no split, plan, scan or head memory of its own), attributed by a fresh call, or Captum. Each
case also checks that the change matters (the first call's result differs from the reference), so a
stale plan, split, leaf scan or head stacking would fail it.
"""
from __future__ import annotations

import copy
import gc
import threading
import types
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import torch
from torch import nn

import fattr
from conftest import _init

X = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
B = 0.1 * torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))


class Net(nn.Module):
    """The layer (``mid``) inside the traced root, whose forward reads flags; a batch norm before it."""

    def __init__(self) -> None:
        super().__init__()
        self.pre, self.bn, self.act = nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh()
        self.mid, self.mid2, self.post = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.scale, self.use_skip = 1.0, True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.bn(self.pre(x)))
        y = self.mid2(torch.tanh(self.mid(h))) * self.scale
        return self.post(torch.tanh(y + h if self.use_skip else y))


class Tripled(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 3.0


class NetWithoutSkip(Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(torch.tanh(self.mid2(torch.tanh(self.mid(self.act(self.bn(self.pre(x))))))))


def make(seed: int = 0) -> Net:
    model = _init(Net(), seed)
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 1.5)
    return model


def _fresh(shape: Tuple[int, int], seed: int) -> nn.Linear:
    return _init(nn.Linear(*shape), seed)


def _tripled_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return nn.functional.linear(x, self.weight, self.bias) * 3.0


def _swap(m: Net) -> None:
    m.mid, m.mid2 = m.mid2, m.mid


def _move(m: Net) -> None:  # the layer object now runs later, under another name; a new module in its place
    m.mid2, m.mid = m.mid, _fresh((4, 4), 7)


def _in_place(p: torch.Tensor, k: float) -> None:
    with torch.no_grad():
        p.mul_(k)


MUTATIONS: Dict[str, Callable[[Net], Any]] = {
    "swap_layers": _swap,
    "move_layer": _move,
    "replace_layer": lambda m: setattr(m, "mid", _fresh((4, 4), 8)),
    "delete_and_add_another": lambda m: (delattr(m, "mid"), setattr(m, "mid", _fresh((4, 4), 9))),
    "replace_before": lambda m: setattr(m, "pre", _fresh((3, 4), 10)),
    "replace_after": lambda m: setattr(m, "post", _fresh((4, 2), 11)),
    "replace_parameter_of_layer": lambda m: setattr(m.mid, "weight", nn.Parameter(m.mid.weight.detach() * 2)),
    "replace_parameter_before": lambda m: setattr(m.pre, "weight", nn.Parameter(m.pre.weight.detach() * 2)),
    "parameter_in_place_after": lambda m: _in_place(m.mid2.weight, 2.0),
    "buffer_in_place_before": lambda m: _in_place(m.bn.running_var, 3.0),
    "train": lambda m: m.train(),
    "train_submodule_before": lambda m: m.bn.train(),
    "flag": lambda m: setattr(m, "use_skip", False),
    "scale": lambda m: setattr(m, "scale", 2.0),
    "hook_on_layer": lambda m: m.mid.register_forward_hook(lambda mod, i, o: o * 3.0),
    "pre_hook_on_layer": lambda m: m.mid.register_forward_pre_hook(lambda mod, i: (i[0] * 3.0,)),
    "hook_after": lambda m: m.post.register_forward_hook(lambda mod, i, o: o * 3.0),
    "pre_hook_on_model": lambda m: m.register_forward_pre_hook(lambda mod, i: (i[0] * 3.0,)),
    "class_of_a_module_after": lambda m: setattr(m.post, "__class__", Tripled),
    "forward_of_an_instance_after": lambda m: setattr(m.post, "forward", types.MethodType(_tripled_forward, m.post)),
    "class_of_the_model": lambda m: setattr(m, "__class__", NetWithoutSkip),
}

METHODS: Dict[str, Callable[[nn.Module, Any], torch.Tensor]] = {
    "layer_integrated_gradients": lambda m, layer: fattr.layer_integrated_gradients(m, layer, X, B, n_steps=8,
                                                                                     target=0),
    "layer_gradient_x_activation": lambda m, layer: fattr.layer_gradient_x_activation(m, layer, X, target=1),
    "layer_conductance": lambda m, layer: fattr.layer_conductance(m, layer, X, B, n_steps=8, target=0),
    "layer_activation": lambda m, layer: fattr.layer_activation(m, layer, X),
}


def _path(model: nn.Module, module: nn.Module) -> Optional[str]:
    return next((name for name, m in model.named_modules() if m is module), None)


def _grads(out: torch.Tensor, model: nn.Module) -> List[Optional[torch.Tensor]]:
    params = [p for p in model.parameters() if p.requires_grad]
    return list(torch.autograd.grad(out.pow(2).sum(), params, allow_unused=True))


def _same(a: List[Optional[torch.Tensor]], b: List[Optional[torch.Tensor]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x is None) == (y is None)
        if x is not None and y is not None:
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


# changes after the layer leave its activation as it was (no case: it could not fail)
_AFTER = {"replace_after", "parameter_in_place_after", "flag", "scale", "hook_after", "class_of_a_module_after",
          "forward_of_an_instance_after", "class_of_the_model"}
_STRUCTURAL = {"swap_layers", "move_layer", "replace_layer", "delete_and_add_another"}  # by name and by module
CASES = [(mutation, method, by) for i, mutation in enumerate(sorted(MUTATIONS)) for j, method in enumerate(sorted(METHODS))
         if not (method == "layer_activation" and mutation in _AFTER)
         for by in (["name", "module"] if mutation in _STRUCTURAL else [("name", "module")[(i + j) % 2]])]


@pytest.mark.parametrize("mutation, method, by", CASES)
def test_a_second_call_after_a_change_gives_what_a_fresh_copy_gives(mutation: str, method: str, by: str) -> None:
    """Values and their gradients with respect to every parameter (grad mode on)."""
    attribute, model = METHODS[method], make()
    layer: Any = "mid" if by == "name" else model.mid
    first = attribute(model, layer)  # (remembered from now on)
    MUTATIONS[mutation](model)
    twin = copy.deepcopy(model)
    path = "mid" if by == "name" else _path(model, layer)
    if path is None:  # the layer object is no longer in the model: refused, never run from memory
        with pytest.raises(ValueError, match="layer"):
            attribute(model, layer)
        return
    expected = attribute(twin, twin.get_submodule(path))
    got = attribute(model, layer)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(first, expected, rtol=1e-6, atol=1e-9), "the change matters"
    _same(_grads(got, model), _grads(expected, twin))


# --------------------------------------------------------------------------- one head call for inputs and baselines


@pytest.mark.parametrize("change", ["submodule_in_training_mode", "batch_norm_without_running_statistics"])
def test_inputs_and_baselines_share_a_head_call_only_when_rows_do_not_meet(change: str) -> None:
    """A batch norm normalising by the batch's statistics sees the rows of one head call together: inputs
    and baselines stacked into one call would change each other's activations. Captum runs them apart."""
    from captum.attr import LayerIntegratedGradients

    model = make()
    model.use_skip = False  # (a skip connection carries per-example rows to the tail: never stacked)
    fattr.layer_integrated_gradients(model, model.mid, X, B, n_steps=8, target=0)  # stacked: all in eval mode
    if change == "submodule_in_training_mode":
        model.bn.train()  # (the model itself stays in eval mode)
    else:
        model.bn.running_mean = model.bn.running_var = None
    got = fattr.layer_integrated_gradients(model, model.mid, X, B, n_steps=8, target=0)
    expected = LayerIntegratedGradients(model, model.mid).attribute(X, B, n_steps=8, target=0)
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)
