"""The engine's per-call shortcuts give what the general path gives.

A one-element target tensor is read once into a static index; the recomputation's leaf walk
recognises a leaf by its node's type and a graph made before the call by its sequence numbers.
References: plain indexing, ``torch.autograd`` with the graph kept.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fattr
from fattr._src import recompute
from fattr._src.targets import as_target


@pytest.mark.parametrize("index", [2, -1])
@pytest.mark.parametrize("shape", [(), (1,)])
def test_one_element_target_tensor_is_a_static_index(index, shape):
    out = torch.randn(5, 4, dtype=torch.float64)
    target = torch.tensor(index).reshape(shape)
    got = as_target(target, 5)
    assert got.static == (index,) and got.rows is None
    torch.testing.assert_close(got.select(out, 5), out[:, index], rtol=0, atol=0)
    with pytest.raises(ValueError, match="target: expected indices in range"):
        as_target(torch.tensor(7).reshape(shape), 5).select(out, 5)


def test_one_element_target_tensor_attributes_like_an_int_and_a_list():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    want = fattr.integrated_gradients(model, x, target=[1] * 4, n_steps=6)
    for target in (1, torch.tensor(1), torch.tensor([1])):
        torch.testing.assert_close(fattr.integrated_gradients(model, x, target=target, n_steps=6), want,
                                   rtol=0, atol=0)


class _Scale(torch.autograd.Function):
    """``2 x``, with an attribute named like a leaf node's on its context (the walk must not mistake it)."""

    @staticmethod
    def forward(x):
        return 2 * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.variable = "not a leaf"

    @staticmethod
    def backward(ctx, grad):
        return 2 * grad


def test_walk_tells_leaves_by_node_type_not_by_attribute():
    torch.manual_seed(1)
    w = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)

    def f(x):
        return torch.tanh(_Scale.apply(x @ w))

    x = torch.randn(4, 3, dtype=torch.float64)
    got = torch.autograd.grad(fattr.saliency(f, x, target=1, abs=False).sum(), w)[0]
    leaf = x.clone().requires_grad_()  # the reference: the gradient with its graph kept
    slope = torch.autograd.grad(f(leaf)[:, 1].sum(), leaf, create_graph=True)[0]
    want = torch.autograd.grad(slope.sum(), w)[0]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_reads_tell_graphs_made_before_them_from_those_made_after():
    w = torch.randn(3, requires_grad=True)
    before = (w * 2).sum()  # a graph with interior nodes, made before the reads
    with torch.no_grad():
        read = recompute._Reads()  # (grad mode does not matter)
    after = (w * 3).sum()
    read.walk(after)
    assert read.found == {id(w): w}
    read.walk(before)
    assert read.found is None


def test_a_path_closing_over_a_tensor_names_it():
    """Only the path reads ``x`` (the engine's tensors are empty): its gradient comes through ``reads``."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double().eval()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    attr = fattr.path_attribution(model, lambda a: x * a ** 2, n_steps=4, method="riemann_left", target=0)
    got = torch.autograd.grad(attr.square().sum(), x)[0]
    want = 0  # the reference: the left Riemann sum with its graph kept
    for a in (0.0, 0.25, 0.5, 0.75):
        point = x * a ** 2
        slope = torch.autograd.grad(model(point)[:, 0].sum(), point, create_graph=True)[0]
        want = want + 0.25 * slope * 2 * a * x
    torch.testing.assert_close(got, torch.autograd.grad(want.square().sum(), x)[0], rtol=1e-12, atol=1e-12)


class _Logged(torch.Tensor):
    """A tensor subclass that records the ``torch.autograd.grad`` calls it takes part in."""

    grads: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.autograd.grad:
            cls.grads.append(func)
        return super().__torch_function__(func, types, args, kwargs or {})


def test_tensor_subclasses_take_the_public_gradient_path():
    """The gradient pass calls the autograd engine directly for plain tensors only; a subclass's
    ``__torch_function__`` still sees ``torch.autograd.grad``."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double().eval()
    x = torch.randn(2, 3, dtype=torch.float64)
    _Logged.grads.clear()
    got = fattr.saliency(model, x.as_subclass(_Logged), target=0, abs=False)
    assert len(_Logged.grads) == 1
    leaf = x.clone().requires_grad_()
    want = torch.autograd.grad(model(leaf)[:, 0].sum(), leaf)[0]
    torch.testing.assert_close(got.as_subclass(torch.Tensor), want, rtol=0, atol=0)


def test_a_complex_output_is_refused_as_torch_refuses_it():
    with pytest.raises(RuntimeError, match="real scalar outputs"):
        fattr.saliency(lambda x: (x * (1 + 1j)).sum(1, keepdim=True), torch.randn(2, 3))
