"""Guided backpropagation, deconvolution and guided Grad-CAM: against Captum 0.9 where its module hooks
see every ReLU, exact rule references where they cannot (a ReLU module reused, ``F.relu``, in-place
ReLU), warnings for rectifiers the rule leaves alone, and properties (Hypothesis, ``ci`` profile)."""
from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from captum.attr import Deconvolution, GuidedBackprop, GuidedGradCam
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import fattr
from conftest import _init, make_3d, make_mlp, randn

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")

REL = 1e-12
B = 3


def close(actual: Any, expected: Any, rel: float = REL) -> None:
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            close(a, e, rel)
        return
    actual, expected = actual.detach(), expected.detach()
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert expected.abs().max() > 0, "a vacuous comparison"
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * float(expected.abs().max()))


class ReluCNN(nn.Module):
    """``(B, 2, 8, 8) -> (B, 4)`` with three distinct ReLU modules (what Captum's hooks see)."""

    def __init__(self, relu: Any = None) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 6, 3)
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.pool, self.fc1, self.fc2 = nn.MaxPool2d(2), nn.Linear(6 * 2 * 2, 8), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.relu1(self.conv1(x)))
        h = self.relu2(self.conv2(h)).flatten(1)
        return self.fc2(self.relu3(self.fc1(h)))


class Reused(ReluCNN):
    """The same network, with one ReLU module used three times (Captum's hooks see it, but it is the test's
    reference only through its twin), ``F.relu`` and an in-place ReLU."""

    def __init__(self, style: str) -> None:
        super().__init__()
        self.style = style
        self.shared = nn.ReLU(inplace=style == "inplace")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = {"reused": self.shared, "inplace": self.shared, "functional": F.relu, "tensor": torch.relu}[self.style]
        h = self.pool(act(self.conv1(x)))
        h = act(self.conv2(h)).flatten(1)
        return self.fc2(act(self.fc1(h)))


class TwoInputs(nn.Module):
    """``f(x1 (B, 4), x2 (B, 2, 3), scale (B, 1), mode: str) -> (B, 3)`` with ReLU modules."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.out = nn.Linear(4, 5), nn.Linear(6, 5), nn.Linear(5, 3)
        self.r1, self.r2 = nn.ReLU(), nn.ReLU()

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, scale: torch.Tensor, mode: str = "plain") -> torch.Tensor:
        h = self.r1(self.a(x1)) * scale + self.r2(self.b(x2.flatten(1)))
        return self.out(-h if mode == "negate" else h)


def relu_mlp(seed: int = 0) -> nn.Module:
    return _init(nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)), seed)


class Relu3D(nn.Module):
    """``(B, 5) -> (B, 3, 4)``: tuple targets."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.relu, self.out = nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.relu(self.lin(x))).reshape(-1, 3, 4)


CASES = {
    "mlp": lambda: (relu_mlp(), randn(B, 5, seed=1), (), [0, 2, 1]),
    "cnn": lambda: (_init(ReluCNN(), 2), randn(B, 2, 8, 8, seed=3), (), 3),
    "two-input-args": lambda: (_init(TwoInputs(), 4), (randn(B, 4, seed=5), randn(B, 2, 3, seed=6)),
                               (randn(B, 1, seed=7), "negate"), [2, 0, 1]),
    "3d-output": lambda: (_init(Relu3D(), 8), randn(B, 5, seed=9), (), [(1, 2), (0, 3), (2, 0)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("method", ["guided_backprop", "deconvolution"])
def test_matches_captum(method: str, name: str) -> None:
    model, x, args, target = CASES[name]()
    cls = GuidedBackprop if method == "guided_backprop" else Deconvolution
    theirs = cls(model).attribute(x, target=target, additional_forward_args=args if args else None)
    ours = getattr(fattr, method)(model, x, target=target, args=args)
    close(ours, theirs)


@pytest.mark.parametrize("interpolate_mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("layer,to_input", [("conv2", False), ("relu1", False), ("conv2", True)])
def test_guided_grad_cam_matches_captum(layer: str, to_input: bool, interpolate_mode: str) -> None:
    model, x, _, _ = CASES["cnn"]()
    target = [1, 3, 0]
    theirs = GuidedGradCam(model, model.get_submodule(layer)).attribute(
        x, target=target, interpolate_mode=interpolate_mode, attribute_to_layer_input=to_input)
    ours = fattr.guided_grad_cam(model, layer, x, target=target, interpolate_mode=interpolate_mode,
                                 attribute_to_layer_input=to_input)
    close(ours, theirs)


def test_guided_grad_cam_is_guided_backprop_times_the_upsampled_map() -> None:
    model, x, _, _ = CASES["cnn"]()
    cam = fattr.layer_grad_cam(model, "conv2", x, target=2, relu_attributions=True)
    expected = fattr.guided_backprop(model, x, target=2) * fattr.interpolate(cam, (8, 8))
    close(fattr.guided_grad_cam(model, "conv2", x, target=2), expected, 0)


def test_guided_grad_cam_on_inputs_without_spatial_dims_is_scaled_by_the_map() -> None:
    """A (B, D) input and a (B, N) layer: the map is one value per example (Captum returns an empty tensor)."""
    model, x = relu_mlp(), randn(B, 5, seed=1)
    cam = fattr.layer_grad_cam(model, "2", x, target=1, relu_attributions=True)
    assert cam.shape == (B, 1)
    close(fattr.guided_grad_cam(model, "2", x, target=1), fattr.guided_backprop(model, x, target=1) * cam, 0)


def test_guided_grad_cam_refuses_a_map_with_other_spatial_dims() -> None:
    model, x, _, _ = CASES["cnn"]()
    with pytest.raises(ValueError, match="inputs: expected 0 spatial dim"):
        fattr.guided_grad_cam(model, "fc1", x, target=1)


@pytest.mark.parametrize("style", ["reused", "inplace", "functional", "tensor"])
@pytest.mark.parametrize("method", ["guided_backprop", "deconvolution"])
def test_relu_reused_in_place_or_called_as_a_function(method: str, style: str) -> None:
    """However the model calls ReLU, the result is Captum's on the twin with distinct ReLU modules."""
    twin, model = _init(ReluCNN(), 2), _init(Reused(style), 2)  # same parameters, in the same order
    assert all(torch.equal(p, q) for p, q in zip(twin.parameters(), model.parameters(), strict=True))
    x = randn(B, 2, 8, 8, seed=3)
    cls = GuidedBackprop if method == "guided_backprop" else Deconvolution
    theirs = cls(twin).attribute(x, target=[0, 1, 3])
    ours = getattr(fattr, method)(model, x, target=[0, 1, 3])
    close(ours, theirs)


@pytest.mark.parametrize("act,name", [(nn.GELU(), "F.gelu"), (nn.ELU(), "F.elu"), (nn.LeakyReLU(), "F.leaky_relu"),
                                      (nn.SiLU(), "F.silu")])
def test_rectifiers_the_rule_leaves_alone_are_named_in_a_warning(act: nn.Module, name: str) -> None:
    model = _init(nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 8), act, nn.Linear(8, 3)), 0)
    for method in ("guided_backprop", "deconvolution"):
        with pytest.warns(UserWarning, match="leaves alone") as record:
            getattr(fattr, method)(model, randn(B, 5, seed=1), target=0)
        assert name in str(record[0].message) and record[0].filename == __file__


def test_no_warning_for_relu_tanh_sigmoid_softmax_and_pooling() -> None:
    model = _init(nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8),
                                nn.Sigmoid(), nn.Linear(8, 3), nn.Softmax(dim=1)), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fattr.guided_backprop(model, randn(B, 5, seed=1), target=0)
        fattr.guided_grad_cam(_init(ReluCNN(), 2), "conv2", randn(B, 2, 8, 8, seed=3), target=0)


# --------------------------------------------------------------------------- properties

@pytest.mark.filterwarnings("ignore:.*rectifier-like operations")
@given(seed=st.integers(0, 10_000), target=st.integers(0, 2))
def test_without_relu_both_rules_are_the_gradient(seed: int, target: int) -> None:
    model, x = make_mlp(seed=seed), randn(4, 5, seed=seed + 1)
    grad = fattr.saliency(model, x, target=target, abs=False)
    close(fattr.guided_backprop(model, x, target=target), grad, 0)
    close(fattr.deconvolution(model, x, target=target), grad, 0)


@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 100.0))
def test_positive_homogeneity_in_the_output(seed: int, scale: float) -> None:
    """Scaling the output by ``c > 0`` scales both rules' results by ``c`` (the ReLU rules commute with it)."""
    model, x = relu_mlp(seed), randn(4, 5, seed=seed + 1)
    for method in (fattr.guided_backprop, fattr.deconvolution):
        a = method(model, x, target=1)
        b = method(lambda t: scale * model(t), x, target=1)
        torch.testing.assert_close(b, scale * a, rtol=1e-12, atol=1e-15)


@given(seed=st.integers(0, 10_000))
def test_backward_signals_through_relus_are_non_negative(seed: int) -> None:
    """With a non-negative last layer, every signal reaching the first layer's output is non-negative, so
    guided backprop equals the first layer's weights times a non-negative vector (checked against the rule
    by hand: ``W1^T (relu-masked non-negative signal)``)."""
    model = relu_mlp(seed)
    with torch.no_grad():
        model[4].weight.abs_()
    x = randn(4, 5, seed=seed + 1)
    h1 = model[0](x)
    s2 = torch.relu(model[4].weight[1]).expand(4, 6) * (model[2](torch.relu(h1)) > 0)
    s1 = torch.relu(s2 @ model[2].weight) * (h1 > 0)
    expected = s1 @ model[0].weight
    close(fattr.guided_backprop(model, x, target=1), expected.detach(), 1e-12)


@pytest.mark.parametrize("deconvolution", [False, True], ids=["guided", "deconvolution"])
@pytest.mark.parametrize("mode", ["recomputed", "training", "func"])
def test_differentiable_through_the_rule_like_the_closed_form(deconvolution: bool, mode: str) -> None:
    """The rule's result as a function of the parameters (a loss through it): its gradient is the closed
    form's, second derivatives through ``relu(grad)`` included. As called (a recomputing node), in training
    mode (the graph kept at once) and under ``torch.func.grad`` (the rule pass traced by functorch)."""
    model, x, t = relu_mlp(3), randn(4, 5, seed=4), 1
    params = dict(model.named_parameters())

    def closed_form(p: Any) -> torch.Tensor:
        h1 = x @ p["0.weight"].T + p["0.bias"]
        h2 = torch.relu(h1) @ p["2.weight"].T + p["2.bias"]
        s2 = torch.relu(p["4.weight"][t]).expand(4, 6)
        s1 = torch.relu(s2 * (1.0 if deconvolution else (h2 > 0)) @ p["2.weight"])
        return (s1 * (1.0 if deconvolution else (h1 > 0))) @ p["0.weight"]

    def loss(p: Any) -> torch.Tensor:
        method = fattr.deconvolution if deconvolution else fattr.guided_backprop
        f = lambda z: torch.func.functional_call(model, p, (z,))  # noqa: E731
        return (method(f if mode == "func" else model, x, target=t) * x.cos()).square().sum()

    want = torch.func.grad(lambda p: (closed_form(p) * x.cos()).square().sum())(params)
    if mode == "func":
        got = torch.func.grad(loss)(params)
    else:
        model.train(mode == "training")
        got = dict(zip(params, torch.autograd.grad(loss(params), list(params.values()), allow_unused=True,
                                                   materialize_grads=True)))
    assert want["2.weight"].abs().sum() > 0 and want["4.weight"].abs().sum() > 0  # through the rule
    for name in params:
        if want[name].abs().max() > 0:
            close(got[name], want[name], 1e-10)
        else:  # the biases of the last two layers: the rules' results do not depend on them
            assert torch.equal(got[name], want[name])


def test_3d_model_tuple_target_and_no_grad() -> None:
    model, x = _init(Relu3D(), 8), randn(B, 5, seed=9)
    with torch.no_grad():
        a = fattr.guided_backprop(model, x, target=(1, 2))
    close(a, fattr.guided_backprop(model, x, target=(1, 2)), 0)
    assert make_3d is not None


@given(seed=st.integers(0, 10_000), i=st.integers(0, 4), j=st.integers(0, 4))
def test_symmetric_features_get_equal_attributions(seed: int, i: int, j: int) -> None:
    """``f`` symmetric in features i and j, with ``x_i = x_j``: both rules give ``attr_i = attr_j`` exactly."""
    if i == j:
        return
    net = relu_mlp(seed)
    rest = [k for k in range(5) if k not in (i, j)]

    def f(z: torch.Tensor) -> torch.Tensor:
        sym = torch.stack([z[:, i] + z[:, j], torch.relu(z[:, i]) * torch.relu(z[:, j])], dim=1)
        return net(torch.cat([sym, z[:, rest]], dim=1))

    x = randn(3, 5, seed=seed + 1)
    x[:, j] = x[:, i]
    for method in (fattr.guided_backprop, fattr.deconvolution):
        attr = method(f, x, target=1)
        assert torch.equal(attr[:, i], attr[:, j])

