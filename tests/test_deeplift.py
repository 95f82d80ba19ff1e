"""DeepLift methods: summation-to-delta, coverage of every way to call a nonlinearity, purity, cost.

Summation-to-delta: for networks of affine layers (Linear, Conv, residual sums) and
covered elementwise nonlinearities, or max pooling, the rescale rule's attributions sum
to ``f(x) - f(baseline)`` exactly; in float64 the delta is rounding only (sums of a few
hundred O(1) products, errors ~1e-15), so ``EXACT = 1e-10`` relative to the size of the
quantities involved leaves > 1e4 headroom while any wrong multiplier shows up at O(1).
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, List

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import fattr
from conftest import _init, completeness_gap, output_change, randn

EXACT = 1e-10
seeds = st.integers(0, 2 ** 20)


def exact(delta: torch.Tensor, *scales: torch.Tensor) -> None:
    """``|delta| <= EXACT * (1 + size of the quantities it is the difference of)``, per row."""
    size = 1.0 + sum(float(s.detach().abs().max()) for s in scales)
    assert float(delta.detach().abs().max()) <= EXACT * size, (delta, size)


def outputs(model: nn.Module, x: torch.Tensor, target: Any) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    return out[torch.arange(out.shape[0]), target] if target is not None else out


def gap_of(model: nn.Module, x: torch.Tensor, b: Any, attr: Any, delta: torch.Tensor, target: Any) -> torch.Tensor:
    """The completeness gap computed here (attributions' sum against a plain forward's output change);
    fattr's ``delta`` must equal it, so a test of exactness cannot rest on a wrong ``delta``."""
    gap = completeness_gap(model, x, b, attr, target)
    base = torch.zeros_like(x) if b is None else b
    exact(delta.detach() - gap, *(attr if isinstance(attr, (tuple, list)) else (attr,)), outputs(model, x, target),
          outputs(model, base, target))
    return gap


def exactly_complete(model: nn.Module, x: torch.Tensor, b: Any, attr: Any, delta: torch.Tensor,
                     target: Any) -> None:
    base = torch.zeros_like(x) if b is None else b
    exact(gap_of(model, x, b, attr, delta, target), *(attr if isinstance(attr, (tuple, list)) else (attr,)),
          outputs(model, x, target), outputs(model, base, target))


# --------------------------------------------------------------------------- random networks

SHARED = object()  # marker: the net's one shared ReLU module
ACTIVATIONS = {
    "nn.ReLU": lambda: nn.ReLU(),
    "reused nn.ReLU": lambda: SHARED,
    "nn.ReLU(inplace)": lambda: nn.ReLU(inplace=True),
    "F.relu": lambda: F.relu,
    "torch.relu": lambda: torch.relu,
    "Tensor.relu": lambda: torch.Tensor.relu,
    "F.relu_ on a copy": lambda: (lambda t: F.relu_(t.clone())),
    "nn.ELU": lambda: nn.ELU(0.6),
    "F.leaky_relu": lambda: (lambda t: F.leaky_relu(t, 0.3)),
    "torch.sigmoid": lambda: torch.sigmoid,
    "Tensor.tanh": lambda: torch.Tensor.tanh,
    "nn.Softplus": lambda: nn.Softplus(beta=2.0, threshold=1.0),
    "nn.ReLU6": lambda: nn.ReLU6(),
    "nn.Hardtanh": lambda: nn.Hardtanh(-0.5, 0.7),
    "nn.Tanh(inplace via tanh_)": lambda: (lambda t: t.clone().tanh_()),
}


class RandomNet(nn.Module):
    """``x -> [affine -> activation (+ skip)] * depth -> linear``, affine Linear or Conv1d."""

    def __init__(self, plan: List[tuple], conv: bool, width: int = 4):
        super().__init__()
        self.conv = conv
        make = (lambda: nn.Conv1d(width, width, 3, padding=1)) if conv else (lambda: nn.Linear(width, width))
        self.inp = nn.Conv1d(2, width, 2) if conv else nn.Linear(3, width)
        self.layers = nn.ModuleList(make() for _ in plan)
        self.shared = nn.ReLU()
        acts = [ACTIVATIONS[name]() for name, _ in plan]
        self.mods = nn.ModuleList(a for a in acts if isinstance(a, nn.Module))
        self.acts = [self.shared if a is SHARED else a for a in acts]
        self.skips = [skip for _, skip in plan]
        self.out = nn.Linear(width * (4 if conv else 1), 3)

    def forward(self, x):
        h = self.inp(x)
        for layer, act, skip in zip(self.layers, self.acts, self.skips, strict=True):
            a = act(layer(h))
            h = h + a if skip else a
        return self.out(h.flatten(1))


@st.composite
def random_nets(draw):
    depth = draw(st.integers(1, 4))
    plan = [(draw(st.sampled_from(sorted(ACTIVATIONS))), draw(st.booleans())) for _ in range(depth)]
    if draw(st.booleans()):  # at least one reused module, used twice
        plan[0] = ("reused nn.ReLU", plan[0][1])
        plan.append(("reused nn.ReLU", False))
    conv = draw(st.booleans())
    return _init(RandomNet(plan, conv), draw(seeds)), conv


@given(random_nets(), seeds, st.sampled_from(["random", "zero", "partly equal"]))
def test_summation_to_delta_is_exact_for_random_nets(net, seed, baseline):
    model, conv = net
    shape = (3, 2, 5) if conv else (3, 3)
    x = randn(*shape, seed=seed)
    b = {"random": randn(*shape, seed=seed + 1), "zero": torch.zeros(shape, dtype=torch.float64),
         "partly equal": torch.where(randn(*shape, seed=seed + 2) > 0, x, randn(*shape, seed=seed + 3))}[baseline]
    b[0] = x[0]  # an example equal to its baseline: every multiplier falls back to the gradient
    target = [0, 1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every activation here is covered: no warning
        attr, delta = fattr.deeplift(model, x, b, target=target, return_delta=True)
    exactly_complete(model, x, b, attr, delta, target)
    assert torch.equal(attr[0], torch.zeros_like(attr[0]))


class PoolNet(nn.Module):
    def __init__(self, pool: nn.Module, act: bool, x: torch.Tensor):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.pool, self.act = pool, act
        with torch.no_grad():
            width = self.body(x.float()).shape[1]
        self.out = nn.Linear(width, 2)

    def body(self, x):
        h = self.pool(self.conv(x))
        h = h[0] if isinstance(h, tuple) else h
        return (torch.relu(h) if self.act else h).flatten(1)

    def forward(self, x):
        return self.out(self.body(x))


@st.composite
def pools(draw):
    if draw(st.integers(0, 4)) == 0:
        size = draw(st.tuples(st.integers(1, 4), st.integers(1, 4)))
        return nn.AdaptiveMaxPool2d(size, return_indices=draw(st.booleans()))
    k = draw(st.integers(2, 3))
    return nn.MaxPool2d(k, stride=draw(st.integers(1, k)), padding=draw(st.integers(0, k // 2)),
                        dilation=draw(st.integers(1, 2)), ceil_mode=draw(st.booleans()),
                        return_indices=draw(st.booleans()))


@given(pools(), st.booleans(), st.booleans(), seeds)
def test_summation_to_delta_is_exact_for_max_pool_nets(pool, act, zero_baseline, seed):
    x = randn(3, 1, 7, 6, seed=seed)
    model = _init(PoolNet(pool, act, x), seed)
    b = torch.zeros_like(x) if zero_baseline else randn(3, 1, 7, 6, seed=seed + 1)
    attr, delta = fattr.deeplift(model, x, b, target=[0, 1, 0], return_delta=True)
    exactly_complete(model, x, b, attr, delta, [0, 1, 0])


@given(random_nets(), seeds, st.integers(1, 4))
def test_deeplift_shap_is_the_mean_of_deeplift_over_the_baselines(net, seed, m):
    model, conv = net
    shape = (2, 2, 5) if conv else (2, 3)
    x, dist = randn(*shape, seed=seed), randn(m, *shape[1:], seed=seed + 1)
    attr, delta = fattr.deeplift_shap(model, x, dist, target=[2, 0], return_delta=True)
    per_baseline = [fattr.deeplift(model, x, dist[j:j + 1], target=[2, 0], return_delta=True) for j in range(m)]
    expected = torch.stack([a for a, _ in per_baseline]).mean(0)
    torch.testing.assert_close(attr, expected, rtol=0, atol=1e-12 * (1 + float(expected.detach().abs().max())))
    # computed here: the output changes per (example, baseline) pair, the attributions' sums
    changes = torch.stack([output_change(model, x, dist[j:j + 1], [2, 0]) for j in range(m)], 1)  # (2, m)
    gaps = torch.stack([a.detach().reshape(2, -1).sum(1) for a, _ in per_baseline], 1) - changes
    exact(gaps, attr, changes)
    exact(attr.detach().reshape(2, -1).sum(1) - changes.mean(1), attr, changes)  # complete on average
    assert delta.shape == (2 * m,)  # example-major pairs, each that pair's gap
    torch.testing.assert_close(delta.detach(), gaps.reshape(-1), rtol=0, atol=EXACT)


@given(random_nets(), seeds, st.data())
def test_layer_deeplift_sums_to_delta_at_any_layer_without_skips(net, seed, data):
    model, conv = net
    if any(model.skips):
        model.skips = [False] * len(model.skips)
    name = data.draw(st.sampled_from(["inp"] + [f"layers.{i}" for i in range(len(model.layers))]))
    to_input = data.draw(st.booleans()) and name != "inp"
    shape = (3, 2, 5) if conv else (3, 3)
    x, b = randn(*shape, seed=seed), randn(*shape, seed=seed + 1)
    attr, delta = fattr.layer_deeplift(model, name, x, b, target=[1, 1, 0], return_delta=True,
                                       attribute_to_layer_input=to_input)
    exactly_complete(model, x, b, attr, delta, [1, 1, 0])


# --------------------------------------------------------------------------- ways to call a nonlinearity

class Calls(nn.Module):
    """Covered ops called every way the rule must see: modules, functions, methods, in place, pools."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 3, 3, padding=1)
        self.lin1, self.lin2, self.lin3 = nn.Linear(12, 12), nn.Linear(12, 12), nn.Linear(12, 3)
        self.elu = nn.ELU()

    def forward(self, x):
        h = self.conv(x)
        h, _ = F.max_pool1d(h, 2, return_indices=True)
        h = F.leaky_relu_(h.flatten(1) * 2.0, 0.1)         # in place, result used
        h = self.lin1(h)
        torch.sigmoid_(h)                                   # in place, result ignored
        h = self.lin2(h)
        h = torch.special.expit(h) + F.hardtanh(h, -0.3, 0.2) + self.elu(h) + F.relu6(h * 3)
        return self.lin3(F.softplus(h, beta=0.5))


def test_every_way_of_calling_is_covered_and_exact():
    torch.manual_seed(0)
    model, x, b = _init(Calls(), 3), randn(4, 2, 8, seed=1), randn(4, 2, 8, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attr, delta = fattr.deeplift(model, x, b, target=[0, 1, 2, 0], return_delta=True)
    exactly_complete(model, x, b, attr, delta, [0, 1, 2, 0])


def test_softmax_rule_multipliers_are_centred_per_example():
    model = _init(nn.Sequential(nn.Linear(4, 5), nn.Softmax(dim=-1)), 1)
    x, b = randn(3, 4, seed=1), randn(3, 4, seed=2)
    # attributing to the softmax's input: its multipliers sum to zero along the softmax dim
    m = fattr.layer_deeplift(model, "1", x, b, target=2, attribute_to_layer_input=True, multiply_by_inputs=False)
    torch.testing.assert_close(m.sum(-1), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-15)


# --------------------------------------------------------------------------- uncovered operations

class Uncovered(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)
        self.norm = nn.LayerNorm(4)
        self.temperature = nn.Parameter(torch.ones(4))

    def forward(self, x):
        h = self.a(x)
        h = {"gelu": lambda: F.gelu(h), "silu": lambda: nn.SiLU()(h), "square": lambda: h * h,
             "gate": lambda: h * torch.sigmoid(h), "norm": lambda: self.norm(h), "divide": lambda: 1 / (1 + h ** 2),
             "exp": lambda: torch.exp(h), "params only": lambda: h * torch.exp(self.temperature).sigmoid()}[self.kind]()
        return self.b(h)


@pytest.mark.parametrize("kind,names", [
    ("gelu", ["F.gelu"]), ("silu", ["F.silu"]), ("square", ["Tensor.mul of two input-dependent tensors"]),
    ("gate", ["Tensor.mul of two input-dependent tensors"]), ("norm", ["F.layer_norm"]),
    ("divide", ["Tensor.__pow__", "Tensor.__rtruediv__ by an input-dependent tensor"]), ("exp", ["torch.exp"]),
])
def test_uncovered_nonlinear_operations_are_named_in_a_warning(kind, names):
    model, x = _init(Uncovered(kind), 0), randn(3, 4, seed=1)
    with pytest.warns(UserWarning, match="rescale rule does not cover") as record:
        attr, delta = fattr.deeplift(model, x, target=0, return_delta=True)
    message = str(record[0].message)
    for name in names:
        assert name in message
    assert record[0].filename == __file__  # the warning points at the caller
    gap = gap_of(model, x, None, attr, delta, 0)
    assert float(gap.abs().max()) > EXACT  # the plain gradient is not exact there


def test_nonlinear_operations_on_parameters_alone_are_not_reported():
    model, x = _init(Uncovered("params only"), 0), randn(3, 4, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attr, delta = fattr.deeplift(model, x, target=1, return_delta=True)
    exactly_complete(model, x, None, attr, delta, 1)


# --------------------------------------------------------------------------- purity, cost, errors

class Counting(nn.Module):
    """Records the batch size of every forward call (in a list the test owns)."""

    def __init__(self, inner: nn.Module, log: list):
        super().__init__()
        self.inner, self.log = inner, log

    def forward(self, x):
        self.log.append(x.shape[0])
        return self.inner(x)


@pytest.mark.parametrize("no_grad", [False, True])
def test_one_pass_over_the_baselines_and_one_over_the_inputs(no_grad):
    log: list = []
    model = Counting(_init(nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)), 0), log)
    x, dist = randn(4, 3, seed=1), randn(6, 3, seed=2)
    with torch.no_grad() if no_grad else torch.enable_grad():
        fattr.deeplift(model, x, target=1, return_delta=True)
        assert log == [4, 4]
        log.clear()
        fattr.deeplift_shap(model, x, dist, target=1, return_delta=True)
        assert log == [24, 24]  # k * B rows in one batched pass each, not k passes


def test_purity_with_reused_in_place_modules_in_training_mode():
    shared = nn.ReLU(inplace=True)
    model = _init(nn.Sequential(nn.Linear(3, 6), shared, nn.Dropout(0.0), nn.Linear(6, 6), nn.BatchNorm1d(6),
                                shared, nn.Linear(6, 2)), 0).train()
    x, b = randn(5, 3, seed=1), randn(5, 3, seed=2)
    x0, b0 = x.clone(), b.clone()
    state = copy.deepcopy(model.state_dict())
    hooks = [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()]
    attrs = [sorted(vars(m)) for m in model.modules()]
    with pytest.warns(UserWarning, match="batch_norm"):  # batch statistics couple the examples
        fattr.deeplift(model, x, b, target=0)
    assert torch.equal(x, x0) and torch.equal(b, b0) and not x.requires_grad and not b.requires_grad
    assert all(m.training for m in model.modules())
    assert attrs == [sorted(vars(m)) for m in model.modules()]
    assert hooks == [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
                     for m in model.modules()]
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert not torch.overrides._get_current_function_mode_stack()


def test_differentiable_with_respect_to_inputs_and_baselines_to_second_order():
    """Autograd through the multipliers (max pooling, softmax, a reused ReLU) agrees with finite differences."""
    relu = nn.ReLU()
    model = _init(nn.Sequential(nn.Conv1d(2, 3, 3), relu, nn.MaxPool1d(2), nn.Conv1d(3, 3, 1), relu, nn.Flatten(),
                                nn.Linear(9, 4), nn.Softmax(1)), 2)
    x = randn(2, 2, 8, seed=1).requires_grad_()
    b = randn(2, 2, 8, seed=2).requires_grad_()
    for method in (lambda x, b: fattr.deeplift(model, x, b, target=1),
                   lambda x, b: fattr.deeplift_shap(model, x, b, target=1),
                   lambda x, b: fattr.layer_deeplift(model, "3", x, b, target=1)):
        assert torch.autograd.gradcheck(method, (x, b))
    assert x.grad is None and b.grad is None


def test_data_dependent_control_flow_is_an_error():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 1)

        def forward(self, x):
            h = self.a(x)
            if bool((x > 0).all()):
                h = torch.tanh(h)
            return self.b(h)

    with pytest.raises(ValueError, match="must not branch on its input values"):
        fattr.deeplift(_init(Branchy(), 0), torch.ones(2, 3, dtype=torch.float64), -1.0)


def test_argument_errors():
    model, x = _init(nn.Sequential(nn.Linear(3, 2)), 0), randn(2, 3, seed=1)
    with pytest.raises(ValueError, match="custom_attribution_func: expected a callable of 1 to 3"):
        fattr.deeplift(model, x, target=0, custom_attribution_func=lambda a, b, c, d: a)
    with pytest.raises(TypeError, match="custom_attribution_func"):
        fattr.deeplift(model, x, target=0, custom_attribution_func=3)
    with pytest.raises(ValueError, match="custom_attribution_func: expected to return a tuple of 1"):
        fattr.deeplift(model, x, target=0, custom_attribution_func=lambda m: (m[0], m[0]))
    with pytest.raises(TypeError, match="inputs: expected a floating-point tensor"):
        fattr.deeplift(model, torch.ones(2, 3, dtype=torch.long), target=0)
    with pytest.raises(ValueError, match="eps"):
        fattr.deeplift(model, x, target=0, eps=-1.0)
    with pytest.raises(TypeError, match="model"):
        fattr.layer_deeplift(lambda t: t, "0", x)
    with pytest.raises(TypeError, match="attribute_to_layer_input"):
        fattr.layer_deeplift_shap(model, "0", x, x, attribute_to_layer_input=1)
