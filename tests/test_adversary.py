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
import operator
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
        if self.training:  # (read by the traced forward: a plan made in eval mode would be wrong)
            y = y * 0.5
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


def _rotating(names: List[str], i: int, k: int) -> List[str]:
    """``k`` of ``names``, starting at the ``i``-th group of ``k``: every method meets every kind of change across
    the cases, while each case runs a few (the split and plan memory is shared by all layer methods)."""
    return [names[(i * k + j) % len(names)] for j in range(k)]


# changes after the layer leave its activation as it was (no case: it could not fail)
_AFTER = {"replace_after", "parameter_in_place_after", "flag", "scale", "hook_after", "class_of_a_module_after",
          "forward_of_an_instance_after", "class_of_the_model"}
_STRUCTURAL = {"swap_layers", "move_layer", "replace_layer", "delete_and_add_another"}  # by name and by module
CASES = [(mutation, method, by) for i, mutation in enumerate(sorted(MUTATIONS))
         for j, method in enumerate(_rotating(sorted(METHODS) if mutation not in _AFTER else
                                              sorted(set(METHODS) - {"layer_activation"}), i, 2))
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


# ------------------------------------------------------------------- gradients with respect to what the model reads


class Scaled(nn.Module):
    """Reads a plain tensor attribute (not a parameter) that may require grad."""

    def __init__(self) -> None:
        super().__init__()
        self.pre, self.mid, self.post = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.temperature = torch.tensor(0.7, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(torch.tanh(self.mid(torch.tanh(self.pre(x)))) * self.temperature)


ANY_METHOD: Dict[str, Callable[[nn.Module], torch.Tensor]] = {
    "integrated_gradients": lambda m: fattr.integrated_gradients(m, X, B, n_steps=8, target=0),
    "saliency": lambda m: fattr.saliency(m, X, target=0, abs=False),
    "layer_integrated_gradients": lambda m: METHODS["layer_integrated_gradients"](m, m.mid),
    "layer_gradient_x_activation": lambda m: METHODS["layer_gradient_x_activation"](m, m.mid),
    "layer_conductance": lambda m: METHODS["layer_conductance"](m, m.mid),
}


def _new_parameter(m: Scaled) -> None:
    m.mid.weight = nn.Parameter(m.mid.weight.detach() + 0.5)


GRAD_CHANGES: Dict[str, Tuple[Callable[[Scaled], Any], str]] = {  # name: (change, what then requires grad)
    "unfreeze_a_parameter": (lambda m: m.pre.weight.requires_grad_(True), "pre.weight"),
    "new_tensor_attribute": (lambda m: setattr(m, "temperature", torch.tensor(1.3, dtype=torch.float64,
                                                                              requires_grad=True)), "temperature"),
    "tensor_attribute_requires_grad": (lambda m: m.temperature.requires_grad_(True), "temperature"),
    "new_parameter": (_new_parameter, "mid.weight"),
    "new_layer": (lambda m: setattr(m, "mid", _fresh((4, 4), 12)), "mid.weight"),
}


@pytest.mark.parametrize("change, method", [(change, method) for i, change in enumerate(sorted(GRAD_CHANGES))
                                             for method in _rotating(sorted(ANY_METHOD), i, 3)])
def test_a_second_call_is_differentiable_with_respect_to_what_the_model_now_reads(method: str, change: str) -> None:
    """The leaf scan (``recompute._leaves``) and the plans are remembered from the first call: the second must
    still route gradients to a parameter or tensor newly requiring grad, and to a new one."""
    attribute, model = ANY_METHOD[method], _init(Scaled(), 3)
    model.pre.weight.requires_grad_(False)
    attribute(model)
    mutate, leaf = GRAD_CHANGES[change]
    mutate(model)
    twin = copy.deepcopy(model)
    got, expected = attribute(model), attribute(twin)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    (grad,) = torch.autograd.grad(got.pow(2).sum(), operator.attrgetter(leaf)(model))
    (reference,) = torch.autograd.grad(expected.pow(2).sum(), operator.attrgetter(leaf)(twin))
    torch.testing.assert_close(grad, reference, rtol=1e-10, atol=1e-12)
    assert grad.abs().sum() > 0


# --------------------------------------------------------------------------- identities reused, modules shared


def _reborn(old_id: int, cls: type) -> Optional[nn.Module]:
    """A new, uninitialised ``cls`` at the address ``old_id`` had (CPython reuses a freed block), or None."""
    gc.collect()
    shells = [cls.__new__(cls) for _ in range(20000)]
    return next((s for s in shells if id(s) == old_id), None)


def test_a_new_model_at_a_collected_models_address_gets_nothing_of_it() -> None:
    """Memory keyed by ``id(model)`` (splits, plans, scans, head stacking) must not serve a new model that
    happens to get the same id."""
    hits = 0
    for attempt in range(5):
        model = make(attempt)
        with torch.no_grad():
            for method in METHODS.values():
                method(model, "mid")
        old = id(model)
        del model
        new = _reborn(old, NetWithoutSkip)
        if new is None:
            continue
        Net.__init__(new)
        new = _init(new, 20 + attempt)
        hits += 1
        for name, method in METHODS.items():
            torch.testing.assert_close(method(new, "mid"), method(copy.deepcopy(new), "mid"), rtol=1e-10,
                                       atol=1e-12, msg=name)
        break
    assert hits, "CPython reused no address (the test could not run its case)"


def test_a_new_layer_at_a_collected_layers_address_gets_nothing_of_it() -> None:
    model = make()
    layer = model.mid
    with torch.no_grad():  # (a result's recomputing node would keep the layer alive)
        first = {name: method(model, layer) for name, method in METHODS.items()}
    old = id(layer)
    del layer
    model.mid = None  # type: ignore[assignment]
    new = _reborn(old, nn.Linear)
    assert new is not None, "CPython reused no address"
    nn.Linear.__init__(new, 4, 4, dtype=torch.float64)
    model.mid = _init(new, 21)
    for name, method in METHODS.items():
        expected = method(copy.deepcopy(model), "mid")
        torch.testing.assert_close(method(model, new), expected, rtol=1e-10, atol=1e-12, msg=name)
        assert not torch.allclose(first[name], expected)


def test_a_layer_shared_by_two_models() -> None:
    """Plans are the model's, not the layer's: two models around one layer object, called in turn."""
    a, b = make(0), make(1)
    b.use_skip, b.scale = False, 3.0
    b.mid = a.mid
    for _ in range(2):
        for model in (a, b):
            for name, method in METHODS.items():
                twin = copy.deepcopy(model)
                torch.testing.assert_close(method(model, a.mid), method(twin, twin.mid), rtol=1e-10, atol=1e-12,
                                           msg=name)
    assert not torch.allclose(METHODS["layer_gradient_x_activation"](a, a.mid),
                              METHODS["layer_gradient_x_activation"](b, a.mid))


def test_one_model_from_threads_each_with_another_layer_and_a_change_between_rounds() -> None:
    model = make()
    layers = ["pre", "mid", "mid2", "post"]
    errors: List[BaseException] = []
    for change in (None, lambda m: setattr(m, "use_skip", False), _swap):
        if change is not None:
            change(model)
        twin = copy.deepcopy(model)
        expected = {layer: METHODS["layer_integrated_gradients"](twin, layer) for layer in layers}

        def work(layer: str) -> None:
            try:
                for _ in range(2):
                    got = METHODS["layer_integrated_gradients"](model, getattr(model, layer))
                    torch.testing.assert_close(got, expected[layer], rtol=1e-10, atol=1e-12)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(layer,)) for layer in layers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors


# --------------------------------------------------------------------------- bound callables


@pytest.mark.parametrize("name", ["layer_integrated_gradients", "layer_gradient_x_activation", "layer_conductance",
                                  "layer_activation", "integrated_gradients", "saliency"])
def test_a_bound_callable_after_changes(name: str) -> None:
    """``MethodSpec.bind`` builds the call once; after a change it gives what a fresh binding on a copy gives."""
    spec = {s.name: s for s in fattr.methods()}[name]
    options: Dict[str, Any] = {"n_steps": 8} if "integrated" in name or "conductance" in name else {}
    model = make()
    for layer in (["mid", model.mid] if spec.layer else [None]):
        bound = spec.bind(model, layer=layer, target=0, **options)
        bound(X)
        for change in (lambda m: setattr(m, "use_skip", not m.use_skip), lambda m: m.pre.register_forward_hook(
                lambda mod, i, o: o + 1.0), lambda m: setattr(m.bn, "running_mean", m.bn.running_mean + 1.0)):
            change(model)
            twin = copy.deepcopy(model)
            layer_twin = None if layer is None else twin.mid
            expected = spec.bind(twin, layer=layer_twin, target=0, **options)(X)
            torch.testing.assert_close(bound(X), expected, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- a change between a call and its backward

# A result is differentiable on demand: its backward recomputes it from the model (``recompute.checkpoint``).
# After a change to what that reads, the recomputation would differentiate another model: refused.
BEFORE_BACKWARD: Dict[str, Callable[[Net], Any]] = {
    "replace_parameter": lambda m: setattr(m.mid2, "weight", nn.Parameter(m.mid2.weight.detach() * 2)),
    "replace_submodule": lambda m: setattr(m, "post", _fresh((4, 2), 13)),
    "buffer_in_place": lambda m: _in_place(m.bn.running_var, 3.0),
    "replace_buffer": lambda m: setattr(m.bn, "running_mean", m.bn.running_mean + 1.0),
    "train_submodule": lambda m: m.bn.train(),
    "parameter_in_place": lambda m: _in_place(m.mid2.weight, 2.0),  # (an optimizer step before backward)
    "flag_changed": lambda m: setattr(m, "use_skip", False),
    "scale_changed": lambda m: setattr(m, "scale", 3.0),
}
# what leaves the recomputation as it was: the same gradients
HARMLESS: Dict[str, Callable[[Net], Any]] = {
    "eval_again": lambda m: m.eval(),
    "another_attribution": lambda m: (fattr.layer_integrated_gradients(m, "mid2", X, n_steps=4, target=1),
                                      fattr.integrated_gradients(m, X, n_steps=4, target=1)),
    "a_forward_pass": lambda m: m(X),
    "an_attribute_written": lambda m: setattr(m, "note", "x"),
    "a_mode_that_is_ignored": lambda m: (m.post.train(), m.act.train()),
}


@pytest.mark.parametrize("change, method", [(change, method) for i, change in
                                             enumerate(sorted(BEFORE_BACKWARD) + sorted(HARMLESS))
                                             for method in _rotating(sorted(ANY_METHOD), i, 2)])
def test_a_change_between_a_call_and_its_backward_is_refused_or_harmless(change: str, method: str) -> None:
    model = make()
    twin = copy.deepcopy(model)
    attribute = ANY_METHOD[method]
    got, expected = attribute(model), attribute(twin)
    params = [model.pre.weight, model.mid.weight]
    {**BEFORE_BACKWARD, **HARMLESS}[change](model)
    if change in BEFORE_BACKWARD:
        with pytest.raises(RuntimeError, match="changed between the attribution and its backward"):
            torch.autograd.grad(got.pow(2).sum(), params)
        return
    grads = torch.autograd.grad(got.pow(2).sum(), params)
    _same(list(grads), list(torch.autograd.grad(expected.pow(2).sum(), [twin.pre.weight, twin.mid.weight])))


FUNCTION_METHODS: Dict[str, Callable[[Any, nn.Module], torch.Tensor]] = {
    "integrated_gradients": lambda f, m: fattr.integrated_gradients(f, X, B, n_steps=8, target=0),
    "saliency": lambda f, m: fattr.saliency(f, X, target=0, abs=False),
    "layer_integrated_gradients": lambda f, m: fattr.layer_integrated_gradients(f, m.mid, X, B, n_steps=8, target=0),
}


@pytest.mark.parametrize("change, method", [(change, method) for i, change in
                                             enumerate(["flag_changed", "replace_submodule", "an_attribute_written",
                                                        "a_forward_pass"])
                                             for method in _rotating(sorted(FUNCTION_METHODS), i, 2)])
def test_a_function_of_a_model_changed_before_backward_is_refused(change: str, method: str) -> None:
    """The same for a function closing over the model (no module passed: its modules are found in its closure)."""
    model = make()
    twin = copy.deepcopy(model)
    got = FUNCTION_METHODS[method](lambda t: model(t) * 2.0, model)
    expected = FUNCTION_METHODS[method](lambda t: twin(t) * 2.0, twin)
    {**BEFORE_BACKWARD, **HARMLESS}[change](model)
    if change in BEFORE_BACKWARD:
        with pytest.raises(RuntimeError, match="changed between the attribution and its backward"):
            torch.autograd.grad(got.pow(2).sum(), [model.pre.weight])
        return
    _same([torch.autograd.grad(got.pow(2).sum(), [model.pre.weight])[0]],
          [torch.autograd.grad(expected.pow(2).sum(), [twin.pre.weight])[0]])


class WritesItsOwn(Net):
    """A forward that writes scalar attributes of its own at every call, with the same values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.ready, self.width = True, x.shape[-1]
        return super().forward(x)


@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "layer_integrated_gradients",
                                    "layer_gradient_x_activation"])
@pytest.mark.filterwarnings("ignore::fattr.CaptureWarning")  # (a forward writing attributes is not traced)
def test_a_forward_writing_its_own_scalar_is_differentiable_right_after(method: str) -> None:
    """A forward writing the same value again (a lazily set flag, a size) leaves the state as it was."""
    model, twin = _init(WritesItsOwn(), 0).eval(), _init(WritesItsOwn(), 0).eval()
    got, expected = ANY_METHOD[method](model), ANY_METHOD[method](twin)
    _same([torch.autograd.grad(got.pow(2).sum(), [model.pre.weight])[0]],
          [torch.autograd.grad(expected.pow(2).sum(), [twin.pre.weight])[0]])


# --------------------------------------------------------------------------- the environment: inference mode


@pytest.mark.parametrize("method", sorted(ANY_METHOD))
def test_a_gradient_method_under_inference_mode_is_refused_not_zero(method: str) -> None:
    """``torch.inference_mode()`` records no graph even under ``enable_grad``: gradients came out as zeros."""
    model = make()
    with torch.inference_mode(), pytest.raises(RuntimeError, match="torch.inference_mode"):
        ANY_METHOD[method](model)
    with torch.no_grad():  # and the next call is unaffected
        torch.testing.assert_close(ANY_METHOD[method](model), ANY_METHOD[method](copy.deepcopy(model)))


def test_a_forward_method_under_inference_mode_runs() -> None:
    model = make()
    with torch.inference_mode():
        got = METHODS["layer_activation"](model, "mid")
    torch.testing.assert_close(got, METHODS["layer_activation"](copy.deepcopy(model), "mid"))


# ---------------------------------------------------------------- what the traced forward reads from outside the model

GAIN = torch.tensor(1.0)
SCALE = 1.0


class _ReadsOutside(nn.Module):
    factor = 1.0  # a class attribute the traced forward bakes in

    def __init__(self) -> None:
        super().__init__()
        self.pre, self.mid, self.post = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(torch.tanh(self.mid(torch.tanh(self.pre(x)))) * GAIN * self.factor)


@pytest.mark.parametrize("change", ["global tensor rebound", "class attribute", "function's global scalar"])
def test_a_global_or_class_attribute_the_forward_reads_is_not_stale(change: str) -> None:
    """The plan bakes in what forward read from its class and globals; a change there traces again (it returned
    the first call's values)."""
    global GAIN, SCALE
    torch.manual_seed(0)
    model, x = _ReadsOutside().eval(), torch.randn(5, 3)
    f = model if change != "function's global scalar" else (lambda t: model(t) * SCALE)
    call = lambda g: fattr.layer_integrated_gradients(g, model.mid, x, n_steps=8, target=0)  # noqa: E731
    first = call(f)
    try:
        if change == "global tensor rebound":
            GAIN = torch.tensor(2.0)
        elif change == "class attribute":
            _ReadsOutside.factor = 2.0
        else:
            SCALE = 2.0
        again = call(f)
    finally:
        GAIN, SCALE, _ReadsOutside.factor = torch.tensor(1.0), 1.0, 1.0
    torch.testing.assert_close(again, 2 * first)  # every path to the output is scaled by 2
