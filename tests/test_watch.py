"""The fingerprint's cheap re-check (:mod:`fattr._src.layer.watch`): whenever a change makes the fingerprint
differ, the watch must say so; when nothing changed, a call takes it instead of a fingerprint.

Every mutation below is first checked to change the fingerprint itself (the reference), then the watch
recorded before it must see it."""
from __future__ import annotations

import types
from typing import Any, Callable, List

import pytest
import torch
from torch import nn
from torch.nn.modules import module as torch_module
from torch.nn.utils import parametrize

import fattr
from fattr._src.layer import fingerprint, watch


class Config:
    def __init__(self) -> None:
        self.scale, self.extra, self.sizes, self.tags = 2.0, {"k": 1}, [1, 2], {"a"}


class Inner(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config, self.layer, self.act = config, nn.Linear(4, 4), nn.Tanh()
        self.use_skip, self.table, self.pair = True, {"a": 1}, (config, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.layer(x)) * self.config.scale
        return y + x if self.use_skip else y


def make() -> nn.Module:
    torch.manual_seed(0)
    config = Config()
    model = nn.Sequential(nn.Linear(3, 4), Inner(config), nn.LeakyReLU(0.1), nn.Linear(4, 2))
    model.config = config  # type: ignore[assignment]
    return model.eval()


def _other_forward(self: Any, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - never run
    return x


MUTATIONS: List[Callable[[nn.Module], Any]] = [
    lambda m: m.__setitem__(0, nn.Linear(3, 4)),                       # a submodule replaced
    lambda m: m[1].train(),                                             # a traced module's mode
    lambda m: m[1].register_forward_hook(lambda *a: None),              # a hook on a traced module
    lambda m: m[1].register_forward_pre_hook(lambda *a: None),
    lambda m: setattr(m[1], "use_skip", False),                         # a flag
    lambda m: setattr(m.config, "scale", 3.0),                          # a config value, in place
    lambda m: m.config.extra.__setitem__("k", 2),                       # a dict inside the config
    lambda m: m.config.sizes.append(3),                                 # a list inside the config
    lambda m: m.config.tags.add("b"),                                   # a set inside the config
    lambda m: m[1].table.__setitem__("b", 2),                           # a dict attribute
    lambda m: m[1].register_parameter("extra", None),                   # a parameter registered as None
    lambda m: setattr(m[1], "__class__", type("Inner2", (Inner,), {})),  # the class swapped
    lambda m: setattr(m[1], "forward", types.MethodType(_other_forward, m[1])),  # an instance forward
    lambda m: setattr(m[2], "inplace", True),                           # an untraced module's in-place flag
    lambda m: torch_module.register_module_forward_hook(lambda *a: None),  # a global hook
]


@pytest.mark.parametrize("i", range(len(MUTATIONS)))
def test_every_change_of_the_fingerprint_is_seen(i: int) -> None:
    model = make()
    layers = [model[1].layer]
    traced: set = set()
    before = fingerprint.fingerprint(model, layers, traced_ids=traced)
    seen = watch.record([model], traced)
    assert seen is not None and watch.unchanged(seen, [model])
    handle = MUTATIONS[i](model)
    try:
        assert fingerprint.fingerprint(model, layers) != before  # the reference: the change matters
        assert not watch.unchanged(seen, [model])
    finally:
        if hasattr(handle, "remove"):
            handle.remove()


def test_a_class_forward_patched_is_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make()
    traced: set = set()
    before = fingerprint.fingerprint(model, [model[1].layer], traced_ids=traced)
    seen = watch.record([model], traced)
    assert seen is not None
    monkeypatch.setattr(Inner, "forward", _other_forward)
    assert fingerprint.fingerprint(model, [model[1].layer]) != before and not watch.unchanged(seen, [model])


def test_running_the_model_and_attributions_changes_nothing() -> None:
    model = make()
    traced: set = set()
    fingerprint.fingerprint(model, [model[1].layer], traced_ids=traced)
    seen = watch.record([model], traced)
    assert seen is not None
    x = torch.randn(5, 3)
    model(x)
    fattr.layer_integrated_gradients(model, model[1].layer, x, target=1, n_steps=4)
    with torch.no_grad():
        model[0].weight.mul_(2)  # parameter values are not part of the fingerprint
    assert watch.unchanged(seen, [model])


def _counting(monkeypatch: pytest.MonkeyPatch, name: str) -> List[int]:
    """Counts the calls of ``fingerprint.<name>``."""
    count, real = [0], getattr(fingerprint, name)
    monkeypatch.setattr(fingerprint, name, lambda *a, **k: (count.__setitem__(0, count[0] + 1), real(*a, **k))[1])
    return count


@pytest.mark.parametrize("as_function", [False, True])
def test_a_repeat_call_computes_no_fingerprint_and_a_change_is_seen(monkeypatch: pytest.MonkeyPatch,
                                                                     as_function: bool) -> None:
    model = make()
    f = (lambda x: model(x)) if as_function else model
    x = torch.randn(5, 3)
    count = _counting(monkeypatch, "of_function" if as_function else "fingerprint")

    def call() -> torch.Tensor:
        return fattr.layer_gradient_x_activation(f, model[1].layer, x, target=1)

    first = [call() for _ in range(3)]  # the first capture may rewrite the model's dicts: fingerprinted again
    count[0] = 0
    assert torch.equal(call(), first[0]) and count[0] == 0
    model[1].use_skip = False  # changes the output after the layer
    changed = call()
    assert count[0] == 1 and not torch.allclose(changed, first[0])
    model[1].use_skip = True
    torch.testing.assert_close(call(), first[0], rtol=0, atol=0)


def test_a_parametrized_weight_is_read_through_its_parametrization() -> None:
    """The exported graph's parameters are read from the modules' registries where they are registered, and
    through the module otherwise (a parametrization's property): the weight is the parametrized one."""

    class Double(nn.Module):
        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return 2 * w

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).eval()
    parametrize.register_parametrization(model[0], "weight", Double())
    f = lambda x: model(x)  # noqa: E731  (a function: captured by torch.export)
    x = torch.randn(5, 3)
    for _ in range(2):
        torch.testing.assert_close(fattr.layer_activation(f, model[1], x), torch.tanh(model[0](x)))
        with torch.no_grad():
            model[0].parametrizations.weight.original.mul_(3)
