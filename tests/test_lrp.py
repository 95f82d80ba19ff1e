"""LRP and layer LRP against Captum 0.9 (the oracle), closed forms from Captum's own tests, conservation
(Hypothesis), the rules' refusals, and what fattr does beyond Captum (reused modules, no hooks, rules left
on the modules).

Captum's LRP deletes the modules' ``rule`` attributes after each call, so fattr runs first wherever both read
them. Captum refuses ``nn.Flatten``: its models here flatten in ``forward``. float64 throughout: fattr and
Captum compute the same operations in another order, so they agree to ~1e-15 relative (``TOL``).
"""
from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import fattr
from fattr.captum import LRP as FattrLRP

captum_attr = pytest.importorskip("captum.attr")
lrp_rules = pytest.importorskip("captum.attr._utils.lrp_rules")
TOL = dict(rtol=1e-10, atol=1e-12)


def mlp(seed: int = 0, bias: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8, bias=bias), nn.ReLU(), nn.Linear(8, 8, bias=bias), nn.ReLU(), nn.Dropout(),
                         nn.Linear(8, 8, bias=bias), nn.Linear(8, 3, bias=bias)).double().eval()


class CNN(nn.Module):
    """Conv, batch norm, ReLU, max, average and adaptive average pooling, flattened in ``forward``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.bn, self.relu1 = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        self.pool1, self.conv2, self.relu2 = nn.MaxPool2d(2), nn.Conv2d(4, 4, 3), nn.ReLU()
        self.pool2, self.pool3, self.fc = nn.AvgPool2d(1), nn.AdaptiveAvgPool2d(2), nn.Linear(16, 3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1), self.bn.running_var.uniform_(0.5, 2), self.bn.weight.uniform_(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool1(self.relu1(self.bn(self.conv1(x))))
        return self.fc(self.pool3(self.pool2(self.relu2(self.conv2(h)))).flatten(1))


def x_mlp() -> torch.Tensor:
    return torch.randn(4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def x_cnn() -> torch.Tensor:
    return torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def captum_lrp(model, x, **kwargs):
    return captum_attr.LRP(model).attribute(x, **kwargs)


# ------------------------------------------------------------------ against Captum

@pytest.mark.parametrize("case", ["mlp", "cnn"])
def test_default_rules_match_captum_with_the_delta(case):
    model, x = (mlp(), x_mlp()) if case == "mlp" else (CNN().double().eval(), x_cnn())
    target = [0, 2, 1, 0][: x.shape[0]]
    ours, delta = fattr.lrp(model, x, target=target, return_delta=True)
    theirs, their_delta = captum_lrp(model, x, target=target, return_convergence_delta=True)
    torch.testing.assert_close(ours, theirs.detach(), **TOL)
    torch.testing.assert_close(delta, their_delta.detach(), **TOL)
    assert delta.abs().max() > 1e-3  # biases absorb relevance: the delta is not trivially zero


RULES = {
    "epsilon": lambda: (fattr.EpsilonRule(epsilon=0.3), lrp_rules.EpsilonRule(epsilon=0.3)),
    "gamma": lambda: (fattr.GammaRule(gamma=0.5), lrp_rules.GammaRule(gamma=0.5)),
    "gamma-no-bias": lambda: (fattr.GammaRule(gamma=1.0, set_bias_to_zero=True),
                              lrp_rules.GammaRule(gamma=1.0, set_bias_to_zero=True)),
    "alpha1beta0": lambda: (fattr.Alpha1Beta0Rule(), lrp_rules.Alpha1_Beta0_Rule()),
    "alpha1beta0-no-bias": lambda: (fattr.Alpha1Beta0Rule(set_bias_to_zero=True),
                                    lrp_rules.Alpha1_Beta0_Rule(set_bias_to_zero=True)),
    "identity": lambda: (fattr.IdentityRule(), lrp_rules.IdentityRule()),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_matches_captum_given_by_name_by_module_and_as_captums_attribute(rule):
    """On ``5`` (Linear 8 -> 8 after a Linear: Captum's identity rule after a ReLU hands on a plain gradient,
    see test_identity_rule_after_a_relu_passes_relevance_unchanged) and, for the z-rules, on ``0`` and ``2``."""
    ours_rule, their_rule = RULES[rule]()
    names = ["5"] if rule == "identity" else ["0", "2", "5"]
    model, x = mlp(), x_mlp()
    by_name = fattr.lrp(model, x, target=1, rules={n: ours_rule for n in names})
    by_module = fattr.lrp(model, x, target=1, rules={model.get_submodule(n): ours_rule for n in names})
    for n in names:
        model.get_submodule(n).rule = their_rule
    as_attribute = fattr.lrp(model, x, target=1)  # Captum's rule objects, read where Captum's user set them
    theirs = captum_lrp(model, x, target=1).detach()
    for ours in (by_name, by_module, as_attribute):
        torch.testing.assert_close(ours, theirs, **TOL)
    assert not torch.allclose(by_name, fattr.lrp(mlp(), x, target=1))  # the rule changed something


def test_rules_argument_overrides_a_rule_attribute():
    model, x = mlp(), x_mlp()
    model[0].rule = lrp_rules.GammaRule(gamma=2.0)
    ours = fattr.lrp(model, x, target=0, rules={"0": fattr.EpsilonRule()})
    torch.testing.assert_close(ours, fattr.lrp(mlp(), x, target=0), rtol=0, atol=0)
    assert isinstance(model[0].rule, lrp_rules.GammaRule)  # left where the user put it


def test_a_rule_on_a_module_without_parameters_matches_captum():
    model, x = CNN().double().eval(), x_cnn()
    ours = fattr.lrp(model, x, target=2, rules={"pool1": fattr.EpsilonRule(0.5), "pool3": fattr.EpsilonRule(0.2)})
    model.pool1.rule, model.pool3.rule = lrp_rules.EpsilonRule(0.5), lrp_rules.EpsilonRule(0.2)
    torch.testing.assert_close(ours, captum_lrp(model, x, target=2).detach(), **TOL)


def test_batch_norm_in_training_mode_matches_captum():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)).double().train()
    x = x_mlp()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ours = fattr.lrp(model, x, target=1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # running statistics untouched
    model[1].rule = lrp_rules.EpsilonRule()  # (Captum has no default for BatchNorm1d)
    torch.testing.assert_close(ours, captum_lrp(model, x, target=1).detach(), **TOL)


@pytest.mark.parametrize("to_input", [False, True], ids=["output", "input"])
@pytest.mark.parametrize("layer", ["conv2", "bn", "pool1", "fc"])
def test_layer_lrp_matches_captum(layer, to_input):
    model, x = CNN().double().eval(), x_cnn()
    ours, delta = fattr.layer_lrp(model, layer, x, target=[2, 0, 1], return_delta=True,
                                  attribute_to_layer_input=to_input)
    theirs, their_delta = captum_attr.LayerLRP(model, model.get_submodule(layer)).attribute(
        x, target=[2, 0, 1], return_convergence_delta=True, attribute_to_layer_input=to_input)
    torch.testing.assert_close(ours, theirs.detach(), **TOL)
    torch.testing.assert_close(delta, their_delta.detach(), **TOL)


def test_layer_lrp_at_the_output_layer_is_the_target_output():
    model, x = mlp(), x_mlp()
    relevance = fattr.layer_lrp(model, model[6], x, target=1)
    expected = torch.zeros(4, 3, dtype=torch.float64)
    expected[:, 1] = model(x)[:, 1].detach()
    torch.testing.assert_close(relevance.detach(), expected, **TOL)


def test_captum_classes_are_a_drop_in():
    model, x = mlp(), x_mlp()
    model[2].rule = lrp_rules.GammaRule()
    out = io.StringIO()
    with redirect_stdout(out):
        ours, delta = FattrLRP(model).attribute(x, 1, None, True, verbose=True)
    assert "Applied" in out.getvalue() and "GammaRule" in out.getvalue()
    assert hasattr(model[2], "rule") and not hasattr(model[0], "rule")  # nothing attached, nothing removed
    theirs, their_delta = captum_lrp(model, x, target=1, return_convergence_delta=True)
    torch.testing.assert_close(ours, theirs.detach(), **TOL)
    torch.testing.assert_close(delta, their_delta.detach(), **TOL)
    torch.testing.assert_close(FattrLRP(model).compute_convergence_delta(ours, model(x)[:, 1]), delta)
    layer = fattr.captum.LayerLRP(model, model[2]).attribute(x, target=0)
    torch.testing.assert_close(layer, captum_attr.LayerLRP(model, model[2]).attribute(x, target=0).detach(), **TOL)


# ------------------------------------------------------------------ closed forms (Captum's tests)

def test_captums_closed_forms():
    class MaxPool1d(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear, self.maxpool = nn.Linear(2, 2, bias=False), nn.MaxPool1d(2)
            self.linear.weight.data.fill_(2.0)

        def forward(self, x):
            return self.maxpool(self.linear(x))

    relevance = fattr.lrp(MaxPool1d(), torch.tensor([[[1.0, 2.0], [5.0, 6.0]]]), target=(1, 0))
    torch.testing.assert_close(relevance.detach(), torch.tensor([[[0.0, 0.0], [10.0, 12.0]]]))

    class Tanh(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear, self.tanh, self.linear2 = nn.Linear(3, 3, bias=False), nn.Tanh(), nn.Linear(3, 1, bias=False)
            self.linear.weight.data.fill_(0.1), self.linear2.weight.data.fill_(0.1)

        def forward(self, x):
            return self.linear2(self.tanh(self.linear(x)))

    relevance = fattr.lrp(Tanh(), torch.tensor([[1.0, 2.0, 3.0]]))  # tanh passes relevance through
    torch.testing.assert_close(relevance.detach(), torch.tensor([[0.0269, 0.0537, 0.0806]]), atol=1e-4, rtol=0)


def test_addition_module_with_a_rule():
    class Addition_Module(nn.Module):  # noqa: N801 (Captum's name)
        def forward(self, x1, x2):
            return x1 + x2

    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear, self.add = nn.Linear(2, 2, bias=False), Addition_Module()
            self.linear.weight.data.fill_(5)

        def forward(self, x):
            return self.add(self.linear(x), x)

    x = torch.tensor([[2.0, 3.0]])
    relevance = fattr.lrp(Skip(), x, target=1, rules={"add": fattr.EpsilonRule()})
    torch.testing.assert_close(relevance.detach(), torch.tensor([[10.0, 18.0]]))  # Captum's test_lrp_skip_connection
    model = Skip()
    model.add.rule = lrp_rules.EpsilonRule()
    torch.testing.assert_close(fattr.lrp(model, x, target=1), captum_lrp(model, x, target=1).detach())


# ------------------------------------------------------------------ beyond Captum

def test_identity_rule_after_a_relu_passes_relevance_unchanged():
    """Captum's identity rule returns the output relevance, but a ReLU module before it hands on the plain
    gradient instead (its hook reads ``replace_out``, which only the z-rules set); fattr passes the relevance."""
    model, x = mlp(), x_mlp()
    rules = {"2": fattr.IdentityRule()}
    into = fattr.layer_lrp(model, model[2], x, target=0, rules=rules, attribute_to_layer_input=True)
    out = fattr.layer_lrp(model, model[2], x, target=0, rules=rules)
    torch.testing.assert_close(into, out, **TOL)


def test_a_module_used_twice_gets_its_rule_at_each_call():
    """Captum refuses a reused module; fattr gives each call the module's rule, as two copies would get."""
    torch.manual_seed(4)
    lin, relu, head = nn.Linear(5, 5).double(), nn.ReLU(), nn.Linear(5, 2).double()
    twice = nn.Sequential(lin, relu, lin, relu, head)
    copies = nn.Sequential(lin, relu, nn.Linear(5, 5).double(), relu, head)
    copies[2].load_state_dict(lin.state_dict())
    x = x_mlp()
    rules = {"0": fattr.GammaRule()}
    torch.testing.assert_close(fattr.lrp(twice, x, target=0, rules=rules),
                               fattr.lrp(copies, x, target=0, rules={"0": fattr.GammaRule(), "2": fattr.GammaRule()}),
                               **TOL)


def test_a_tensor_read_from_outside_the_model_gets_its_gradient():
    """A closed-over ``w`` gets the gradient it gets as a parameter of the model (replaces LRP's rows of
    tests/test_outside_reads.py, whose net has a Sigmoid module)."""
    torch.manual_seed(5)
    w = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)

    class Net(nn.Module):
        def __init__(self, owned: bool) -> None:
            super().__init__()
            self.model = mlp()
            if owned:
                self.w = nn.Parameter(w.detach().clone())

        def forward(self, x):
            return self.model(x @ (self.w if hasattr(self, "w") else w))

    x, rules = x_mlp(), {"model.0": fattr.GammaRule()}
    closed, owned = Net(False), Net(True)
    (grad,) = torch.autograd.grad(fattr.lrp(closed, x, target=0, rules=rules).pow(2).sum(), w)
    (ref,) = torch.autograd.grad(fattr.lrp(owned, x, target=0, rules=rules).pow(2).sum(), owned.w)
    torch.testing.assert_close(grad, ref, **TOL)
    assert grad.abs().max() > 0


# ------------------------------------------------------------------ refusals

def test_an_unsupported_module_is_refused_naming_it():
    model = nn.Sequential(nn.Linear(5, 4), nn.Sigmoid(), nn.Linear(4, 2)).double()
    with pytest.raises(TypeError, match=r"module '1' \(Sigmoid\) without one"):
        fattr.lrp(model, x_mlp(), target=0)
    with pytest.raises(TypeError, match=r"a rule on module '1' \(Sigmoid\)"):
        fattr.lrp(model, x_mlp(), target=0, rules={"1": fattr.EpsilonRule()})
    with pytest.raises(TypeError, match="Sigmoid"):  # as Captum
        captum_lrp(model, x_mlp(), target=0)


def test_bad_rules_are_refused():
    model, x = mlp(), x_mlp()
    with pytest.raises(TypeError, match=r"rules\['0'\]: expected an LRP rule"):
        fattr.lrp(model, x, rules={"0": 1})
    with pytest.raises(ValueError, match=r"rules: expected keys that are submodules"):
        fattr.lrp(model, x, rules={"nope": fattr.EpsilonRule()})
    with pytest.raises(TypeError, match=r"rules: expected keys"):
        fattr.lrp(model, x, rules={nn.Linear(2, 2): fattr.EpsilonRule()})
    with pytest.raises(ValueError, match=r"epsilon: expected a non-negative number"):
        fattr.lrp(model, x, rules={"0": fattr.EpsilonRule(-1.0)})
    with pytest.raises(ValueError, match="identity rule on a layer whose input and output have the same shape"):
        fattr.lrp(model, x, target=0, rules={"0": fattr.IdentityRule()})
    model[2].rule = 1  # Captum's constructor refuses it too
    with pytest.raises(TypeError, match=r"module '2' \(Linear\): expected an LRP rule"):
        fattr.lrp(model, x)
    with pytest.raises(TypeError, match="model: expected an nn.Module, or a function calling modules"):
        fattr.lrp(lambda v: v.sum(1), x)


def test_a_function_of_a_module_gets_the_modules_rules():
    model, x = mlp(), x_mlp()
    model[2].rule = lrp_rules.GammaRule()
    expected = fattr.lrp(model, x, target=1)
    torch.testing.assert_close(fattr.lrp(lambda v: model(v) * 1.0, x, target=1), expected, rtol=0, atol=0)
    torch.testing.assert_close(fattr.layer_lrp(lambda v: model(v), model[3], x, target=1),
                               fattr.layer_lrp(model, "3", x, target=1), rtol=0, atol=0)


# ------------------------------------------------------------------ conservation

@given(seed=st.integers(0, 2 ** 20), width=st.integers(1, 6), depth=st.integers(1, 3))
def test_relevance_is_conserved_in_a_bias_free_relu_net(seed, width, depth):
    """Epsilon -> 0 (the default 1e-9) without biases: the relevances sum to the target output, per example."""
    g = torch.Generator().manual_seed(seed)
    layers = []
    for i in range(depth):
        layers += [nn.Linear(3 if i == 0 else width, width, bias=False), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(width, 2, bias=False)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    relevance, delta = fattr.lrp(model, x, target=1, return_delta=True)
    out = model(x)[:, 1].detach()
    scale = out.abs().max().item() + 1.0
    assert delta.abs().max().item() <= 1e-6 * scale  # zero, but for what epsilon absorbs near z = 0
    torch.testing.assert_close(relevance.detach().sum(1), out, rtol=0, atol=1e-6 * scale)


# ------------------------------------------------------------------ torch.compile

def test_compiles_to_one_graph_and_differentiates_like_eager():
    """Max pooling and a Gamma rule, ``fullgraph=True``: the relevances, and the gradients of a loss through
    them with respect to the input and the parameters, are eager's (the rule's module is found by its weight
    as the recomputation swaps the parameters in)."""
    torch._dynamo.reset()
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(8, 2)).double()
    x = torch.randn(3, 1, 10, dtype=torch.float64, requires_grad=True)
    fn = lambda v: fattr.lrp(model.eval(), v, target=1, rules={"0": fattr.GammaRule()})  # noqa: E731
    sources = [x] + list(model.parameters())
    want = torch.autograd.grad(fn(x).square().sum(), sources, materialize_grads=True)
    compiled = torch.compile(fn, fullgraph=True)
    got = torch.autograd.grad(compiled(x).square().sum(), sources, materialize_grads=True)
    for a, b in zip(got, want, strict=True):  # (under no_grad: tests/test_compile.py, the registry's rows)
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_tuple_inputs_and_extra_args_match_captum():
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(7)
            self.a, self.b, self.relu, self.out = nn.Linear(5, 6), nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 3)

        def forward(self, x, y, scale):
            return self.out(self.relu(self.a(x) + self.b(y))) * scale

    model, x = Two().double(), x_mlp()
    y = torch.randn(4, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    scale = torch.tensor([[1.0], [2.0], [0.5], [3.0]], dtype=torch.float64)  # one row per example
    ours, delta = fattr.lrp(model, (x, y), target=[0, 1, 2, 0], args=(scale,), return_delta=True)
    theirs, their_delta = captum_lrp(model, (x, y), target=[0, 1, 2, 0], additional_forward_args=(scale,),
                                     return_convergence_delta=True)
    assert isinstance(ours, tuple) and len(ours) == 2
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b.detach(), **TOL)
    torch.testing.assert_close(delta, their_delta.detach(), **TOL)
