"""``torch.compile`` of every registered method matches eager, without recompiles (issue #16).

Each test compiles small models (a few seconds per compile on CPU). Every deterministic registered
method compiles with ``fullgraph=True``; masked perturbation calls (``n_features``) and guided IG are in
their own files.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fattr
from fattr.demo.model import make_model
from fattr.demo.prior import border_mask, make_penalty
from fattr.demo.train import make_step

counters = torch._dynamo.utils.counters

SPECS = {s.name: s for s in fattr.methods()}
# guided IG compiles in tests/test_compile_guided_ig.py (its compile time grows with n_steps: ~20 s a step)
DETERMINISTIC = sorted(s.name for s in fattr.methods() if not s.stochastic and s.inputs == "features"
                       and s.name != "guided_integrated_gradients")
# lime and kernel_shap (the same engine as feature_permutation's draws) take ~30 s each to compile: left out
STOCHASTIC = sorted(s.name for s in fattr.methods() if s.stochastic and s.inputs == "features"
                    and s.name not in ("lime", "kernel_shap"))


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 3, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(3 * 2 * 2, 3)).eval()


MODELS = {"mlp": (_mlp, (4, 6), "3"), "cnn": (_cnn, (4, 2, 4, 4), "4")}


def _call(spec, model, layer, x, dist, generator=None):
    """The registry's generic call, with fewer steps and samples (compile time grows with the graph)."""
    options = {key: 4 for key in ("n_steps", "n_samples") if key in spec.options}
    if spec.name == "occlusion" and x.dim() == 4:
        options["sliding_window_shapes"] = (1, 2, 2)
    baselines = dist if spec.baselines == "distribution" else 0.1 if spec.baselines == "optional" else None
    return spec.call(model, x, layer=layer, baselines=baselines, target=torch.tensor([0, 1, 2, 0]),
                     generator=generator, **options)


def _case(name, model_name):
    make, shape, layer_name = MODELS[model_name]
    model = make()
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(shape, generator=g) for _ in range(2)]
    dist = torch.randn((3,) + shape[1:], generator=g)
    return SPECS[name], model, model.get_submodule(layer_name), xs, dist


def _params(names):
    out = []
    for name in names:
        model = "cnn" if SPECS[name].images or name in ("layer_grad_cam", "guided_grad_cam") else "mlp"
        out.append(pytest.param(name, model, id=f"{name}-{model}"))
    return out


def _fresh():
    torch._dynamo.reset()
    counters.clear()


@pytest.mark.parametrize("name,model_name", _params(DETERMINISTIC))
def test_fullgraph_matches_eager_without_recompiles(name, model_name):
    """As called (grad mode on, parameters requiring grad) and under no_grad: one graph per grad mode,
    whatever the input values."""
    _fresh()
    spec, model, layer, xs, dist = _case(name, model_name)
    fn = lambda x: _call(spec, model, layer, x, dist)  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True)
    for x in xs:
        torch.testing.assert_close(compiled(x), fn(x), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        for x in xs:
            torch.testing.assert_close(compiled(x), fn(x), rtol=1e-4, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == 2  # one per grad mode, none per call


@pytest.mark.parametrize("handle", [False, True], ids=["module", "split"])
def test_layer_method_compiles_once_per_grad_mode_with_a_module_or_a_split(handle):
    """``layer=`` a module (the split is built, and its plan found, when Dynamo traces) or a prebuilt
    ``fattr.split`` handle: 4 calls (2 grad modes x 2 inputs), with eager calls in between, make 2 graphs."""
    _fresh()
    spec, model, layer, xs, dist = _case("layer_integrated_gradients", "mlp")
    if handle:
        layer = fattr.split(model, layer)
    fn = lambda x: _call(spec, model, layer, x, dist)  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True)
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            for x in xs:
                got = compiled(x)
                torch.testing.assert_close(got, fn(x), rtol=1e-4, atol=1e-5)
                assert got.requires_grad == grad  # the parameters require grad: differentiable as called
    assert counters["stats"]["unique_graphs"] == 2
    if handle:
        assert layer.captured  # the handle ran its torch.fx plan


@pytest.mark.parametrize("name", ["saliency", "integrated_gradients"])
def test_fullgraph_on_a_cnn_with_max_pooling(name):
    _fresh()
    spec, model, layer, xs, dist = _case(name, "cnn")
    fn = lambda x: _call(spec, model, layer, x, dist)  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True)
    out = compiled(xs[0])
    torch.testing.assert_close(out, fn(xs[0]), rtol=1e-4, atol=1e-5)
    assert out.requires_grad  # differentiable as called, like eager


@pytest.mark.parametrize("name", ["deeplift", "layer_deeplift"])
def test_no_recompile_with_graph_breaks(name):
    """Without fullgraph (graph breaks allowed), a second call with the same shapes compiles nothing."""
    _fresh()
    spec, model, layer, xs, dist = _case(name, "mlp")
    fn = lambda x: _call(spec, model, layer, x, dist)  # noqa: E731
    compiled = torch.compile(fn)
    torch.testing.assert_close(compiled(xs[0]), fn(xs[0]), rtol=1e-4, atol=1e-5)
    graphs = counters["stats"]["unique_graphs"]
    torch.testing.assert_close(compiled(xs[1]), fn(xs[1]), rtol=1e-4, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.parametrize("name", ["deeplift", "deeplift_shap", "guided_backprop", "deconvolution"])
def test_compiled_rule_methods_differentiate_like_eager(name):
    """The rules differentiated with respect to the parameters and inputs: compiled as eager. For the ReLU
    rules these are derivatives through the rule's backward (Dynamo traces a backward under no_grad)."""
    _fresh()
    spec, model, layer, xs, dist = _case(name, "cnn")
    x = xs[0].clone().requires_grad_()
    fn = lambda x: _call(spec, model, layer, x, dist)  # noqa: E731
    sources = [x] + list(model.parameters())
    want = torch.autograd.grad(fn(x).square().sum(), sources, allow_unused=True, materialize_grads=True)
    got = torch.autograd.grad(torch.compile(fn, fullgraph=True)(x).square().sum(), sources, allow_unused=True,
                              materialize_grads=True)
    assert any(g.abs().sum() > 0 for g in want[1:])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("owner", ["training", "function"])
def test_compiled_guided_backprop_keeping_its_graph_differentiates_like_eager(owner):
    """A model in training mode, or a plain function of one, keeps the graph at once (no recomputing node):
    the parameters' gradients of a loss through guided backprop, second derivatives through the ReLU rule,
    come from the compiled training graph and match eager's."""
    _fresh()
    spec, model, layer, xs, dist = _case("guided_backprop", "cnn")
    f = model.train() if owner == "training" else (lambda x: model(x))  # noqa: E731 (no BatchNorm: same values)
    fn = lambda x: _call(spec, f, layer, x, dist)  # noqa: E731
    params = list(model.parameters())
    want = torch.autograd.grad(fn(xs[0]).square().sum(), params, allow_unused=True, materialize_grads=True)
    got = torch.autograd.grad(torch.compile(fn, fullgraph=True)(xs[0]).square().sum(), params, allow_unused=True,
                              materialize_grads=True)
    assert want[2].abs().sum() > 0 and want[4].abs().sum() > 0  # weights after a ReLU: through the rule
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_guided_backprop_compiles_a_model_with_rectifiers_the_rule_leaves_alone():
    """The warning naming them (Dynamo cannot trace ``warnings.warn``) is given as Dynamo traces the call."""
    _fresh()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(4, 6)
    fn = lambda x: fattr.guided_backprop(model, x, target=torch.tensor([0, 1, 2, 0]))  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True)
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            with pytest.warns(UserWarning, match="leaves alone: F.gelu"):
                got = compiled(x)
            with pytest.warns(UserWarning, match="leaves alone: F.gelu"):
                torch.testing.assert_close(got, fn(x), rtol=1e-4, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == 2


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_methods_compile_and_match_eager_with_the_same_seed(name):
    """Dynamo cannot trace a torch.Generator: the graph may break at the draws, nowhere else needed."""
    _fresh()
    spec, model, layer, xs, dist = _case(name, "mlp")
    fn = lambda x, seed: _call(spec, model, layer, x, dist, torch.Generator().manual_seed(seed))  # noqa: E731
    compiled = torch.compile(fn)
    torch.testing.assert_close(compiled(xs[0], 3), fn(xs[0], 3), rtol=1e-4, atol=1e-5)


def test_compiled_training_step_matches_eager():
    """The demo's training step (IG prior in the loss, backward, optimizer step), torch.compile of the
    whole step: the same loss and, with SGD at lr=1, the same gradients as eager. Dynamo breaks the graph
    only where torch does (zero_grad, backward, the optimizer's own breaks): the loss is one graph."""
    _fresh()
    penalty = make_penalty(border_mask(8), weight=1.0, n_steps=2)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 1, 8, 8, generator=g), torch.tensor([0, 3, 5, 9])
    models = [make_model(0), make_model(0)]  # training mode: the demo trains with the prior
    before = [p.detach().clone() for p in models[0].parameters()]
    eager, compiled = (make_step(m, torch.optim.SGD(m.parameters(), lr=1.0), penalty) for m in models)
    want, got = eager(x, y), torch.compile(compiled)(x, y)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert float(want[1]) > 0  # the prior is not zero
    for a, b, p in zip(models[1].parameters(), models[0].parameters(), before, strict=True):
        assert not torch.equal(b, p)  # every parameter moved: its gradient is not zero
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    breaks = list(counters["graph_break"])
    assert not [b for b in breaks if not any(k in b for k in ("zero_grad", "backward", "graph_break()"))], breaks


class _Scaled(nn.Module):
    """A module reading a tensor attribute that requires grad but is not a parameter."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.scale = torch.tensor(1.5, requires_grad=True)

    def forward(self, x):
        return self.body(x) * self.scale


@pytest.mark.parametrize("name,scaled", [("saliency", False), ("integrated_gradients", True), ("occlusion", False),
                                         ("layer_integrated_gradients", False)],
                         ids=["parameters", "tensor_attribute", "perturbation", "layer"])
def test_compiled_result_differentiates_like_eager(name, scaled):
    """As called, the compiled result comes from an inference graph and is differentiated by recomputation
    (parameters and inputs); a tensor requiring grad that is not a parameter falls back to the graph."""
    _fresh()
    spec, model, layer, xs, dist = _case(name, "cnn")
    model = _Scaled(model) if scaled else model
    x = xs[0].clone().requires_grad_()
    fn = lambda x: _call(spec, model, layer, x, dist)  # noqa: E731
    sources = [x] + [p for p in model.parameters()] + ([model.scale] if scaled else [])
    want = torch.autograd.grad(fn(x).square().sum(), sources, allow_unused=True, materialize_grads=True)
    got = torch.autograd.grad(torch.compile(fn, fullgraph=True)(x).square().sum(), sources, allow_unused=True,
                              materialize_grads=True)
    assert any(g.abs().sum() > 0 for g in want[1:])  # the parameters' gradients are not all zero
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


class _Flagged(nn.Module):
    """A forward whose traced code depends on Python attributes (a flag and a scale)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)
        self.skip, self.scale = True, 2.0

    def forward(self, x):
        h = self.a(x)
        return self.b(h) + h[:, :2] * self.scale if self.skip else self.b(h)


def test_compiled_layer_method_follows_the_attributes_its_plan_was_traced_with():
    """The plan is found when Dynamo traces; the compiled code guards on the traced modules' scalar
    attributes, so changing one retraces (with a new plan) instead of returning a stale result."""
    _fresh()
    net = _Flagged().eval()
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    fn = lambda x: fattr.layer_integrated_gradients(net, net.a, x, target=0, n_steps=4)  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True)
    for skip, scale in ((True, 2.0), (False, 2.0), (True, 3.0)):
        net.skip, net.scale = skip, scale
        torch.testing.assert_close(compiled(x), fn(x), rtol=1e-4, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == 3
