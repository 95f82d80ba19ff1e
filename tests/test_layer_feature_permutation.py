"""``layer_feature_permutation`` against Captum 0.9's ``LayerFeaturePermutation`` and a naive reference.

Captum's permutations come from torch's global RNG (``torch.randperm`` per group, drawn again while it is the
identity). Two ways to compare draw for draw: hand fattr Captum's own ``perm_func`` with the same global seed
(for a layer with one tensor, or groups in one tensor each, both call it once per group, in the groups'
order), or a batch of 2, whose one non-identity permutation (the swap) every draw gives. fattr's own shuffles
are checked against a loop over plain forward passes at the permutations drawn from the same generator.

Captum 0.9 selects ``target`` twice (in its hooked forward and again on that result), so it fails unless
``target`` is None: it is given ``f`` with the target selected and ``target=None``.
"""
from __future__ import annotations

from typing import Any

import captum.attr as ca
import pytest
import torch
from captum.attr._core.feature_permutation import _permute_feature
from torch import nn

import fattr
import fattr.captum as fc
from conftest import _init, randn
from fattr._src.perturbation.permutation import shuffles
from test_layer_captum import _case

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

EXACT = dict(rtol=1e-12, atol=1e-12)


def _selected(model: nn.Module, target: Any):
    """``model`` with ``target`` selected, for Captum (which tiles the batch copy by copy)."""
    def f(*xs):
        out = model(*xs)
        if isinstance(target, int):
            return out[:, target]
        t = torch.as_tensor(target)
        return out.gather(1, t.repeat(out.shape[0] // t.shape[0]).unsqueeze(1)).squeeze(1)
    return f


def _close(ours: Any, theirs: Any) -> None:
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a.detach(), b, **EXACT)
    else:
        assert isinstance(ours, torch.Tensor)
        torch.testing.assert_close(ours.detach(), theirs, **EXACT)


def _mlp() -> nn.Module:
    return _init(nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2), nn.Tanh()), seed=1)


# --------------------------------------------------------------------------- Captum, draw for draw

MASKS = {"none": None, "groups": "groups", "per_example": "per_example"}


def _mask(kind: Any, c: Any) -> Any:
    if kind is None:
        return None
    layer = c.model.get_submodule(c.layer)
    with torch.no_grad():  # the layer's activation shape, to build a mask for it
        shapes = []
        hook = layer.register_forward_hook(lambda m, i, o: shapes.append(o.shape))
        c.model(*(c.inputs if isinstance(c.inputs, tuple) else (c.inputs,)), *c.args)
        hook.remove()
    shape = shapes[0]
    if kind == "groups":  # two groups per channel-row, shared by the examples
        ids = torch.arange(shape[1]).reshape((1, shape[1]) + (1,) * (len(shape) - 2)) % 3
        return ids.expand((1,) + tuple(shape[1:])).clone()
    g = torch.Generator().manual_seed(5)  # a grouping of its own per example
    return torch.randint(0, 4, tuple(shape), generator=g)


# every (case, mask, ppe) but the resnet's 100 single neurons one at a time (100 tail calls on each side)
CAPTUM_CASES = [(case, mask, ppe) for case in ("resnet_conv", "two_inputs") for mask in MASKS for ppe in (1, 3)
                if (case, mask, ppe) != ("resnet_conv", "none", 1)]


@pytest.mark.parametrize("case,mask,ppe", CAPTUM_CASES)
def test_matches_captum_with_its_perm_func(case: str, mask: str, ppe: int) -> None:
    c = _case(case)
    layer = c.model.get_submodule(c.layer)
    target = 1 if isinstance(c.target, int) else c.target
    layer_mask = _mask(MASKS[mask], c)
    torch.manual_seed(3)
    theirs = ca.LayerFeaturePermutation(_selected(c.model, target), layer).attribute(
        c.inputs, additional_forward_args=c.args or None, layer_mask=layer_mask,
        perturbations_per_eval=ppe if isinstance(target, int) else 1)
    torch.manual_seed(3)
    ours = fattr.layer_feature_permutation(c.model, layer, c.inputs, target=target, args=c.args,
                                           layer_mask=layer_mask, perturbations_per_eval=ppe,
                                           perm_func=_permute_feature)
    _close(ours, theirs)


def test_tuple_layer_matches_captum_with_its_perm_func() -> None:
    """A layer with two output tensors, every neuron its own group (each in one tensor): one call of
    ``perm_func`` per group on both sides."""
    c = _case("tuple_output")
    layer = c.model.get_submodule(c.layer)
    torch.manual_seed(4)
    theirs = ca.LayerFeaturePermutation(_selected(c.model, c.target), layer).attribute(c.inputs)
    torch.manual_seed(4)
    ours = fattr.layer_feature_permutation(c.model, layer, c.inputs, target=c.target, perm_func=_permute_feature,
                                           perturbations_per_eval=4)
    _close(ours, theirs)


def test_aggregate_loss_matches_captum() -> None:
    """``f`` a loss (one value for the batch, Captum's aggregate mode): attributions with a batch dim of 1."""
    model, x, y = _mlp(), randn(6, 3, seed=1), randn(6, 2, seed=2)
    loss = lambda x: ((model(x) - y) ** 2).mean()  # noqa: E731
    torch.manual_seed(5)
    theirs = ca.LayerFeaturePermutation(loss, model[1]).attribute(x)
    torch.manual_seed(5)
    ours = fattr.layer_feature_permutation(loss, model[1], x, perm_func=_permute_feature)
    assert ours.shape == (1, 5) and bool((theirs != 0).any())
    _close(ours, theirs)


@pytest.mark.parametrize("shared", [False, True])
def test_batch_of_two_matches_captums_default_draws(shared: bool) -> None:
    """With two examples every permutation drawn is the swap: fattr's own shuffles equal Captum's default,
    also for groups spanning both tensors of a tuple layer (one permutation or one per tensor: the same)."""
    c = _case("tuple_output")
    layer, x = c.model.get_submodule(c.layer), c.inputs[:2]
    mask = (torch.tensor([[0, 1, 2, 0, 1]]), torch.tensor([[2, 1, 0, 3, 3]])) if shared else None
    theirs = ca.LayerFeaturePermutation(_selected(c.model, 2), layer).attribute(x, layer_mask=mask,
                                                                                perturbations_per_eval=2)
    ours = fattr.layer_feature_permutation(c.model, layer, x, target=2, layer_mask=mask, perturbations_per_eval=2,
                                           generator=torch.Generator().manual_seed(0))
    _close(ours, theirs)
    compat = fc.LayerFeaturePermutation(_selected(c.model, 2), layer).attribute(x, layer_mask=mask)
    _close(compat, theirs)


def test_captum_selects_the_target_twice() -> None:
    """Why the tests above give Captum ``f`` with the target selected (fattr.captum's class takes it)."""
    model, x = _mlp(), randn(4, 3, seed=1)
    with pytest.raises(AssertionError, match="Cannot choose target column"):
        ca.LayerFeaturePermutation(model, model[1]).attribute(x, target=1)
    torch.manual_seed(0)
    ours = fc.LayerFeaturePermutation(model, model[1]).attribute(x, target=1)
    torch.manual_seed(0)
    _close(ours, fattr.layer_feature_permutation(model, model[1], x, target=1, generator=torch.default_generator))


# --------------------------------------------------------------------------- fattr's shuffles

def _naive(model: nn.Module, x: torch.Tensor, target: int, perms: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """A loop of plain forward passes: group ``i`` of the activation after ``model[1]`` shuffled by ``perms[i]``."""
    a = model[:2](x)
    ref = model[2:](a)[:, target]
    out = torch.zeros_like(a)
    for i in range(perms.shape[0]):
        where = (groups == i).expand_as(a)
        drop = ref - model[2:](torch.where(where, a[perms[i]], a))[:, target]
        out = out + where * drop.unsqueeze(1)
    return out


@pytest.mark.parametrize("ppe", [1, 2, 7])
def test_matches_a_loop_at_the_same_draws_and_differentiates_like_it(ppe: int) -> None:
    model, x = _mlp(), randn(6, 3, seed=3).requires_grad_()
    groups = torch.tensor([[0, 1, 0, 2, 1]])
    want = _naive(model, x, 1, shuffles(torch.Generator().manual_seed(9), 3, 6), groups)
    got = fattr.layer_feature_permutation(model, model[1], x, target=1, layer_mask=groups,
                                          perturbations_per_eval=ppe, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(got, want, **EXACT)
    sources = [x, model[0].weight, model[2].bias]
    g_want = torch.autograd.grad(want.square().sum(), sources)
    g_got = torch.autograd.grad(got.square().sum(), sources)
    assert float(g_want[0].abs().sum()) > 0
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, **EXACT)


@pytest.mark.parametrize("where", ["layer", "inputs"])
def test_a_random_perm_func_is_differentiated_at_the_permutations_of_its_values(where: str) -> None:
    """A ``perm_func`` drawing from torch's global generator (Captum's): the backward's recomputation replays
    the draws the values were computed at (fattr.feature_permutation too), and the global generator ends
    where one run of the loop leaves it. (For a loss reading a tensor outside it, the layer's fallback
    capture runs the forward twice: test_aggregate_loss_matches_captum.)"""
    model, x = _mlp(), randn(6, 3, seed=3).requires_grad_()
    head, tail = (model[:2], model[2:]) if where == "layer" else (nn.Identity(), model)
    torch.manual_seed(2)
    if where == "layer":
        got = fattr.layer_feature_permutation(model, model[1], x, target=0, perm_func=_permute_feature,
                                              perturbations_per_eval=2)
    else:
        got = fattr.feature_permutation(model, x, target=0, perm_func=_permute_feature, perturbations_per_eval=2)
    after = torch.get_rng_state()
    g_got = torch.autograd.grad(got.square().sum(), [x, model[0].weight])
    assert torch.equal(torch.get_rng_state(), after)  # the backward left the global generator alone
    torch.manual_seed(2)
    a = head(x)
    ref = tail(a)[:, 0]
    columns = []
    for i in range(a.shape[1]):
        mask = torch.arange(a.shape[1]).unsqueeze(0) == i
        columns.append(ref - tail(_permute_feature(a, mask))[:, 0])
    want = torch.stack(columns, 1)
    assert torch.equal(torch.get_rng_state(), after)
    torch.testing.assert_close(got, want, **EXACT)
    for a_, b_ in zip(g_got, torch.autograd.grad(want.square().sum(), [x, model[0].weight]), strict=True):
        torch.testing.assert_close(a_, b_, **EXACT)


def test_an_identity_layer_gives_feature_permutation() -> None:
    """Group ``i`` gets the ``i``-th permutation :func:`fattr.feature_permutation` draws from the generator."""
    inner = _mlp()
    model, x = nn.Sequential(nn.Identity(), inner), randn(5, 3, seed=4)
    got = fattr.layer_feature_permutation(model, model[0], x, target=0, perturbations_per_eval=2,
                                          generator=torch.Generator().manual_seed(2))
    want = fattr.feature_permutation(inner, x, target=0, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(got, want, **EXACT)


def test_layer_input_is_the_previous_layers_output() -> None:
    model, x = _mlp(), randn(5, 3, seed=4)
    got = fattr.layer_feature_permutation(model, model[2], x, target=1, attribute_to_layer_input=True,
                                          generator=torch.Generator().manual_seed(6))
    want = fattr.layer_feature_permutation(model, model[1], x, target=1, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(got, want, **EXACT)


def test_generator_moves_on_and_a_seed_repeats() -> None:
    model, x = _mlp(), randn(8, 3, seed=4)
    g = torch.Generator().manual_seed(1)
    first = fattr.layer_feature_permutation(model, model[1], x, target=0, generator=g)
    second = fattr.layer_feature_permutation(model, model[1], x, target=0, generator=g)
    assert not torch.equal(first, second)  # g moved on: other permutations
    again = fattr.layer_feature_permutation(model, model[1], x, target=0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    # after the call g is where feature_permutation's draws leave it (5 groups of 8 examples)
    ref = torch.Generator().manual_seed(1)
    shuffles(ref, 5, 8)
    g2 = torch.Generator().manual_seed(1)
    fattr.layer_feature_permutation(model, model[1], x, target=0, generator=g2)
    assert torch.equal(g2.get_state(), ref.get_state())


def test_a_mask_draws_before_the_head_as_no_mask_draws_in_the_pass() -> None:
    """With a mask the groups are counted before the head runs and the permutations drawn then; without, in
    the pass from a copy of the generator's state: the same draws, and the generator left in the same state."""
    model, x = _mlp(), randn(6, 3, seed=4)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    masked = fattr.layer_feature_permutation(model, model[1], x, target=0, generator=g1,
                                             layer_mask=torch.arange(5).unsqueeze(0))
    plain = fattr.layer_feature_permutation(model, model[1], x, target=0, generator=g2)
    torch.testing.assert_close(masked, plain, **EXACT)
    assert torch.equal(g1.get_state(), g2.get_state())


def test_compiled_with_a_mask_matches_eager() -> None:
    """Permutations drawn before the head (without a mask, drawn in the pass: tests/test_compile.py's
    registry test): the draws break the graph (Dynamo cannot trace a torch.Generator), the rest compiles."""
    model, x = _mlp().float(), randn(4, 3, seed=4).float()
    fn = lambda x, seed: fattr.layer_feature_permutation(  # noqa: E731
        model, model[1], x, target=torch.tensor([0, 1, 1, 0]), perturbations_per_eval=2,
        layer_mask=torch.tensor([[0, 1, 0, 1, 2]]), n_features=3, generator=torch.Generator().manual_seed(seed))
    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(fn)(x, 3), fn(x, 3), rtol=1e-5, atol=1e-6)


class _Counting(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body, self.calls = body, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.body(x)


def test_the_head_runs_once_and_the_tail_in_batched_calls() -> None:
    inner = _mlp()
    head, tail = _Counting(inner[:2]), _Counting(inner[2:])
    model, x = nn.Sequential(head, tail), randn(4, 3, seed=2)
    fattr.layer_feature_permutation(model, head, x, target=0, perturbations_per_eval=2,
                                    generator=torch.Generator().manual_seed(0))
    assert head.calls == 1 and tail.calls == 1 + 3  # the reference, then 5 groups 2 at a time


def test_no_examples_give_empty_attributions() -> None:
    model = _mlp()
    out = fattr.layer_feature_permutation(model, model[1], randn(0, 3), target=0)
    assert out.shape == (0, 5)


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs,kind,match", [
    (dict(perturbations_per_eval=0), ValueError, "perturbations_per_eval"),
    (dict(perm_func=3), TypeError, "perm_func"),
    (dict(generator=3), TypeError, "generator"),
    (dict(layer_mask=torch.zeros(1, 5)), TypeError, "layer_mask"),
    (dict(layer_mask=torch.zeros(1, 4, dtype=torch.long)), ValueError, "layer_mask"),
    (dict(n_features=2, layer_mask=torch.tensor([[0, 1, 2, 0, 1]])), ValueError, "layer_mask"),
])
def test_bad_arguments_are_named(kwargs: dict, kind: type, match: str) -> None:
    model = _mlp()
    with pytest.raises(kind, match=match):
        fattr.layer_feature_permutation(model, model[1], randn(4, 3), target=0, **kwargs)


def test_one_example_cannot_be_shuffled() -> None:
    model = _mlp()
    with pytest.raises(ValueError, match="inputs: expected at least 2 examples"):
        fattr.layer_feature_permutation(model, model[1], randn(1, 3), target=0)


def test_aggregate_mode_takes_one_copy_per_call() -> None:
    model, x = _mlp(), randn(4, 3)
    with pytest.raises(ValueError, match="perturbations_per_eval"):
        fattr.layer_feature_permutation(lambda x: model(x).sum(), model[1], x, perturbations_per_eval=2)


# --------------------------------------------------------------------------- the shared tail helper

def test_layer_feature_ablation_takes_a_loss_as_captum_does() -> None:
    """``layer_feature_ablation`` runs on the same helper (``on_tail``): with ``target=None`` the model may
    return one value for the batch (Captum's aggregate mode); before, fattr refused it."""
    model, x, y = _mlp(), randn(6, 3, seed=1), randn(6, 2, seed=2)
    loss = lambda x: ((model(x) - y) ** 2).mean()  # noqa: E731
    mask = torch.tensor([[0, 1, 1, 2, 0]])
    theirs = ca.LayerFeatureAblation(loss, model[1]).attribute(x, layer_baselines=0.5, layer_mask=mask)
    ours = fattr.layer_feature_ablation(loss, model[1], x, 0.5, layer_mask=mask)
    assert ours.shape == (1, 5)
    _close(ours, theirs)
    with pytest.raises(ValueError, match="perturbations_per_eval"):
        fattr.layer_feature_ablation(loss, model[1], x, perturbations_per_eval=2)
