"""Compiled attribution through a pattern whose compiled backward torch 2.13's Inductor gets wrong on CPU.

``torch.compile`` of ``Conv2d -> ReLU -> MaxPool2d -> Flatten -> Linear`` (a LeNet-style block) differentiated
by autograd gives zero input gradients and wrong weight gradients on CPU in torch 2.13 (backend "inductor";
"eager" and "aot_eager" are right), with no error: compiling a model and then computing its saliency, or a
plain ``torch.autograd.grad`` inside a compiled function, returns zeros. fattr's compiled call takes its
gradients with ``torch.func`` inside the traced graph, and its backward recomputes through the same
transforms; these tests pin that its values (as called and under ``no_grad``) and the gradients of a loss on
them match eager on that block, so that a change routing fattr through autograd's compiled backward would
show here rather than as silently wrong attributions.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fattr

TARGET = torch.tensor([0, 3])


def _block() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(64, 10)).eval()


METHODS = {
    "saliency": lambda m, x: fattr.saliency(m, x, target=TARGET, abs=False),
    "integrated_gradients": lambda m, x: fattr.integrated_gradients(m, x, target=TARGET, n_steps=4),
    "deeplift": lambda m, x: fattr.deeplift(m, x, target=TARGET),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_compiled_matches_eager_through_conv_relu_maxpool(name):
    model, x = _block(), torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    fn = lambda x: METHODS[name](model, x)  # noqa: E731
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True)
    eager = fn(x)
    assert eager.abs().max() > 1e-3  # a real signal, so zeros would fail
    got = compiled(x)
    torch.testing.assert_close(got, eager, rtol=1e-4, atol=1e-6)
    (want,) = torch.autograd.grad(eager.pow(2).sum(), model[0].weight)
    (grad,) = torch.autograd.grad(got.pow(2).sum(), model[0].weight)
    torch.testing.assert_close(grad, want, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager, rtol=1e-4, atol=1e-6)
