"""A compiled forward pass differentiable by recomputation takes only the parameters it reads (issue 16).

Each source of the recomputation is a graph input saved for backward and each parameter looked at a guard;
a layer's head reads a few of the model's parameters."""
from __future__ import annotations

from typing import Any, List

import torch
from torch import nn

from fattr._src import compiled


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))


def _counting(inputs: List[int]) -> Any:
    def backend(gm: torch.fx.GraphModule, example_inputs: List[torch.Tensor]) -> Any:
        inputs.append(len(example_inputs))
        return gm.forward
    return backend


def test_forward_sources_are_the_parameters_read() -> None:
    model, x = _model(), torch.randn(3, 4)
    head = model[:2]
    inputs: List[int] = []

    @torch.compile(backend=_counting(inputs), fullgraph=True)
    def f(x: torch.Tensor) -> torch.Tensor:
        values = compiled.attached(lambda ts: (head(ts[0]),), (x,), model, True)
        assert values is not None
        return values[0]

    out = f(x)
    assert inputs == [3]  # x and the first layer's weight and bias, not the other four parameters
    assert not out.requires_grad or out.grad_fn is not None
    torch.testing.assert_close(out, head(x))
    (out * torch.arange(8.0)).sum().backward()
    got = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    (head(x) * torch.arange(8.0)).sum().backward()
    for g, p in zip(got, model.parameters()):
        assert (g is None) == (p.grad is None)
        if g is not None:
            torch.testing.assert_close(g, p.grad)


def test_forward_reading_another_tensor_requiring_grad_keeps_the_graph() -> None:
    model, x = _model(), torch.randn(3, 4)
    w = torch.ones(8, requires_grad=True)  # not a parameter: the recomputation cannot route through it

    @torch.compile(backend="eager", fullgraph=True)
    def f(x: torch.Tensor) -> bool:
        return compiled.attached(lambda ts: (model[0](ts[0]) * w,), (x,), model, True) is None

    assert f(x)
