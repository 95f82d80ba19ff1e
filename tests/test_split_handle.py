"""A split as a reusable handle: ``s = fattr.split(model, layer)`` passed as ``layer=s``.

Every method that takes a layer (layer methods, layer DeepLift, neuron methods, guided Grad-CAM)
accepts the handle and gives what it gives for the module itself; the handle keeps its plan (no
trace and no shared-cache lookup after the first call) and is checked against the call.
"""
from __future__ import annotations

from typing import Any, List

import pytest
import torch

import fattr
from fattr._src.layer import graph, split
from test_contract import call, data, make_net

LAYER_SPECS = [s for s in fattr.methods() if s.layer and s.inputs == "features"]


def _same(a: Any, b: Any) -> None:
    if isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    else:
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("spec", LAYER_SPECS, ids=lambda s: s.name)
def test_a_handle_gives_what_the_module_gives(spec: Any) -> None:
    net = make_net().eval()
    x, dist = data()
    handle = fattr.split(net, net.body[1])
    _same(call(spec, net, x, dist=dist, layer=handle), call(spec, net, x, dist=dist, layer=net.body[1]))


def test_the_methods_cover_every_family() -> None:
    names = {s.name for s in LAYER_SPECS}
    assert {"layer_integrated_gradients", "layer_deeplift", "neuron_gradient", "guided_grad_cam"} <= names


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Counts the traces (``graph.plan``) and the lookups in the shared plan cache (``split._shared``)."""
    seen = {"plan": 0, "shared": 0}
    real_plan, real_shared = graph.plan, split._shared

    def plan(*a: Any, **k: Any) -> Any:
        seen["plan"] += 1
        return real_plan(*a, **k)

    def shared(*a: Any, **k: Any) -> Any:
        seen["shared"] += 1
        return real_shared(*a, **k)

    monkeypatch.setattr(graph, "plan", plan)
    monkeypatch.setattr(split, "_shared", shared)
    return seen


def test_a_handle_is_reused_across_calls(counts: dict) -> None:
    net = make_net().eval()
    x, _ = data()
    handle = fattr.split(net, "body.1")
    results: List[torch.Tensor] = [fattr.layer_integrated_gradients(net, handle, x, target=0, n_steps=8)
                                   for _ in range(4)]
    results += [fattr.layer_gradient_x_activation(net, handle, x, target=1) for _ in range(3)]
    assert counts["plan"] <= 1 and counts["shared"] == 1  # captured once, then the handle's own plan
    _same(results[0], results[3])
    with torch.no_grad():
        net.body[0].weight.mul_(2)  # weights are read at call time: no new capture
    changed = fattr.layer_integrated_gradients(net, handle, x, target=0, n_steps=8)
    assert counts["shared"] == 1 and not torch.equal(changed, results[0])
    _same(changed, fattr.layer_integrated_gradients(net, "body.1", x, target=0, n_steps=8))


def test_a_handle_notices_a_changed_model(counts: dict) -> None:
    net = make_net().eval()
    x, _ = data()
    handle = fattr.split(net, "body.1")
    fattr.layer_gradient_x_activation(net, handle, x, target=0)
    net.train()
    fattr.layer_gradient_x_activation(net, handle, x, target=0)
    assert counts["shared"] == 2  # a new fingerprint: looked up (and captured) again


def test_a_handle_of_another_model_is_refused() -> None:
    net, other = make_net(), make_net()
    x, _ = data()
    handle = fattr.split(other, "body.1")
    with pytest.raises(ValueError, match=r"layer: expected a split of the model it is used with.*Net"):
        fattr.layer_integrated_gradients(net, handle, x, target=0)
    with pytest.raises(ValueError, match=r"layer: expected a split of the model"):
        fattr.neuron_gradient(net, handle, x, neuron_selector=0)


def test_a_handle_at_the_other_side_of_the_layer_is_refused() -> None:
    net = make_net()
    x, _ = data()
    handle = fattr.split(net, "body.1", attribute_to_layer_input=True)
    with pytest.raises(ValueError, match=r"attribute_to_layer_input: expected True, as the split"):
        fattr.layer_gradient_x_activation(net, handle, x, target=0)
    with pytest.raises(ValueError, match=r"attribute_to_neuron_input: expected True, as the split"):
        fattr.neuron_gradient(net, handle, x, neuron_selector=0)
    _same(fattr.layer_gradient_x_activation(net, handle, x, target=0, attribute_to_layer_input=True),
          fattr.layer_gradient_x_activation(net, "body.1", x, target=0, attribute_to_layer_input=True))


def test_a_handle_of_several_layers_needs_a_method_that_takes_several() -> None:
    net = make_net().eval()
    x, _ = data()
    handle = fattr.split(net, ["body.0", "body.2"])
    _same(fattr.layer_integrated_gradients(net, handle, x, target=0, n_steps=8),
          fattr.layer_integrated_gradients(net, ["body.0", "body.2"], x, target=0, n_steps=8))
    with pytest.raises(TypeError, match=r"layer: expected a split at one layer"):
        fattr.layer_conductance(net, handle, x, target=0)
