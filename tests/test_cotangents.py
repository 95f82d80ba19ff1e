"""The many-outputs-one-forward primitive (``fattr._src.cotangents.output_gradients``).

Checked against ``torch.autograd.functional.jacobian`` and a loop of one backward per output:
values, every column's gradient, chunk invariance, ``reduce``, one forward per call,
no_grad invariance, and differentiability (on demand, and with the graph in training mode).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fattr._src.arguments import as_args
from fattr._src.cotangents import output_gradients


class Mixer(nn.Module):
    """``(N, T, E) -> (N, T, 5)``: causal cumulative mean, a nonlinearity, a linear read-out."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.lin = nn.Linear(4, 5).double()
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(5, 4, generator=g, dtype=torch.float64))
        self.calls = 0

    def forward(self, x, scale=None):
        self.calls += 1
        t = torch.arange(1, x.shape[1] + 1, dtype=x.dtype)[:, None]
        h = torch.tanh(x.cumsum(1) / t)
        if scale is not None:
            h = h * scale[:, None, None]
        return self.lin(h)


def select(out):
    return torch.log_softmax(out, -1)[..., 1:4].reshape(out.shape[0], -1)  # (N, T * 3)


def data(n=3, t=4):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, t, 4, generator=g, dtype=torch.float64)


def reference(model, x, kwargs=None):
    kwargs = kwargs or {}
    values = select(model(x, **kwargs))
    jac = torch.autograd.functional.jacobian(lambda z: select(model(z, **kwargs)), x)  # (N, M, N, T, E)
    per_row = torch.stack([jac[n, :, n] for n in range(x.shape[0])], 1)  # (M, N, T, E)
    return values, per_row


@pytest.mark.parametrize("chunk", [1, 2, 5, 100])
def test_every_column_gradient_matches_the_jacobian(chunk):
    model, x = Mixer(), data()
    expected_values, expected = reference(model, x)
    values, (grads,) = output_gradients(model, (x,), select, cotangent_chunk=chunk)
    torch.testing.assert_close(values, expected_values, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads, expected, rtol=1e-10, atol=1e-12)


def test_one_forward_for_all_outputs():
    model, x = Mixer(), data()
    output_gradients(model, (x,), select, cotangent_chunk=1)
    assert model.calls == 1


def test_reduce_contracts_each_chunk_and_kwargs_are_paired():
    model, x = Mixer(), data()
    scale = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    _, expected = reference(model, x, {"scale": scale})
    seen = []

    def reduce(grads, cols, y):
        seen.append((cols.start, cols.stop))
        return ((grads[0] * y).sum(-1),)

    _, (got,) = output_gradients(model, (x,), select, as_args((), {"scale": scale}), cotangent_chunk=5,
                                 reduce=reduce, operands=(x,))
    torch.testing.assert_close(got, (expected * x).sum(-1), rtol=1e-10, atol=1e-12)
    assert seen == [(0, 5), (5, 10), (10, 12)]


def test_no_grad_and_leaves_inputs_alone():
    model, x = Mixer(), data()
    a = output_gradients(model, (x,), select)
    with torch.no_grad():
        b = output_gradients(model, (x,), select)
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
    torch.testing.assert_close(a[1][0], b[1][0], rtol=0, atol=0)
    assert not x.requires_grad and model.lin.weight.grad is None


@pytest.mark.parametrize("training", [False, True], ids=["on-demand", "graph"])
def test_differentiable_with_respect_to_parameters_and_inputs(training):
    """Eval mode: computed without a graph, recomputed on backward; training mode: kept its graph."""
    model, x = Mixer().train(training), data().requires_grad_()
    y = (data() * 0.5).requires_grad_()  # an operand of reduce
    values, (reduced,) = output_gradients(model, (x,), select, reduce=lambda g, cols, y: ((g[0] * y) ** 2,),
                                          operands=(y,), cotangent_chunk=4)
    got = torch.autograd.grad(reduced.sum() + values.sum(), (model.lin.weight, x, y))
    jac = torch.autograd.functional.jacobian(lambda z: select(model(z)), x, create_graph=True)
    per_row = torch.stack([jac[n, :, n] for n in range(x.shape[0])], 1)
    expected = torch.autograd.grad(((per_row * y) ** 2).sum() + select(model(x)).sum(), (model.lin.weight, x, y))
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-11)


def test_select_must_give_a_matrix():
    model, x = Mixer(), data()
    with pytest.raises(ValueError, match=r"select: expected to return a tensor of shape \(3, M\)"):
        output_gradients(model, (x,), lambda out: out.sum(-1).sum(-1))
