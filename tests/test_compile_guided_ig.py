"""Guided IG under ``torch.compile(fullgraph=True)`` (issue #16), and its derivatives.

A step's selection passes run until the step reaches its L1 target: a data-dependent number of
passes, which Dynamo traces as one ``while_loop`` per step. The loop makes only the discrete choices
(which features move); the positions are recomputed from them outside it, with autograd, so the
attribution stays differentiable with respect to the inputs and the parameters, compiled or not.
Compiling takes about 20 s per step and grad mode on a 2-core CPU: two steps here.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fattr
from conftest import make_mlp, randn

counters = torch._dynamo.utils.counters
TARGET = torch.tensor([0, 1, 2, 0])


def _attr(model, x, **options):
    return fattr.guided_integrated_gradients(model, x, 0.1, 2, target=TARGET, **options)


def test_compiled_matches_eager_differentiates_like_it_and_compiles_once_per_grad_mode():
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).eval()  # smooth: the parameters count
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(4, 6, generator=g) for _ in range(3)]
    fn = lambda x: _attr(model, x)  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True)
    for x in xs:  # as called, inputs requiring grad: the derivatives go through the recomputed positions
        x = x.clone().requires_grad_()
        got, want = compiled(x), fn(x)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        sources = [x, *model.parameters()]
        d_got, d_want = (torch.autograd.grad(a.square().sum(), sources, allow_unused=True, materialize_grads=True)
                         for a in (got, want))
        assert all(d.abs().sum() > 0 for d in d_want[:-1])  # (input gradients do not depend on the last bias)
        for a, b in zip(d_got, d_want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        for x in xs:
            got = compiled(x)
            torch.testing.assert_close(got, fn(x), rtol=1e-4, atol=1e-5)
            assert not got.requires_grad
    assert counters["stats"]["unique_graphs"] == 2  # one per grad mode, none per call
    # the path is guided (several passes per step), not the straight line that max_dist=0 gives
    assert not torch.allclose(fn(xs[0]), _attr(model, xs[0], max_dist=0.0), rtol=1e-3, atol=1e-4)


def test_input_derivatives_are_finite_and_match_finite_differences():
    """Eagerly too the selection's positions are recomputed from its choices: d attr / d x is the derivative
    of the path actually walked (it was NaN before: an infinite step size in a branch ``where`` left out)."""
    model, base = make_mlp(n_in=10, seed=4), randn(1, 10, seed=6)
    for max_dist in (0.02, 0.1, 1.0):
        fn = lambda x: fattr.guided_integrated_gradients(model, x, base, 5, max_dist=max_dist, target=1)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (randn(3, 10, seed=5).requires_grad_(),), eps=1e-7, atol=1e-6)


def test_a_step_that_cannot_reach_its_target_raises():
    """NaN gradients select no feature, so no pass moves one: the passes stop at their bound and say so
    (compiled too, by an assertion in the graph: checked by hand, it costs a minute of compiling)."""
    f = lambda x: (x * float("nan")).sum(1, keepdim=True)  # noqa: E731
    with pytest.raises(RuntimeError, match="a step did not reach its L1 target"):
        fattr.guided_integrated_gradients(f, randn(2, 5), n_steps=3, target=0)
