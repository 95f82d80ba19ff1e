"""Input hygiene: what a bad-input audit found (issue 13, item 4; issue 10, items 7 and 8).

Each bad input gets a ``ValueError``/``TypeError`` that names the argument, says what was
expected and what arrived (never a pasted tensor or object), and the fix where it is short;
the "got" half of each message is checked too. Valid inputs that looked odd (numpy integers,
empty batches) are accepted, and give what Python ints and other batches give.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import typing

import numpy as np
import pytest
import torch
from torch import nn

import fattr
import fattr.metrics
import fattr.viz
from fattr._src import base
from test_contract import D, N, SPECS, call, data, make_net

NAMES = sorted(SPECS)


def message_of(excinfo) -> str:
    return str(excinfo.value)


def got_half(message: str) -> str:
    assert ", got " in message, message
    return message.split(", got ", 1)[1]


def no_pasted_objects(message: str) -> None:
    assert "tensor([" not in message and "\n" not in message, message
    assert "str '" not in message, f"a description was rendered as a value: {message}"


# --------------------------------------------------------------------------- model and inputs disagree

@pytest.mark.parametrize("name", [n for n in NAMES if SPECS[n].inputs == "features"])  # (token ids are integers)
def test_model_and_inputs_of_different_dtypes_name_inputs_and_the_models_dtype(name):
    spec = SPECS[name]
    x, dist = data()
    with pytest.raises(TypeError) as info:
        call(spec, make_net(), x.float(), dist=dist.float())  # a float64 model, float32 inputs
    message = message_of(info)
    assert message.startswith("inputs: expected tensors of the model's dtype (torch.float64")
    assert got_half(message).startswith("torch.float32 inputs.") and "inputs.to(torch.float64)" in message
    no_pasted_objects(message)


@pytest.mark.parametrize("method", [fattr.saliency, fattr.deeplift, fattr.input_x_gradient])
def test_half_inputs_on_a_float32_model(method):
    model = make_net().float()
    with pytest.raises(TypeError, match=r"^inputs: .*torch\.float32.*got torch\.float16 inputs"):
        method(model, data()[0].half(), target=0)


@pytest.mark.parametrize("method", [fattr.integrated_gradients, fattr.deeplift])
def test_baselines_without_values_are_named(method):
    x, _ = data()
    with pytest.raises(ValueError) as info:
        method(make_net(), x, torch.zeros(N, x.shape[1], dtype=x.dtype, device="meta"), target=0)
    message = message_of(info)
    assert message.startswith("baselines: expected a tensor with values, on the inputs' device (cpu)")
    assert got_half(message).startswith("a torch.float64 tensor of shape (4, 6) on device meta")


def test_meta_distribution_is_named():
    x, _ = data()
    with pytest.raises(ValueError, match=r"^baselines: .*on device meta"):
        fattr.gradient_shap(make_net(), x, torch.zeros(5, x.shape[1], dtype=x.dtype, device="meta"), target=0)


def _scaled(x, scale):
    return (x * scale).sum(1)


@pytest.mark.parametrize("where", ["args", "kwargs"])
def test_args_tensor_that_is_neither_per_example_nor_taken_as_is(where):
    x, _ = data()
    odd = torch.ones(3, 1, dtype=x.dtype)  # 3 rows for 4 examples
    extra = {"args": (odd,)} if where == "args" else {"kwargs": {"scale": odd}}
    with pytest.raises(ValueError) as info:
        fattr.integrated_gradients(_scaled, x, n_steps=4, **extra)
    message = message_of(info)
    assert message.startswith("args: expected" if where == "args" else "kwargs['scale']: expected")
    assert got_half(message).startswith("a torch.float64 tensor of shape (3, 1), and f failed on it")
    # a tensor f takes as is still works (one row, or the number of examples)
    fattr.integrated_gradients(_scaled, x, n_steps=4, args=(torch.ones(1, 1, dtype=x.dtype),))


def test_a_shared_args_tensor_is_not_blamed_for_another_failure():
    x, _ = data()
    weights = torch.ones(6, 2, dtype=x.dtype)  # taken as is (6 rows, 4 examples): fine

    def broken(x, w):
        return (x @ w).sum(1) + torch.ones(5, dtype=x.dtype)  # fails for its own reason

    with pytest.raises(RuntimeError, match="must match the size"):
        fattr.integrated_gradients(broken, x, n_steps=4, args=(weights,))


@pytest.mark.parametrize("method", [
    lambda m, x: fattr.saliency(m, x, target=0),
    lambda m, x: fattr.layer_gradient_x_activation(m, "body.1", x, target=0),
])
def test_batchnorm_in_training_mode_with_one_example(method):
    model = make_net(batchnorm=True).train()
    with pytest.raises(ValueError) as info:
        method(model, data()[0][:1])
    message = message_of(info)
    assert message.startswith("inputs: expected more than one example") and "model.eval()" in message
    assert got_half(message).startswith("a single example.")


# --------------------------------------------------------------------------- empty batches

@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_in_empty_out(name):
    spec = SPECS[name]
    x, dist = data()
    extra = {"target": []} if spec.targeted else {}
    out = call(spec, make_net(), x[:0], dist=dist, **extra)
    full = call(spec, make_net(), x, dist=dist)
    for empty, one in zip(torch.utils._pytree.tree_leaves(out), torch.utils._pytree.tree_leaves(full), strict=True):
        assert empty.shape == (0,) + tuple(one.shape[1:]) and empty.dtype == one.dtype


ONE_VALUE_METHODS = ["saliency", "integrated_gradients", "feature_ablation", "shapley_values",
                     "shapley_value_sampling", "lime", "kernel_shap", "feature_permutation"]


@pytest.mark.parametrize("name", ONE_VALUE_METHODS)
@pytest.mark.parametrize("shape", [(), (3, 2)], ids=["scalars", "matrices"])
def test_empty_batch_of_an_f_with_one_value_per_example(name, shape):
    """``target=None`` (one value per example), with no dims or several dims per example."""
    def f(x):
        return torch.tanh(x).sum((1, 2)) if shape else torch.tanh(x)

    x = torch.randn((N,) + shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    extra = {"generator": torch.Generator().manual_seed(0)} if SPECS[name].stochastic else {}
    full = getattr(fattr, name)(f, x, **extra)
    empty = getattr(fattr, name)(f, x[:0], **extra)
    assert empty.shape == (0,) + tuple(full.shape[1:]) and empty.dtype == full.dtype


@pytest.mark.parametrize("name", ["lime", "kernel_shap"])
def test_empty_batch_of_interpretable_features(name):
    x, _ = data()
    mask = torch.tensor([[0, 0, 1, 1, 2, 2]])
    out = getattr(fattr, name)(make_net(), x[:0], target=[], feature_mask=mask, return_input_shape=False,
                               generator=torch.Generator().manual_seed(0))
    assert out.shape == (0, 3) and out.dtype == x.dtype


def test_empty_batch_in_aggregate_mode_gives_one_row():
    x, _ = data()

    def loss(x):
        return make_net()(x).sum()

    for method in (fattr.feature_ablation, fattr.shapley_values):
        assert method(loss, x[:0], feature_mask=torch.tensor([[0, 0, 0, 1, 1, 1]])).shape == (1, D)
    assert fattr.feature_permutation(loss, x[:0], generator=torch.Generator().manual_seed(0)).shape == (1, D)


@pytest.mark.parametrize("call, name", [
    (lambda m, x: fattr.blur_integrated_gradients(m, x), "inputs"),  # vectors, not images
    (lambda m, x: fattr.blur_integrated_gradients(m, x.reshape(0, 1, 2, 3), n_steps=0), "n_steps"),
    (lambda m, x: fattr.guided_integrated_gradients(m, x, target=[], fraction=2.0), "fraction"),
    (lambda m, x: fattr.idgi(m, x, target=[], method="gausslegendre"), "method"),
    (lambda m, x: fattr.feature_ablation(m, x, target=[], perturbations_per_eval=0), "perturbations_per_eval"),
    (lambda m, x: fattr.lime(m, x, target=[], n_samples=0), "n_samples"),
], ids=["blur-inputs", "blur-n_steps", "guided-fraction", "idgi-method", "ablation-ppe", "lime-n_samples"])
def test_an_empty_batch_is_checked_like_any_other(call, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name}: "):
        call(make_net(), data()[0][:0])


# --------------------------------------------------------------------------- flags and integers

def _bool_parameters(fn):
    return [p.name for p in inspect.signature(fn).parameters.values() if isinstance(p.default, bool)]


BOOL_CASES = [(name, flag) for name in NAMES for flag in _bool_parameters(SPECS[name].fn)]


@pytest.mark.parametrize("name,flag", BOOL_CASES, ids=[f"{n}-{f}" for n, f in BOOL_CASES])
def test_every_bool_flag_is_checked_as_a_bool(name, flag):
    spec = SPECS[name]
    x, dist = data()
    with pytest.raises(TypeError) as info:
        call(spec, make_net(), x, dist=dist, **{flag: 1})
    message = message_of(info)
    assert message.startswith(f"{flag}: expected True or False") and got_half(message) == "int 1."


def test_numpy_integers_wherever_python_ints():
    model, (x, dist) = make_net(), data()
    ref = fattr.integrated_gradients(model, x, n_steps=8, target=1, chunk_size=3)
    got = fattr.integrated_gradients(model, x, n_steps=np.int64(8), target=np.int64(1), chunk_size=np.int32(3))
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    per_example = [np.int64(t) for t in (0, 1, 2, 0)]
    torch.testing.assert_close(fattr.saliency(model, x, target=per_example), fattr.saliency(model, x, target=[0, 1, 2, 0]),
                               rtol=0, atol=0)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    torch.testing.assert_close(fattr.gradient_shap(model, x, dist, np.int16(4), target=1, generator=g()),
                               fattr.gradient_shap(model, x, dist, 4, target=1, generator=g()), rtol=0, atol=0)
    three_d = lambda x: x.reshape(len(x), 2, 3)  # noqa: E731
    torch.testing.assert_close(fattr.saliency(three_d, x, target=(np.int64(1), np.int64(2))),
                               fattr.saliency(three_d, x, target=(1, 2)), rtol=0, atol=0)
    with pytest.raises(TypeError, match="n_steps"):
        fattr.integrated_gradients(model, x, n_steps=np.float64(8), target=1)


def test_negative_stdevs_are_refused_when_the_tunnel_is_built():
    for stdevs in (-0.1, (0.1, -0.2), float("nan")):
        with pytest.raises(ValueError, match=r"^stdevs: expected non-negative numbers, got"):
            fattr.noise_tunnel(fattr.saliency, stdevs=stdevs)
    with pytest.raises(TypeError, match=r"^stdevs: .*got str 'big'"):
        fattr.noise_tunnel(fattr.saliency, stdevs="big")


# --------------------------------------------------------------------------- integer inputs

@pytest.mark.parametrize("method", [
    lambda m, x: fattr.saliency(m, x, target=0),
    lambda m, x: fattr.input_x_gradient(m, x, target=0),
    lambda m, x: fattr.integrated_gradients(m, x, target=0),
    lambda m, x: fattr.gradient_shap(m, x, x[:2], target=0),
    lambda m, x: fattr.layer_conductance(m, "0", x, target=0),
    lambda m, x: fattr.internal_influence(m, "0", x, target=0),
], ids=["saliency", "input_x_gradient", "integrated_gradients", "gradient_shap", "layer_conductance",
        "internal_influence"])
def test_integer_inputs_point_to_the_embedding(method):
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    ids = torch.randint(0, 10, (2, 3), generator=torch.Generator().manual_seed(0))
    with pytest.raises(TypeError) as info:
        method(model, ids)
    message = message_of(info)
    assert message.startswith("inputs: expected a floating-point tensor")
    assert got_half(message).startswith("a torch.int64 tensor of shape (2, 3).") and "embedding" in message
    # the fix works: the layer method on the embedding
    assert fattr.layer_integrated_gradients(model, "0", ids, target=0, n_steps=4).shape == (2, 3, 4)


# --------------------------------------------------------------------------- outputs that are not tensors

@dataclasses.dataclass
class Output:
    logits: torch.Tensor
    hidden: torch.Tensor


@pytest.mark.parametrize("wrap", [lambda t: {"logits": t, "hidden": t}, lambda t: Output(t, t)],
                         ids=["dict", "dataclass"])
def test_structured_outputs_get_the_fix_and_no_tensor_dump(wrap):
    model = make_net()
    with pytest.raises(TypeError) as info:
        fattr.saliency(lambda x: wrap(model(x)), data()[0], target=0)
    message = message_of(info)
    assert message.startswith("f: expected to return a tensor, got a ")
    assert ".logits" in message
    no_pasted_objects(message)


def test_transformers_model_output_gets_the_fix():
    outputs = pytest.importorskip("transformers.modeling_outputs")
    model = make_net()
    with pytest.raises(TypeError) as info:
        fattr.integrated_gradients(lambda x: outputs.SequenceClassifierOutput(logits=model(x)), data()[0], target=0)
    message = message_of(info)
    assert "SequenceClassifierOutput" in got_half(message) and "model(*a, **k).logits" in message
    no_pasted_objects(message)


def test_descriptions_are_rendered_as_descriptions():
    """``fail`` given worded descriptions (DeepLift's checks) prints them as they are."""
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError) as info:
        fattr.deeplift(net, x, target=0, custom_attribution_func=lambda a, b, c, d: a)
    assert got_half(message_of(info)) == "a callable of 4 parameters."
    with pytest.raises(ValueError) as info:
        fattr.deeplift(net, x, target=0, custom_attribution_func=lambda m: (m[0][:1],))
    assert got_half(message_of(info)).startswith("a torch.float64 tensor of shape (1, 3).")

    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            h = self.a(x)
            out = torch.relu(h)
            h.mul_(2.0)  # updates the ReLU's input after it was read
            return self.b(out + h)

    with pytest.raises(ValueError) as info:
        fattr.deeplift(InPlace().double(), x, target=0)
    message = message_of(info)
    assert got_half(message).startswith("a later in-place update of it.")
    no_pasted_objects(message)


def test_noise_tunnel_refuses_integer_inputs():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    ids = torch.zeros(2, 3, dtype=torch.long)
    tunnel = fattr.noise_tunnel(fattr.layer_integrated_gradients, n_samples=2, stdevs=0.1)
    with pytest.raises(TypeError, match=r"^inputs: expected a floating-point tensor"):
        tunnel(model, "0", ids, target=0)


def test_every_error_message_of_the_error_tests_says_what_arrived():
    """The "got" half of the standard messages (test_errors' cases): a description, never a pasted object,
    and a string value shown as one only when the user gave a string."""
    from test_errors import CASES
    for fn, kind, _ in CASES:
        with pytest.raises(kind) as info:
            fn()
        message = message_of(info)
        if ": expected " not in message:
            continue  # Python's own signature errors, prefixed with the method's name
        assert re.match(r"^[\w\[\]'.()]+: expected .+, got .+\.", message), message
        assert "tensor([" not in message and "\n" not in message, message
        if "str '" in got_half(message):
            assert any(isinstance(v, str) for v in _string_values(fn)), message


def _string_values(fn):
    """The string constants a test case passes (its lambda's constants)."""
    return [c for c in fn.__code__.co_consts if isinstance(c, str)]


def test_error_messages_never_paste_big_objects():
    big = {"weights": torch.randn(100, 100)}
    with pytest.raises(TypeError) as info:
        fattr.integrated_gradients(make_net(), data()[0], big, target=0)
    message = message_of(info)
    assert got_half(message) == "a dict with keys weights."
    assert re.match(r"^baselines: expected", message)


# --------------------------------------------------------------------------- conventions

def test_gradient_x_input_returns_a_list_for_a_list_of_layers_like_every_layer_method():
    model, (x, _) = make_net(), data()
    got = fattr.gradient_x_input(model, x, target=0, layer=["body.0", "body.1"])
    want = fattr.layer_gradient_x_activation(model, ["body.0", "body.1"], x, target=0)
    assert isinstance(got, list) and isinstance(want, list) and len(got) == 2
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_results_that_require_grad_can_be_drawn():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 6 * 6, 2))
    x = torch.randn(2, 3, 6, 6)
    attr = fattr.integrated_gradients(model, x, target=1, n_steps=4)
    assert attr.requires_grad  # differentiable on demand: the parameters require grad
    fattr.viz.image(attr[0], x[0])
    fattr.viz.image_grid({"ig": attr}, x)
    assert "fattr-text" in fattr.viz.text(["a", "b"], attr[0, 0, 0, :2])
    assert attr.detach().numpy().shape == (2, 3, 6, 6)
    with torch.no_grad():
        assert not fattr.integrated_gradients(model, x, target=1, n_steps=4).requires_grad


# --------------------------------------------------------------------------- typed signatures

PUBLIC = {f"{module.__name__}.{name}": getattr(module, name)
          for module in (fattr, fattr.metrics, fattr.viz) for name in module.__all__
          if inspect.isfunction(getattr(module, name))}
# a parameter of the call conventions has one type wherever it appears: the alias of fattr._src.base
def _annotated(alias):
    def holder(alias) -> None: ...
    holder.__annotations__ = {"alias": alias}  # the object itself (this module's annotations are strings)
    return holder


CONVENTIONS = {"inputs": base.InputsLike, "baselines": base.BaselinesLike, "target": base.TargetLike,
               "kwargs": base.KwargsLike, "layer": base.LayerLike, "neuron_selector": base.NeuronSelectorLike,
               "feature_mask": base.FeatureMaskLike, "stdevs": base.StdevsLike,
               "generator": typing.Optional[torch.Generator]}
# as typing.get_type_hints resolves them (forward references included)
CONVENTIONS = {p: typing.get_type_hints(_annotated(a))["alias"] for p, a in CONVENTIONS.items()}
# parameters of a convention's name with a grammar of their own: token_attribution has one input (the
# prompt's token ids), so no tuple of per-input values; attribute_dataset's target also takes "label",
# "predicted" or a callable per batch
OWN_TYPES = {("fattr.token_attribution", "feature_mask"), ("fattr.token_attribution", "stdevs"),
             ("fattr.attribute_dataset", "target")}


def test_the_public_functions_are_found():
    assert len(PUBLIC) >= 55 and "fattr.integrated_gradients" in PUBLIC and "fattr.metrics.infidelity" in PUBLIC


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_function_has_typed_parameters_and_a_return_type(name):
    fn = PUBLIC[name]
    hints = typing.get_type_hints(fn)  # every annotation resolves to a type
    params = inspect.signature(fn).parameters
    assert [p for p in params if p not in hints] == [] and "return" in hints, name
    if name.startswith("fattr.viz."):
        return  # drawing: its own arguments (arrays, axes, colour maps)
    for p, alias in CONVENTIONS.items():
        if p in params and params[p].kind is not params[p].VAR_KEYWORD and (name, p) not in OWN_TYPES:
            assert hints[p] in (alias, typing.Optional[alias]), f"{name}({p}: {hints[p]}), want {alias}"
    if "return_delta" in params:
        assert hints["return"] in (base.WithDelta, base.WithDeltaOrList), name

