"""Properties of ``fattr.split``: ``tail(*head(x)) == model(x)``, the partition, purity, errors, the fallback.

Models cover: skip connections (a ResNet-style net), a second input branch
joining after the layer, extra args (a per-example tensor and a string flag that
controls Python control flow), tuple outputs and multi-input layers, shape
queries before the layer used after it (``x.shape[0]``, ``torch.arange``),
in-place operations after the layer, tensor constants created in ``forward``, and
models torch.fx cannot trace (data-dependent control flow, forward side effects).
"""
from __future__ import annotations

import threading
import warnings
from typing import Any, Callable, List, Tuple

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import fattr
from conftest import _init, randn
from fattr._src.arguments import tile, tile_args
from fattr._src.layer.split import build
from test_layer_captum import ResNet, TupleModel, TwoInputs, UntraceableResNet, make_resnet


class ShapeNet(nn.Module):
    """Uses the batch size and the length taken *before* the layer *after* it."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 4)
        self.layer = nn.Linear(4, 4)
        self.pos = nn.Parameter(torch.zeros(6, 4))
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, L, 3)
        b, length = x.shape[0], x.size(1)
        h = self.embed(x)
        positions = torch.arange(length, device=x.device)
        z = self.layer(h) + self.pos[positions] + torch.tensor([0.5, -0.5, 0.25, 0.0], dtype=x.dtype)
        return self.out(z.reshape(b, length, -1).mean(1)) * (h.view(b, -1).sum(1, keepdim=True) ** 0)


class InPlaceAfter(nn.Module):
    """Modifies, after the layer, a tensor computed before it (torch.fx path would be wrong: fallback)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.layer, self.out = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        z = self.layer(h)
        y = z * h          # reads h before the in-place update below
        h.mul_(2.0)
        return self.out(y + h)


class InPlaceOnActivation(nn.Module):
    """In-place ops on the activation itself and after it (the tail must copy its inputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.layer, self.out = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.a(x))
        z = self.relu(self.layer(h))
        z += h
        return self.out(z)


class SideEffect(nn.Module):
    """Stores an intermediate on itself during forward (tracing would store a Proxy: fallback)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.layer, self.out = nn.Linear(3, 4), nn.Linear(4, 2), nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.a(x))
        self.last_hidden = h
        return self.out(self.layer(h))


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer, self.other = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.other(self.layer(self.layer(x)))


class DataTwice(nn.Module):
    """Calls the layer a second time when the data says so (fx cannot trace it: the fallback counts)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer, self.other = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layer(x)
        if bool(x.sum() > -1e9):
            h = self.layer(h)
        return self.other(h)


def _snapshot(model: nn.Module):
    return ([sorted(vars(m)) for m in model.modules()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
            {k: v.detach().clone() for k, v in model.state_dict().items()},
            [m.training for m in model.modules()])


def _assert_unchanged(model: nn.Module, before) -> None:
    after = _snapshot(model)
    assert after[0] == before[0], "attributes were added to or removed from a module"
    assert after[1] == before[1], "hooks were left registered"
    assert after[3] == before[3]
    for k, v in before[2].items():
        assert torch.equal(after[2][k], v), f"{k} changed"


def _model_cases() -> List[Tuple[str, Callable[[], nn.Module], Callable[[int, int], tuple], List[str]]]:
    """(name, model factory, inputs-and-args factory (batch, seed), layers that run once)."""
    def resnet_inputs(b, s):
        return (randn(b, 2, 5, 5, seed=s),)

    def two_inputs(b, s):
        return (randn(b, 4, seed=s), randn(b, 3, seed=s + 1), randn(b, 1, seed=s + 2), "skip")

    def tuple_inputs(b, s):
        return (randn(b, 4, seed=s),)

    def shape_inputs(b, s):
        return (randn(b, 6, 3, seed=s),)

    def vector_inputs(b, s):
        return (randn(b, 3, seed=s),)
    return [
        ("resnet", make_resnet, resnet_inputs,
         ["stem", "body", "body.0", "body.1", "body.1.conv1", "body.1.bn1", "body.1.act1", "body.1.conv2",
          "body.1.bn2", "fc"]),
        ("untraceable", lambda: make_resnet(UntraceableResNet), resnet_inputs, ["body.0.conv2", "body.1", "fc"]),
        ("two_inputs", lambda: _init(TwoInputs(), seed=7), two_inputs, ["enc_a", "enc_b", "mix", "out"]),
        ("tuples", lambda: _init(TupleModel(), seed=8), tuple_inputs, ["pre", "pair", "pair.lin", "combine", "out"]),
        ("shapes", lambda: _init(ShapeNet(), seed=9), shape_inputs, ["embed", "layer", "out"]),
        ("inplace_after", lambda: _init(InPlaceAfter(), seed=10), vector_inputs, ["a", "layer", "out"]),
        ("inplace_activation", lambda: _init(InPlaceOnActivation(), seed=11), vector_inputs,
         ["a", "layer", "relu", "out"]),
    ]


CASES = {name: (factory, inputs, layers) for name, factory, inputs, layers in _model_cases()}
LAYER_CASES = [(name, layer) for name, (_, _, layers) in CASES.items() for layer in layers]


def _equal(a: Any, b: Any) -> None:
    if isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b)
        for x, y in zip(a, b):
            _equal(x, y)
    else:
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


# --------------------------------------------------------------------------- reproduction

@settings(max_examples=30)
@given(case=st.sampled_from(LAYER_CASES), to_input=st.booleans(), batch=st.integers(1, 4), seed=st.integers(0, 99))
def test_tail_of_head_reproduces_the_model(case, to_input: bool, batch: int, seed: int) -> None:
    name, layer = case
    factory, make_inputs, _ = CASES[name]
    model, values = factory(), make_inputs(batch, seed)
    head, tail = fattr.split(model, layer, attribute_to_layer_input=to_input)
    expected = model(*values)
    _equal(tail(*head(*values)), expected)
    _equal(tail(*head(*values)), expected)  # the tail does not consume or modify the head's values


@pytest.mark.parametrize("name,layer", LAYER_CASES)
def test_partition_path_and_folded_tail(name: str, layer: str) -> None:
    """fx path where expected; the tail accepts step-folded activations (3 copies) with tiled rest."""
    factory, make_inputs, _ = CASES[name]
    model, values = factory(), make_inputs(2, 0)
    head, tail = fattr.split(model, layer)
    act, rest = head(*values)
    untraceable = name == "untraceable" or (name, layer) == ("inplace_after", "layer")
    assert rest[-1].traced == (not untraceable), rest[-1]
    k = 3
    act3 = tuple(tile(a, k) for a in act) if isinstance(act, tuple) else tile(act, k)
    out = tail(act3, tile_args(rest, 2, k))
    _equal(out, tile(model(*values), k))


def test_rest_carries_skip_connections_and_holds_them() -> None:
    """At a conv inside a residual block, the block input is carried; varying the activation leaves it alone."""
    model, x = make_resnet(), randn(2, 2, 5, 5, seed=3)
    head, tail = fattr.split(model, "body.1.conv2")
    act, rest = head(x)
    block_input = fattr.layer_activation(model, "body.1", x, attribute_to_layer_input=True)
    assert any(isinstance(r, torch.Tensor) and torch.equal(r, block_input) for r in rest[:-1])
    # a zero activation: the block's output is tanh(bn2(0) + block input)
    bn2 = model.body[1].bn2
    expected_h = torch.tanh(bn2(torch.zeros_like(act)) + block_input)
    torch.testing.assert_close(tail(torch.zeros_like(act), rest), model.fc(expected_h.mean(dim=(2, 3))))


def test_head_runs_only_the_prefix() -> None:
    """The head evaluates nothing after the layer; the tail nothing before it (counted with hooks on a copy)."""
    model, x = make_resnet(), randn(2, 2, 5, 5, seed=3)
    calls: List[str] = []
    for n, m in model.named_modules():
        if n and not list(m.children()):
            m.register_forward_hook(lambda mod, i, o, n=n: calls.append(n))
    head, tail = fattr.split(model, "body.1.conv2")
    # hooks on leaves do not stop tracing (only the layer's ancestors are traced)
    act, rest = head(x)
    assert rest[-1].traced
    assert calls[-1] == "body.1.conv2" and "fc" not in calls and "body.1.bn2" not in calls
    calls.clear()
    tail(act, rest)
    assert calls == ["body.1.bn2", "fc"]


def test_graph_is_specialised_to_non_tensor_args() -> None:
    model = _init(TwoInputs(), seed=7)
    xa, xb, s = randn(2, 4, seed=1), randn(2, 3, seed=2), randn(2, 1, seed=3)
    head, tail = fattr.split(model, "mix")
    for mode in ("skip", "plain", "skip"):
        act, rest = head(xa, xb, s, mode)
        assert rest[-1].traced
        _equal(tail(act, rest), model(xa, xb, s, mode))
    assert not torch.allclose(model(xa, xb, s, "skip"), model(xa, xb, s, "plain"))


def test_list_of_layers_substitutes_all() -> None:
    model = _init(TwoInputs(), seed=7)
    values = (randn(2, 4, seed=1), randn(2, 3, seed=2), randn(2, 1, seed=3), "skip")
    head, tail = fattr.split(model, ["enc_a", model.mix])
    (a, m), rest = head(*values)
    _equal(tail([a, m], rest), model(*values))
    # with enc_a's output replaced, mix's output is held: only the skip path sees the change
    changed = tail([a + 1.0, m], rest)
    expected = model.out(torch.tanh(m + torch.tanh(a + 1.0)))
    torch.testing.assert_close(changed, expected)


def test_layer_is_the_model_itself() -> None:
    model, x = make_resnet(), randn(2, 2, 5, 5, seed=3)
    head, tail = fattr.split(model, model)
    act, rest = head(x)
    assert rest[-1].kind == "export"  # torch.fx cannot cut at its root; torch.export can
    _equal(act, model(x))
    _equal(tail(act * 2, rest), model(x) * 2)
    head, tail = fattr.split(model, model, attribute_to_layer_input=True)
    act, rest = head(x)
    _equal(act, x)
    _equal(tail(act + 1, rest), model(x + 1))


# --------------------------------------------------------------------------- purity

@pytest.mark.parametrize("name", ["resnet", "untraceable", "shapes", "inplace_after", "inplace_activation"])
def test_no_state_left_and_buffers_untouched_in_training_mode(name: str) -> None:
    factory, make_inputs, layers = CASES[name]
    model = factory().train()
    values = make_inputs(3, 1)
    before = _snapshot(model)
    for to_input in (False, True):
        head, tail = fattr.split(model, layers[1], attribute_to_layer_input=to_input)
        act, rest = head(*values)
        tail(act, rest)
    _assert_unchanged(model, before)


def test_side_effects_of_tracing_are_undone() -> None:
    model, x = _init(SideEffect(), seed=12), randn(2, 3, seed=1)
    before = _snapshot(model)
    head, tail = fattr.split(model, "layer")
    act, rest = head(x)
    assert not rest[-1].traced and "attributes" in rest[-1].reason
    _equal(tail(act, rest), model.layer(torch.tanh(model.a(x))))
    assert sorted(vars(model)) == before[0][0]


def test_tensor_constants_created_in_forward_stay_off_the_model() -> None:
    model, x = _init(ShapeNet(), seed=9), randn(2, 6, 3, seed=1)
    before = _snapshot(model)
    head, tail = fattr.split(model, "layer")
    act, rest = head(x)
    assert rest[-1].traced
    _assert_unchanged(model, before)


@pytest.mark.parametrize("model_factory,layer", [(Twice, "layer"), (DataTwice, "layer")])
def test_layer_called_twice_is_a_value_error_and_leaves_nothing(model_factory, layer: str) -> None:
    model = model_factory()
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"layer: expected a layer that runs exactly once.*called 2 times"):
        head, _ = fattr.split(model, layer)
        head(torch.ones(2, 3))
    _assert_unchanged(model, before)


def test_errors_name_the_argument_and_leave_nothing() -> None:
    model, x = make_resnet(), randn(2, 2, 5, 5, seed=3)
    before = _snapshot(model)
    with pytest.raises(ValueError, match="layer: expected the dotted name of a submodule.*'body.7'"):
        fattr.split(model, "body.7")
    with pytest.raises(ValueError, match="layer: expected a submodule of the model.*Conv2d"):
        fattr.split(model, nn.Conv2d(1, 1, 1))
    with pytest.raises(TypeError, match="layer: expected an nn.Module"):
        fattr.split(model, 3)
    with pytest.raises(TypeError, match="layer: expected a module object.*dotted name needs an nn.Module"):
        fattr.split(lambda t: t, "x")
    with pytest.raises(TypeError, match="model: expected an nn.Module or a callable"):
        fattr.split(3, model.fc)
    with pytest.raises(ValueError, match=r"layer\[1\]: expected distinct layers"):
        fattr.split(model, ["fc", model.fc])
    with pytest.raises(TypeError, match="attribute_to_layer_input"):
        fattr.split(model, "fc", attribute_to_layer_input=1)
    for m in (model, make_resnet(UntraceableResNet)):  # an error midway through the forward (bad input shape)
        head, tail = fattr.split(m, "body.1.conv2")
        with pytest.raises(RuntimeError):
            head(randn(2, 3, 5, 5, seed=1))
    head, tail = fattr.split(model, "body.1.conv2")
    act, rest = head(x)
    with pytest.raises(ValueError, match="rest: expected the rest tuple returned by this split's head"):
        tail(act, rest[:-1])
    with pytest.raises(TypeError, match="inputs: expected inputs, args and kwargs that model.forward"):
        head(x, x)
    _assert_unchanged(model, before)


# --------------------------------------------------------------------------- autograd, no_grad, threads

@pytest.mark.parametrize("cls", [ResNet, UntraceableResNet])
def test_differentiable_on_both_sides_and_same_under_no_grad(cls: type) -> None:
    model, x = make_resnet(cls), randn(2, 2, 5, 5, seed=3)
    head, tail = fattr.split(model, "body.1.conv2")
    loss = tail(*head(x)).pow(2).sum()
    grads = torch.autograd.grad(loss, [model.stem.weight, model.fc.weight])
    expected = torch.autograd.grad(model(x).pow(2).sum(), [model.stem.weight, model.fc.weight])
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        act, rest = head(x)
        _equal(tail(act, rest), model(x))


def test_concurrent_splits_and_calls_from_threads() -> None:
    models = [make_resnet(), _init(TwoInputs(), seed=7)]
    inputs = [(randn(2, 2, 5, 5, seed=3),), (randn(2, 4, seed=1), randn(2, 3, seed=2), randn(2, 1, seed=3), "skip")]
    layers = ["body.1.conv2", "mix"]
    expected = [m(*v) for m, v in zip(models, inputs)]
    errors: List[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                j = i % 2
                head, tail = fattr.split(models[j], layers[j])
                _equal(tail(*head(*inputs[j])), expected[j])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_build_reports_the_layers() -> None:
    model = make_resnet()
    s = build(model, ["fc", "body.1"])
    assert s.was_list and s.layers == (model.fc, model.body[1])


class AddsInPlace(nn.Module):
    """A module of the user's own: fattr does not look inside it, so it may work in place (it does)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.mul_(2.0)


@pytest.mark.parametrize("tail_module,copies", [(nn.Tanh(), False), (nn.ReLU(inplace=True), True),
                                                (AddsInPlace(), True), (nn.Sequential(AddsInPlace()), True)])
def test_tail_copies_its_inputs_only_when_it_may_work_in_place(tail_module, copies) -> None:
    """A tail of torch.nn's own out-of-place modules reads the activation as given; others get copies."""
    model = _init(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4), tail_module, nn.Linear(4, 2)), seed=3)
    x = randn(2, 3, seed=1)
    head, tail = fattr.split(model, "1")
    act, rest = head(x)
    kept = act.clone()
    _equal(tail(act, rest), model(x))
    _equal(tail(act, rest), model(x))  # the activation was not changed by the first call
    _equal(act, kept)
    assert rest[-1].traced and rest[-1].plan.tail_mutates is copies


def _scaled_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return self.c(self.b(self.a(x))) * 3


class ThreeStep(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(self.a(x)))


def test_a_forward_bound_to_the_instance_is_the_one_split() -> None:
    """torch.fx traces the class's forward, so it refuses an instance-level one; torch.export calls the
    module, so it captures the instance's."""
    import types
    model, x = _init(ThreeStep(), seed=4), randn(2, 3, seed=1)
    model.forward = types.MethodType(_scaled_forward, model)
    head, tail = fattr.split(model, "b")
    act, rest = head(x)
    assert rest[-1].kind == "export"
    _equal(tail(act, rest), model(x))
    _equal(tail(act * 0, rest), model.c(torch.zeros_like(act)) * 3)
    assert "forward" in vars(model) and vars(model)["forward"].__self__ is model  # left as it was


def test_a_forward_closing_over_the_module_is_split_by_substitution() -> None:
    model, x = _init(ThreeStep(), seed=4), randn(2, 3, seed=1)
    original = model.forward
    model.forward = lambda z: original(z) * 2
    head, tail = fattr.split(model, "b")
    act, rest = head(x)
    _equal(tail(act, rest), model(x))
    _equal(tail(act * 0, rest), model.c(torch.zeros_like(act)) * 2)
    assert vars(model)["forward"] is not original and not model.b._forward_hooks  # left as it was


class FrozenParts(nn.Module):
    """``torch.no_grad()`` blocks before and after the layer (fx does not record them)."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen, self.layer, self.side, self.out = nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = self.frozen(x)
        z = self.layer(h)
        with torch.no_grad():
            side = self.side(z) ** 2
        return self.out(z) + side


@pytest.mark.parametrize("grad_mode", [True, False])
def test_no_grad_blocks_of_the_forward_hold_in_head_and_tail(grad_mode: bool) -> None:
    """Gradients flow where the model's own forward lets them (Captum's hooks see the same), nowhere else."""
    model, x = _init(FrozenParts(), seed=6), randn(3, 3, seed=2)
    with torch.set_grad_enabled(grad_mode):
        head, tail = fattr.split(model, "layer")  # traced under either mode: the plan is shared
        act, rest = head(x)
    assert rest[-1].traced
    leaf = act.detach().requires_grad_()
    (grad,) = torch.autograd.grad(tail(leaf, rest)[:, 1].sum(), leaf)
    torch.testing.assert_close(grad, model.out.weight[1].expand_as(grad).detach(), rtol=0, atol=0)
    _equal(tail(act, rest), model(x))
    assert not act.requires_grad  # computed inside the forward's no_grad block
    attr = fattr.layer_gradient_x_activation(model, "layer", x, target=1)
    torch.testing.assert_close(attr, act * model.out.weight[1].detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("as_function", [False, True])
def test_a_hook_runs_at_every_call(as_function: bool) -> None:
    """A hook may have side effects (a user collecting activations), so it must run at every head call:
    torch.fx calls the hooked module (a leaf outside the layer's ancestors) as it is; torch.export would
    inline the hook and run it once, at capture, so it refuses, and a function of the model falls back to
    calling it."""
    model, x = _init(ThreeStep(), seed=4), randn(2, 3, seed=1)
    calls: List[int] = []
    handle = model.a.register_forward_hook(lambda m, a, out: calls.append(1))
    try:
        f = (lambda x: model(x)) if as_function else model
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            act, rest = fattr.split(f, model.b).head(x)
            assert len(calls) == 1
            fattr.split(f, model.b).head(x)
            assert len(calls) == 2
        assert rest[-1].kind == ("substitute" if as_function else "fx")
        assert any("hooks" in str(w.message) for w in caught) == as_function
        _equal(act, torch.tanh(model.a(x)))
    finally:
        handle.remove()
