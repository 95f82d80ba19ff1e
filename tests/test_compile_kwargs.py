"""A compiled layer method called with ``kwargs=``: the split's plan is found at trace time from a
description of the values, keywords included (a :class:`Keywords` made in the traced call reached the
finder without its slots: ``AttributeError: 'Keywords' object has no attribute 'names'``)."""
from __future__ import annotations

import torch
from torch import nn

import fattr


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, scale: torch.Tensor = None, flag: bool = True) -> torch.Tensor:
        h = torch.tanh(self.a(x))
        return self.b(h * scale if scale is not None and flag else h)


def test_layer_methods_with_keyword_arguments_compile_and_match_eager() -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    model, x, s = _Scaled(), torch.randn(5, 3), torch.rand(5, 1) + 0.5

    def ig(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return fattr.layer_integrated_gradients(model, "a", x, target=0, n_steps=4, kwargs={"scale": s, "flag": True})

    def activation(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return fattr.layer_activation(model, "b", x, kwargs={"scale": s})

    for fn in (ig, activation):
        expected = fn(x, s)
        torch.testing.assert_close(torch.compile(fn, fullgraph=True)(x, s), expected, rtol=1e-5, atol=1e-6)
    # the keyword changes the result: it reached the model
    assert not torch.allclose(activation(x, s), fattr.layer_activation(model, "b", x))
