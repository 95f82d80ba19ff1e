"""``torch.compile(fullgraph=True)`` of the gradient and path methods matches eager.

Few and small: the first compile of a function takes seconds on CPU.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fattr


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


CALLS = {
    "saliency": lambda m, x: fattr.saliency(m, x, target=1),
    "input_x_gradient": lambda m, x: fattr.input_x_gradient(m, x, target=2),
    "integrated_gradients": lambda m, x: fattr.integrated_gradients(m, x, n_steps=8, target=1),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_fullgraph_compile_matches_eager(cnn, name):
    torch._dynamo.reset()
    fn = CALLS[name]
    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(lambda x: fn(cnn, x), fullgraph=True)
    torch.testing.assert_close(compiled(x), fn(cnn, x), rtol=1e-5, atol=1e-6)


def test_deeplift_compiles_under_no_grad():
    """DeepLift's function interception runs under Dynamo (with graph breaks around its backward pass)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(4, 5)
    compiled = torch.compile(lambda x: fattr.deeplift(mlp, x, 0.0, target=[0, 1, 2, 1]))
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), fattr.deeplift(mlp, x, 0.0, target=[0, 1, 2, 1]),
                                   rtol=1e-5, atol=1e-6)
