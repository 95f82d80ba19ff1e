"""The shared plan cache of ``fattr.split``: reuse, invalidation, weak keys, purity, threads.

Every layer method builds a split per call; the traced partition is cached per
(model, layers, ``attribute_to_layer_input``, specialisation) and reused while
:func:`fattr._src.layer.fingerprint.fingerprint` is unchanged. These tests count the
calls to ``graph.plan`` (the trace), compare cached results bit for bit with
uncached ones (the fingerprint made to raise ``Uncacheable``: every split traces
afresh, as before the cache), and show for each mutation that a stale plan would
have been wrong (the fingerprint made constant), so the retrace is needed.
"""
from __future__ import annotations

import functools
import gc
import threading
import types
import weakref
from typing import Any, Callable, Dict, List

import pytest
import torch
from torch import nn

import fattr
from conftest import _init, randn
from fattr._src.layer import fingerprint, graph, split
from test_layer_captum import TwoInputs, UntraceableResNet, make_resnet


class Inner(nn.Module):
    """The layer's parent: its forward (traced) reads flags, a list, an optional parameter and ``training``."""

    def __init__(self) -> None:
        super().__init__()
        self.pre, self.layer, self.post = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.act = nn.ReLU()
        self.use_skip = True
        self.scales = [1.0, 1.0]
        self.bias = nn.Parameter(torch.zeros(4))
        self.config: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pre(x)
        z = self.layer(torch.tanh(h)) * self.scales[0]
        if self.use_skip:
            z = z + h
        g = self.act(h)  # ReLU(inplace=True) would change h after the layer, once z has read it
        if self.bias is not None:
            z = z + self.bias
        if self.training:
            z = z * 0.5
        if self.config is not None and self.config.double:
            z = z * 2.0
        return self.post(torch.tanh(z) + g)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner, self.out = Inner(), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.inner(x))


class PatchedInner(Inner):
    """A class of its own, so that patching its ``forward`` touches no other test."""


def make_net(cls: type = Inner) -> Net:
    net = Net()
    net.inner = cls()
    return _init(net, seed=21)


X = randn(3, 4, seed=22)
TARGET = torch.tensor([0, 2, 1])


def lig(model: nn.Module, layer: Any = "inner.layer", x: torch.Tensor = X, **kw: Any) -> torch.Tensor:
    return fattr.layer_integrated_gradients(model, layer, x, n_steps=8, target=TARGET, **kw)


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> List[int]:
    """Counts the traces (calls to ``graph.plan``)."""
    calls: List[int] = []
    real = graph.plan

    def counting(*a: Any, **k: Any) -> graph.Plan:
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(graph, "plan", counting)
    return calls


def uncached(f: Callable[[], Any]) -> Any:
    """``f()`` with the shared cache bypassed: every split traces afresh (the behaviour before the cache)."""
    real = fingerprint.fingerprint

    def refuse(model: nn.Module, layers: Any, **_: Any) -> Any:
        raise fingerprint.Uncacheable("test")

    fingerprint.fingerprint = refuse
    try:
        return f()
    finally:
        fingerprint.fingerprint = real


def _equal(a: Any, b: Any) -> None:
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _equal(x, y)
    else:
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- reuse

def test_second_call_does_not_retrace(plans: List[int]) -> None:
    model = make_net()
    first = lig(model)
    assert len(plans) == 1  # one trace for the three heads of one call
    for _ in range(3):
        _equal(lig(model), first)
    head, tail = fattr.split(model, model.inner.layer)  # the module itself: the same key as its name
    tail(*head(X))
    assert len(plans) == 1
    lig(model, attribute_to_layer_input=True)  # another key
    lig(model, "inner.post")
    assert len(plans) == 3


def test_one_fingerprint_per_call_and_one_per_call_of_a_handle(monkeypatch: pytest.MonkeyPatch) -> None:
    """The heads of one call (inputs and baselines) check the model once; every call checks it again, a
    split handle's calls too, so a change between calls retraces (the flag below changes the output)."""
    checks: List[int] = []
    real = fingerprint.fingerprint
    monkeypatch.setattr(fingerprint, "fingerprint", lambda *a, **k: (checks.append(1), real(*a, **k))[1])
    model = make_net()
    handle = fattr.split(model, "inner.layer")
    for layer in ("inner.layer", handle):
        checks.clear()
        first = lig(model, layer)
        assert len(checks) == 1
        model.inner.use_skip = False
        second = lig(model, layer)
        assert len(checks) == 2
        _equal(second, uncached(lambda: lig(model)))
        assert not torch.allclose(first, second)
        model.inner.use_skip = True


CASES: Dict[str, Callable[[], tuple]] = {
    "resnet": lambda: (make_resnet(), "body.1.conv2", (randn(3, 2, 5, 5, seed=1),), [0, 2, 1], ()),
    "two_inputs": lambda: (_init(TwoInputs(), seed=7), "mix", (randn(3, 4, seed=3), randn(3, 3, seed=4)), 1,
                           (randn(3, 1, seed=6), "skip")),
    "untraceable": lambda: (make_resnet(UntraceableResNet), "body.1", (randn(3, 2, 5, 5, seed=1),), 2, ()),
}
METHODS = {
    "layer_integrated_gradients": lambda m, layer, x, t, a: fattr.layer_integrated_gradients(
        m, layer, x, n_steps=6, target=t, args=a, return_delta=True),
    "layer_conductance": lambda m, layer, x, t, a: fattr.layer_conductance(m, layer, x, n_steps=6, target=t, args=a),
    "layer_gradient_x_activation": lambda m, layer, x, t, a: fattr.layer_gradient_x_activation(
        m, layer, x, target=t, args=a, attribute_to_layer_input=True),
    "layer_activation": lambda m, layer, x, t, a: fattr.layer_activation(m, layer, x, args=a),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("method", sorted(METHODS))
def test_cached_results_are_identical_to_uncached(case: str, method: str, plans: List[int]) -> None:
    model, layer, x, target, args = CASES[case]()
    inputs = x if len(x) > 1 else x[0]
    f = METHODS[method]
    expected = uncached(lambda: f(model, layer, inputs, target, args))
    n = len(plans)
    first, second = f(model, layer, inputs, target, args), f(model, layer, inputs, target, args)
    assert len(plans) == n + 1
    _equal(first, expected)
    _equal(second, expected)


def test_specialisations_are_cached_apart(plans: List[int]) -> None:
    model, layer, x, target, (scale, _) = CASES["two_inputs"]()
    results = {mode: lig(model, layer, x, args=(scale, mode)) for mode in ("skip", "plain", "skip", "plain")}
    assert len(plans) == 2
    assert not torch.allclose(results["skip"], results["plain"])
    for mode, got in results.items():
        _equal(got, uncached(lambda: lig(model, layer, x, args=(scale, mode))))


def test_plans_per_model_are_bounded_least_recently_used_first(plans: List[int]) -> None:
    model, layer, x, target, (scale, _) = CASES["two_inputs"]()
    head, _ = fattr.split(model, layer)
    for mode in range(split._MAX_PLANS + 5):  # a string the graph is specialised to
        head(*x, scale, str(mode))
    assert len(split._plans[id(model)][1]) == split._MAX_PLANS
    n = len(plans)
    head(*x, scale, str(split._MAX_PLANS + 4))  # the most recent: kept
    assert len(plans) == n
    head(*x, scale, "0")  # the oldest: dropped
    assert len(plans) == n + 1


# --------------------------------------------------------------------------- what must not retrace

def test_weights_changed_in_place_or_replaced_are_seen_without_retracing(plans: List[int]) -> None:
    model = make_net()
    before = lig(model)
    with torch.no_grad():
        model.inner.pre.weight.mul_(1.5)   # before the layer
        model.out.bias.add_(0.25)          # after the layer
    model.inner.post.weight = nn.Parameter(model.inner.post.weight.detach() * -1.0)  # a new Parameter object
    model.load_state_dict({k: v * 1.1 for k, v in model.state_dict().items()})
    after = lig(model)
    assert len(plans) == 1
    assert not torch.allclose(before, after)
    _equal(after, uncached(lambda: lig(model)))


def test_differentiable_with_respect_to_parameters_through_a_cached_plan(plans: List[int]) -> None:
    model = make_net()
    lig(model)
    params = [model.inner.pre.weight, model.inner.layer.weight, model.out.weight]
    grads = torch.autograd.grad(lig(model).pow(2).sum(), params)
    assert len(plans) == 1
    expected = torch.autograd.grad(uncached(lambda: lig(model)).pow(2).sum(), params)
    for g, e in zip(grads, expected):
        assert torch.equal(g, e)


# --------------------------------------------------------------------------- what must retrace

def _ancestor_hook(model: Net) -> None:
    model.inner.register_forward_hook(lambda m, i, o: o * 2.0)


def _instance_forward(model: Net) -> None:
    def forward(self: Inner, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.layer(torch.tanh(self.pre(x))) * 3.0)
    model.inner.forward = types.MethodType(forward, model.inner)


def _leaf_inplace(model: Net) -> None:
    model.inner.act.inplace = True


def _list_in_place(model: Net) -> None:
    model.inner.scales[0] = 2.0


def _parameter_to_none(model: Net) -> None:
    with torch.no_grad():
        model.inner.bias.fill_(0.5)
    model.inner.bias = None


def _replace_submodule(model: Net) -> None:
    model.inner.pre = _init(nn.Linear(4, 4), seed=23)


def _replace_layer(model: Net) -> None:
    model.inner.layer = _init(nn.Linear(4, 4), seed=24)


MUTATIONS: Dict[str, tuple] = {  # name: (mutation, a stale plan would be wrong)
    "train": (lambda m: m.train(), True),
    "flag": (lambda m: setattr(m.inner, "use_skip", False), True),
    "list_in_place": (_list_in_place, True),
    "parameter_to_none": (_parameter_to_none, True),
    "ancestor_hook": (_ancestor_hook, True),
    "instance_forward": (_instance_forward, True),
    "leaf_inplace": (_leaf_inplace, True),
    "replace_submodule": (_replace_submodule, False),  # untraced modules are looked up at call time
    "replace_layer": (_replace_layer, False),          # named: resolved again, a new key
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_changes_to_the_model_retrace_and_give_correct_results(name: str, plans: List[int],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    mutate, stale_is_wrong = MUTATIONS[name]
    model = make_net()
    before = lig(model)
    assert len(plans) == 1
    mutate(model)
    expected = uncached(lambda: lig(model))
    n = len(plans)
    got, again = lig(model), lig(model)
    assert len(plans) == n + 1, "retraced once after the change, then reused"
    _equal(got, expected)
    _equal(again, expected)
    head, tail = fattr.split(model, "inner.layer")
    torch.testing.assert_close(tail(*head(X)), model(X), rtol=1e-13, atol=1e-13)
    if name != "leaf_inplace":
        assert not torch.allclose(got, before)

    # the control: with a fingerprint that never changes, the stale plan is wrong
    fresh = make_net()
    monkeypatch.setattr(fingerprint, "fingerprint", lambda m, layers, **_: ())
    lig(fresh)
    mutate(fresh)
    head, tail = fattr.split(fresh, "inner.layer")
    try:
        wrong = not torch.allclose(tail(*head(X)), fresh(X), rtol=1e-10, atol=1e-10)
    except TypeError:  # the stale graph adds the parameter that is now None
        wrong = True
    assert stale_is_wrong == wrong


def test_class_forward_patched_retraces(plans: List[int], monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_net(PatchedInner)
    before = lig(model)

    def forward(self: Inner, x: torch.Tensor) -> torch.Tensor:
        return self.post(torch.sigmoid(self.layer(self.pre(x))))

    monkeypatch.setattr(PatchedInner, "forward", forward)
    got = lig(model)
    assert len(plans) == 2
    assert not torch.allclose(got, before)
    _equal(got, uncached(lambda: lig(model)))


def test_hooks_switch_between_the_fallback_and_the_graph(plans: List[int]) -> None:
    model = make_net()
    head, tail = fattr.split(model, "inner.layer")
    assert head(X)[1][-1].traced
    handle = model.inner.register_forward_pre_hook(lambda m, args: (args[0] * 0.5,))
    act, rest = head(X)
    assert not rest[-1].traced and "hooks" in rest[-1].reason
    torch.testing.assert_close(tail(act, rest), model(X), rtol=1e-13, atol=1e-13)
    handle.remove()
    assert head(X)[1][-1].traced
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: o)
    try:
        assert not head(X)[1][-1].traced
    finally:
        handle.remove()
    act, rest = head(X)
    assert rest[-1].traced
    torch.testing.assert_close(tail(act, rest), model(X), rtol=1e-13, atol=1e-13)
    assert len(plans) == 5


def test_config_objects_are_summarised_by_content(plans: List[int]) -> None:
    """A config object on a traced module (every Hugging Face model has one): shared plans, and a change
    of one of its values is seen (a retrace)."""
    model = make_net()
    model.inner.config = types.SimpleNamespace(double=False, labels={0: "a"})
    first = lig(model)
    assert lig(model) is not None and len(plans) == 1
    model.inner.config.double = True
    second = lig(model)
    assert len(plans) == 2 and id(model) in split._plans
    assert not torch.allclose(first, second)
    _equal(second, uncached(lambda: lig(model)))


def test_partial_attributes_are_summarised(plans: List[int]) -> None:
    model = make_net()
    model.inner.helper = functools.partial(torch.nn.functional.leaky_relu, negative_slope=0.1)
    lig(model)
    model.inner.helper = functools.partial(torch.nn.functional.leaky_relu, negative_slope=0.1)  # an equal one
    lig(model)
    assert len(plans) == 1
    model.inner.helper = functools.partial(torch.nn.functional.leaky_relu, negative_slope=0.2)
    lig(model)
    assert len(plans) == 2


def test_unsummarisable_attributes_are_not_cached(plans: List[int]) -> None:
    """An object fattr cannot summarise (no attributes to read): no sharing, every call traces."""
    model = make_net()
    model.inner.state = object()
    with pytest.raises(fingerprint.Uncacheable):
        fingerprint.fingerprint(model, [model.inner.layer])
    lig(model)
    lig(model)
    assert len(plans) == 2 and id(model) not in split._plans


# --------------------------------------------------------------------------- weak keys, purity, threads

@pytest.mark.parametrize("cls", [Inner, None])
def test_the_cache_does_not_keep_the_model_alive(cls: Any) -> None:
    model = make_net() if cls is not None else make_resnet(UntraceableResNet)
    layer = "inner.layer" if cls is not None else "body.1"
    x = X if cls is not None else randn(2, 2, 5, 5, seed=1)
    fattr.layer_integrated_gradients(model, layer, x, n_steps=4, target=0)
    key, ref = id(model), weakref.ref(model)
    assert key in split._plans
    del model
    gc.collect()
    assert ref() is None
    assert key not in split._plans


def _state(model: nn.Module) -> list:
    return [(type(m), {k: (sorted(v) if isinstance(v, dict) else v) for k, v in vars(m).items()
                       if not isinstance(v, torch.Tensor)}) for m in model.modules()]


def test_nothing_is_stored_on_the_model() -> None:
    model = make_net()
    before = _state(model)
    for _ in range(2):
        lig(model)
        fattr.layer_conductance(model, "inner.layer", X, n_steps=4, target=TARGET)
    assert _state(model) == before
    assert all(not isinstance(v, (graph.Plan, split.Token)) for m in model.modules() for v in vars(m).values())


def test_tail_rejects_the_rest_of_another_split_and_accepts_an_equal_split() -> None:
    model = make_net()
    head_a, tail_a = fattr.split(model, "inner.layer")
    head_b, tail_b = fattr.split(model, "inner.pre")
    _, tail_same = fattr.split(model, model.inner.layer)
    act, rest = head_a(X)
    torch.testing.assert_close(tail_same(act, rest), model(X), rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="rest: expected the rest tuple returned by this split's head"):
        tail_b(act, rest)


def test_concurrent_calls_share_one_model(plans: List[int]) -> None:
    model = make_net()
    expected = uncached(lambda: lig(model))
    n = len(plans)
    errors: List[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                _equal(lig(model), expected)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert 1 <= len(plans) - n <= 4
