"""Layer methods: closed forms, completeness, the fallback path, composition, errors.

Closed forms use a model whose tail after the layer is linear
(``out = W @ act + c``): then the layer gradient is ``W[target]`` everywhere, so
layer IG is ``W[t] * (act(x) - act(b))`` for any quadrature, feature ablation is
``W[t] * (act - baseline)`` per neuron, and conductance with the trapezoid
nodes telescopes to the same value.
"""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

import fattr
from conftest import _init, randn
from test_layer_captum import ResNet, TupleModel, UntraceableResNet, make_resnet

OURS = {"layer_activation", "layer_gradient_x_activation", "layer_grad_cam", "internal_influence", "layer_conductance",
        "layer_integrated_gradients", "layer_gradient_shap", "layer_feature_ablation"}
LAYER_SPECS = [s for s in fattr.methods() if s.name in OURS]


class LinearTail(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Linear(4, 6)
        self.layer = nn.Tanh()
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.layer(self.pre(x)))


def _leaves(out: Any):
    return [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def _call(spec, model, layer, x, dist, **extra):
    kwargs = dict(spec.options)
    if spec.targeted:
        kwargs["target"] = [0, 2, 1]
    if spec.stochastic:
        kwargs["generator"] = torch.Generator().manual_seed(3)
    kwargs.update(extra)
    positional = [model, layer, x]
    if spec.baselines == "optional":
        positional.append(dist[:1])
    elif spec.baselines == "distribution":
        positional.append(dist)
    return spec.fn(*positional, **kwargs)


# --------------------------------------------------------------------------- closed forms

@pytest.fixture
def linear_tail():
    model = _init(LinearTail(), seed=3)
    return model, randn(3, 4, seed=1), randn(3, 4, seed=2)


def test_closed_forms_with_a_linear_tail(linear_tail) -> None:
    model, x, b = linear_tail
    target = [0, 2, 1]
    w = model.out.weight[target]                        # (3, 6): the layer gradient of each example
    act = lambda v: torch.tanh(model.pre(v))            # noqa: E731
    for method in ("gausslegendre", "riemann_left", "riemann_trapezoid"):
        ig = fattr.layer_integrated_gradients(model, "layer", x, b, 3, method, target=target)
        torch.testing.assert_close(ig, w * (act(x) - act(b)), rtol=1e-13, atol=1e-13)
        ii = fattr.internal_influence(model, "layer", x, b, 3, method, target=target)
        torch.testing.assert_close(ii, w, rtol=1e-13, atol=1e-13)
    cond = fattr.layer_conductance(model, "layer", x, b, 4, "riemann_trapezoid", target=target)
    torch.testing.assert_close(cond, w * (act(x) - act(b)), rtol=1e-13, atol=1e-13)
    gxa = fattr.layer_gradient_x_activation(model, "layer", x, target=target)
    torch.testing.assert_close(gxa, w * act(x), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(fattr.layer_gradient_x_activation(model, "layer", x, target=target,
                                                                 multiply_by_inputs=False), w)
    ablation = fattr.layer_feature_ablation(model, "layer", x, 0.3, target=target, perturbations_per_eval=4)
    torch.testing.assert_close(ablation, w * (act(x) - 0.3), rtol=1e-13, atol=1e-13)
    # on the layer's input (the pre-activation), the gradient goes through tanh
    pre = model.pre(x)
    gxi = fattr.layer_gradient_x_activation(model, "layer", x, target=target, attribute_to_layer_input=True)
    torch.testing.assert_close(gxi, w * (1 - torch.tanh(pre) ** 2) * pre, rtol=1e-13, atol=1e-13)


def test_grad_cam_closed_form() -> None:
    conv = nn.Conv2d(2, 3, 3)
    model = _init(nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4)), seed=4)
    x = randn(2, 2, 6, 6, seed=5)
    act = model[0](x)                                   # (2, 3, 4, 4)
    weights = model[3].weight[1] / 16                   # mean over the 4x4 map of d out / d act
    expected = (weights.reshape(1, 3, 1, 1) * act).sum(1, keepdim=True)
    cam = fattr.layer_grad_cam(model, "0", x, target=1)
    torch.testing.assert_close(cam, expected, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(fattr.layer_grad_cam(model, "0", x, target=1, relu_attributions=True),
                               expected.clamp_min(0))
    up = fattr.interpolate(cam, 8)
    assert up.shape == (2, 1, 8, 8)
    torch.testing.assert_close(up[:, :, ::2, ::2], cam)


# --------------------------------------------------------------------------- completeness

@pytest.mark.parametrize("layer", ["stem", "body.0", "body.1.bn2", "fc"])
def test_layer_integrated_gradients_completeness(layer: str) -> None:
    """Where no skip connection bypasses the layer, sum(attr) == f(x) - f(b) up to quadrature error."""
    model, x, b = make_resnet(), randn(3, 2, 5, 5, seed=1), randn(3, 2, 5, 5, seed=2)
    if layer == "body.1.bn2":  # inside the block the skip is held at x's value: complete w.r.t. the tail only
        head, tail = fattr.split(model, layer)
        (ax, rx), (ab, _) = head(x), head(b)
        attr = fattr.layer_integrated_gradients(model, layer, x, b, 40, target=1)
        change = tail(ax, rx)[:, 1] - tail(ab, rx)[:, 1]
        torch.testing.assert_close(attr.flatten(1).sum(1), change, rtol=0, atol=1e-10)
        return
    attr, delta = fattr.layer_integrated_gradients(model, layer, x, b, 128, target=1, return_delta=True)
    assert delta.abs().max() < 1e-10  # Gauss-Legendre on a smooth tail: measured <= 1e-12 at 128 nodes
    f = model(x)[:, 1] - model(b)[:, 1]
    torch.testing.assert_close(attr.flatten(1).sum(1) - f, delta, rtol=0, atol=1e-12)


def test_layer_conductance_completeness_converges() -> None:
    """Conductance over all neurons of a bottleneck layer tends to f(x) - f(b) as the nodes refine.

    The conductance sum is a left Riemann-Stieltjes sum: its error falls like 1/n
    (measured: 2.2e-2, 6.1e-3, 1.5e-3 at 25, 100, 400 steps, for changes of ~0.14).
    """
    model, x, b = make_resnet(), randn(3, 2, 5, 5, seed=1), randn(3, 2, 5, 5, seed=2)
    errors = []
    for n in (25, 100, 400):
        _, delta = fattr.layer_conductance(model, "body.0", x, b, n, "riemann_trapezoid", target=2,
                                           return_delta=True)
        errors.append(float(delta.detach().abs().max()))
    assert errors[1] < errors[0] / 3 and errors[2] < errors[1] / 3
    change = float((model(x)[:, 2] - model(b)[:, 2]).detach().abs().max())
    assert errors[2] < 0.02 * change
    # and its total agrees with layer IG's (complete here) to the same accuracy
    ig = fattr.layer_integrated_gradients(model, "body.0", x, b, 50, target=2)
    cond = fattr.layer_conductance(model, "body.0", x, b, 400, "riemann_trapezoid", target=2)
    assert (ig.flatten(1).sum(1) - cond.flatten(1).sum(1)).abs().max() < 0.02 * change


# --------------------------------------------------------------------------- the fallback path agrees with the graph

@pytest.mark.parametrize("spec", LAYER_SPECS, ids=lambda s: s.name)
def test_fallback_path_agrees_with_the_graph_path(spec) -> None:
    traced, untraced = make_resnet(ResNet), make_resnet(UntraceableResNet)
    x, dist = randn(3, 2, 5, 5, seed=1), randn(4, 2, 5, 5, seed=2)
    assert fattr.split(traced, "body.1.conv2")[0](x)[1][-1].traced
    assert not fattr.split(untraced, "body.1.conv2")[0](x)[1][-1].traced
    for to_input in (False, True):
        a = _call(spec, traced, "body.1.conv2", x, dist, attribute_to_layer_input=to_input)
        b = _call(spec, untraced, "body.1.conv2", x, dist, attribute_to_layer_input=to_input)
        for s, t in zip(_leaves(a), _leaves(b)):
            torch.testing.assert_close(s, t, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [ResNet, UntraceableResNet])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_differentiable_with_respect_to_parameters_on_both_sides(cls: type, training: bool) -> None:
    """Autograd through layer IG agrees with central finite differences, before and after the layer
    (eval mode: head and tail recomputed on demand; training mode: graphs kept)."""
    model, x = make_resnet(cls).train(training), randn(2, 2, 5, 5, seed=1)

    def loss(m):
        return fattr.layer_integrated_gradients(m, "body.1.conv2", x, 0.1, 8, target=[0, 2]).pow(2).sum()

    for name, index in (("stem.weight", (1, 0, 1, 2)), ("body.1.bn2.weight", (2,)), ("fc.weight", (1, 3))):
        p = dict(model.named_parameters())[name]
        (g,) = torch.autograd.grad(loss(model), p)
        shifted = []
        for sign in (1, -1):
            m = copy.deepcopy(model)
            with torch.no_grad():
                dict(m.named_parameters())[name][index] += sign * 1e-6
            shifted.append(loss(m).detach())
        torch.testing.assert_close(g[index], (shifted[0] - shifted[1]) / 2e-6, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("spec", [s for s in LAYER_SPECS if s.name != "layer_activation"], ids=lambda s: s.name)
def test_fallback_path_is_pure_with_batchnorm_in_training_mode(spec) -> None:
    model = make_resnet(UntraceableResNet).train()
    x, dist = randn(3, 2, 5, 5, seed=1), randn(4, 2, 5, 5, seed=2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    keys = [sorted(vars(m)) for m in model.modules()]
    _call(spec, model, "body.1.conv2", x, dist)
    assert keys == [sorted(vars(m)) for m in model.modules()]
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert all(m.training for m in model.modules())


# --------------------------------------------------------------------------- composition, dtypes, options

def test_noise_tunnel_wraps_a_layer_method() -> None:
    model, x = make_resnet(), randn(3, 2, 5, 5, seed=1)
    smooth = fattr.noise_tunnel(fattr.layer_integrated_gradients, n_samples=4, stdevs=0.1)
    a = smooth(model, "body.1.conv2", x, n_steps=5, target=1, generator=torch.Generator().manual_seed(0))
    b = smooth(model, "body.1.conv2", x, n_steps=5, target=1, generator=torch.Generator().manual_seed(0))
    assert a.shape == (3, 4, 5, 5) and torch.equal(a, b)
    plain = fattr.layer_integrated_gradients(model, "body.1.conv2", x, n_steps=5, target=1)
    assert not torch.allclose(a, plain)


@pytest.mark.parametrize("spec", LAYER_SPECS, ids=lambda s: s.name)
def test_float32_in_float32_out(spec) -> None:
    model = make_resnet().float()
    x, dist = randn(3, 2, 5, 5, seed=1).float(), randn(4, 2, 5, 5, seed=2).float()
    for t in _leaves(_call(spec, model, "body.1", x, dist)):
        assert t.dtype == torch.float32 and torch.isfinite(t).all()


def test_tuple_activations_keep_their_structure() -> None:
    model, x = _init(TupleModel(), seed=8), randn(3, 4, seed=7)
    for spec in LAYER_SPECS:
        out = _call(spec, model, "pair", x, randn(4, 4, seed=2))
        shape = (3, 1) if spec.name == "layer_grad_cam" else (3, 5)  # Grad-CAM sums over dim 1
        assert isinstance(out, tuple) and len(out) == 2 and all(t.shape == shape for t in out), spec.name
    cond = fattr.layer_conductance(model, "combine", x, n_steps=4, target=1, attribute_to_layer_input=True)
    assert isinstance(cond, tuple) and len(cond) == 2


def test_gradient_shap_delta_layout_and_multiply() -> None:
    model, x, dist = make_resnet(), randn(3, 2, 5, 5, seed=1), randn(4, 2, 5, 5, seed=2)
    attr, delta = fattr.layer_gradient_shap(model, "body.0", x, dist, n_samples=5, target=1, return_delta=True,
                                            generator=torch.Generator().manual_seed(1))
    assert attr.shape == (3, 4, 5, 5) and delta.shape == (15,)
    local = fattr.layer_gradient_shap(model, "body.0", x, dist, n_samples=5, target=1, multiply_by_inputs=False,
                                      generator=torch.Generator().manual_seed(1))
    assert local.shape == attr.shape and not torch.allclose(local, attr)


def test_feature_ablation_per_example_target_with_batched_perturbations() -> None:
    model, x = make_resnet(), randn(3, 2, 5, 5, seed=1)
    mask = torch.arange(4).reshape(1, 4, 1, 1)
    one = fattr.layer_feature_ablation(model, "body.1.conv2", x, target=[0, 2, 1], layer_mask=mask)
    many = fattr.layer_feature_ablation(model, "body.1.conv2", x, target=[0, 2, 1], layer_mask=mask,
                                        perturbations_per_eval=3)
    torch.testing.assert_close(one, many, rtol=1e-12, atol=1e-12)
    per_example = torch.stack([fattr.layer_feature_ablation(model, "body.1.conv2", x[i:i + 1], target=t,
                                                            layer_mask=mask)[0] for i, t in enumerate([0, 2, 1])])
    torch.testing.assert_close(one, per_example, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- errors

class Embedder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(ids).mean(1))


class TimeMajor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.flip = nn.Identity()
        self.out = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.flip(x.transpose(0, 1)).mean(0))


def test_errors_are_clear() -> None:
    model, x = make_resnet(), randn(3, 2, 5, 5, seed=1)
    ids = torch.randint(0, 10, (3, 5))
    emb = Embedder()
    with pytest.raises(TypeError, match="layer: expected a layer whose input is floating point"):
        fattr.layer_integrated_gradients(emb, "embed", ids, attribute_to_layer_input=True, target=0)
    assert fattr.layer_integrated_gradients(emb, "embed", ids, target=0).shape == (3, 5, 4)  # on its output
    with pytest.raises(ValueError, match="layer: expected a layer whose output has the 4 examples along dim 0"):
        fattr.layer_gradient_x_activation(TimeMajor(), "flip", torch.randn(4, 7, 3), target=0)
    with pytest.raises(TypeError, match="layer: expected one module or dotted name"):
        fattr.layer_conductance(model, ["stem", "fc"], x, target=0)
    with pytest.raises(ValueError, match="layer_baselines: expected a tensor broadcastable"):
        fattr.layer_feature_ablation(model, "fc", x, torch.zeros(2, 5), target=0)
    with pytest.raises(TypeError, match="layer_mask: expected an integer tensor"):
        fattr.layer_feature_ablation(model, "fc", x, target=0, layer_mask=torch.zeros(1, 3))
    with pytest.raises(ValueError, match="layer_mask: expected group ids broadcastable"):
        fattr.layer_feature_ablation(model, "fc", x, target=0, layer_mask=torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="layer_baselines: expected a tuple of 2 entries"):
        fattr.layer_feature_ablation(_init(TupleModel(), seed=8), "pair", randn(3, 4, seed=7), (0.0, 0.0, 0.0),
                                     target=0)
    with pytest.raises(ValueError, match="perturbations_per_eval: expected a positive int"):
        fattr.layer_feature_ablation(model, "fc", x, target=0, perturbations_per_eval=0)
    with pytest.raises(ValueError, match="target: expected"):
        fattr.layer_integrated_gradients(model, "fc", x, target=7)
    with pytest.raises(ValueError, match=r"layer\[1\]: expected the dotted name"):
        fattr.gradient_x_input(model, x, target=0, layer=["fc", "nope"])
    with pytest.raises(ValueError, match="layer: expected None, a layer, or a non-empty list"):
        fattr.gradient_x_input(model, x, target=0, layer=[])
    with pytest.raises(ValueError, match="size: expected 2 ints"):
        fattr.interpolate(torch.zeros(1, 1, 2, 2), (3, 3, 3))
    with pytest.raises(ValueError, match="mode: expected a mode for 4-dim tensors"):
        fattr.interpolate(torch.zeros(1, 1, 2, 2), 4, mode="trilinear")
    with pytest.raises(ValueError, match="mode: expected one of"):
        fattr.interpolate(torch.zeros(1, 1, 2, 2), 4, mode="cubic")
    with pytest.raises(ValueError, match="layer_attributions: expected a tensor with 3, 4 or 5 dims"):
        fattr.interpolate(torch.zeros(2, 3), 4)
