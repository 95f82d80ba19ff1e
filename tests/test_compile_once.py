"""Compiled calls that stay differentiable compute their values once, also across a graph break (issue #16).

As called (grad mode on, parameters requiring grad), a compiled call's values come from an inference graph and
are recomputed in backward (``fattr/_src/compiled.py``). Whether the values depend on something else requiring
grad is decided as Dynamo traces; a probe computed besides the values was dropped from one graph but ran for
real where the graph breaks (LIME's lasso loop runs eagerly): the whole fit twice.
"""
from __future__ import annotations

import torch
from torch import nn

import fattr
from fattr._src.recompute import checkpoint, reads

counters = torch._dynamo.utils.counters


class _Counted(nn.Module):
    """A small model counting its forward calls (Dynamo replays the count after each compiled graph)."""

    def __init__(self, scale=None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        self.calls = [0]
        self.scale = scale  # a tensor attribute, not a parameter

    def forward(self, x):
        self.calls[0] += 1
        return self.net(x) if self.scale is None else self.net(x) * self.scale


_runs = [0]


@torch.compiler.disable
def _eagerly(t):
    """A region Dynamo does not trace: the graph breaks around it."""
    _runs[0] += 1
    return t * 2


def test_a_checkpoint_across_a_graph_break_runs_once_and_differentiates_like_eager():
    torch._dynamo.reset()
    model = _Counted().eval()
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))

    def values(ts):
        reads(model)  # what eager's node differentiates besides the inputs
        return (_eagerly(model(ts[0])).sum(1),)

    def fn(x):
        return checkpoint(values, (x,), module=model)[0]

    compiled = torch.compile(fn)
    compiled(x)  # compiles
    _runs[0] = 0
    got = compiled(x)
    assert _runs[0] == 1  # was 2: the probe ran the eager region too
    assert got.requires_grad
    params = list(model.parameters())
    want = fn(x)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got.square().sum(), params), torch.autograd.grad(want.square().sum(), params),
                    strict=True):
        torch.testing.assert_close(a, b)


def test_a_checkpoint_reading_another_tensor_requiring_grad_keeps_its_graph_across_a_graph_break():
    """A tensor attribute ``w`` requiring grad (not an input, not a parameter): the graph is kept, ``w`` gets its
    gradient as in eager."""
    torch._dynamo.reset()
    w = torch.tensor(1.5, requires_grad=True)
    model = _Counted(w).eval()
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))

    def values(ts):
        reads(model)
        return (_eagerly(model(ts[0])).sum(1),)

    def fn(x):
        return checkpoint(values, (x,), module=model)[0]

    got, want = torch.compile(fn)(x), fn(x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got.sum(), w), torch.autograd.grad(want.sum(), w))


def test_compiled_lime_runs_the_model_as_often_as_eager():
    torch._dynamo.reset()
    counters.clear()
    model = _Counted().eval()
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))

    def fn(x):
        return fattr.lime(model, x, target=0, n_samples=8, perturbations_per_eval=8,
                          generator=torch.Generator().manual_seed(0))

    compiled = torch.compile(fn)
    compiled(x)  # compiles
    model.calls[0] = 0
    got = compiled(x)
    compiled_calls, model.calls[0] = model.calls[0], 0
    want = fn(x)
    assert compiled_calls == model.calls[0] == 3  # was 5: the probe ran the model (and the lasso fit) again
    torch.testing.assert_close(got, want)
    params = list(model.parameters())
    for a, b in zip(torch.autograd.grad(got.square().sum(), params), torch.autograd.grad(want.square().sum(), params),
                    strict=True):
        torch.testing.assert_close(a, b)
