"""Random draws under ``torch.compile`` (issue 16, session 12).

Dynamo cannot trace a ``torch.Generator`` (torch 2.13). Each draw was its own graph break, and a break inside a
generator expression or a loop made Dynamo skip the whole function (the noise tunnel, GradientSHAP's ``draw``)
and compile each function it called as a frame of its own. Now every draw of a call is made by one
function run outside Dynamo (:func:`fattr._src.randomness.drawn`): the only graph breaks are at that call,
the rest of the call is one or two graphs, and a new generator per call recompiles nothing."""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, Optional

import pytest
import torch
import torch._dynamo
from torch import nn
from torch._dynamo.testing import CompileCounter
from torch._dynamo.utils import counters

import fattr

Call = Callable[[torch.Tensor, Optional[torch.Generator]], Any]


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()
    counters.clear()


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def _fn(name: str) -> Callable[..., Any]:
    return {s.name: s for s in fattr.methods()}[name].fn


def _calls(model: nn.Module) -> Dict[str, Call]:
    dist = torch.randn(5, 3)
    smoothgrad = fattr.noise_tunnel(fattr.saliency, n_samples=3, stdevs=0.1)
    chunked = fattr.noise_tunnel(fattr.saliency, n_samples=4, stdevs=0.1, chunk_size=2)
    return {
        "gradient_shap": lambda x, g: fattr.gradient_shap(model, x, dist, n_samples=3, stdevs=0.1, target=0, generator=g),
        "expected_gradients": lambda x, g: _fn("expected_gradients")(model, x, dist, n_samples=3, target=0, generator=g),
        "smoothgrad": lambda x, g: smoothgrad(model, x, target=0, generator=g),
        "smoothgrad_chunked": lambda x, g: chunked(model, x, target=0, generator=g),
        "layer_gradient_shap": lambda x, g: _fn("layer_gradient_shap")(model, "1", x, dist, n_samples=3, stdevs=0.1,
                                                                        target=0, generator=g),
        "lime": lambda x, g: _fn("lime")(model, x, target=0, n_samples=8, generator=g),
    }


# graphs compiled per call (layer GradientSHAP: see benchmarks/README.md, session 12)
GRAPHS = {"gradient_shap": 1, "expected_gradients": 1, "smoothgrad": 1, "smoothgrad_chunked": 1,
          "layer_gradient_shap": 1}


def _breaks() -> Dict[str, int]:
    return dict(counters["graph_break"])


@pytest.mark.parametrize("grad", [True, False], ids=["as_called", "no_grad"])
@pytest.mark.parametrize("name", ["gradient_shap", "expected_gradients", "smoothgrad", "smoothgrad_chunked",
                                  "layer_gradient_shap"])
def test_the_draws_are_the_only_graph_break_and_match_eager(name: str, grad: bool) -> None:
    call = _calls(_model())[name]
    x, counter = torch.randn(2, 3), CompileCounter()
    compiled = torch.compile(call, backend=counter)
    with torch.set_grad_enabled(grad):
        for seed in (1, 2):  # a new generator per call: nothing recompiles
            torch.testing.assert_close(compiled(x, torch.Generator().manual_seed(seed)),
                                       call(x, torch.Generator().manual_seed(seed)), rtol=0, atol=0)
            if seed == 1:
                first = counter.frame_count
    assert counter.frame_count == first
    if name in GRAPHS:
        assert first == GRAPHS[name]
    breaks = _breaks()
    assert breaks and all("drawn" in reason for reason in breaks), list(breaks)


def test_lime_breaks_at_its_draws_not_at_the_generator() -> None:
    call = _calls(_model())["lime"]
    x, counter = torch.randn(2, 3), CompileCounter()
    compiled = torch.compile(call, backend=counter)
    with torch.no_grad():  # (as called, Dynamo also traces the recomputing backward: 10 s)
        torch.testing.assert_close(compiled(x, torch.Generator().manual_seed(1)),
                                   call(x, torch.Generator().manual_seed(1)))
    breaks = _breaks()
    assert any("drawn" in reason for reason in breaks)
    assert not any("Generator" in reason or "proxy" in reason for reason in breaks), list(breaks)  # FISTA's are left


def test_generator_none_is_made_inside_the_draws() -> None:
    call = _calls(_model())["gradient_shap"]
    x = torch.randn(2, 3)
    out = torch.compile(call, backend=CompileCounter())(x, None)
    assert out.shape == x.shape and torch.isfinite(out).all()
    breaks = _breaks()
    assert breaks and all("drawn" in reason for reason in breaks), list(breaks)  # no "opaque object" break


def test_chunked_tunnel_draws_the_noise_of_all_chunks_in_order() -> None:
    model, x = _model(), torch.randn(2, 3)
    got = _calls(model)["smoothgrad_chunked"](x, torch.Generator().manual_seed(0))
    g, parts = torch.Generator().manual_seed(0), []
    for _ in range(2):  # chunk by chunk, as the tunnel drew them before
        noisy = x + 0.1 * torch.randn((2,) + x.shape, generator=g)
        parts.append(fattr.saliency(model, noisy.flatten(0, 1), target=0).reshape(noisy.shape))
    torch.testing.assert_close(got, torch.cat(parts).mean(0))


def test_tunnel_over_a_random_method_draws_each_chunks_noise_just_before_it() -> None:
    model, x, dist = _model(), torch.randn(2, 3), torch.randn(5, 3)
    tunnel = fattr.noise_tunnel(fattr.gradient_shap, n_samples=4, stdevs=0.1, chunk_size=2)
    got = tunnel(model, x, dist, n_samples=3, target=0, generator=torch.Generator().manual_seed(0))
    g, parts = torch.Generator().manual_seed(0), []
    for _ in range(2):  # the chunk's noise, then the method's own draws, from the one generator
        noisy = (x + 0.1 * torch.randn((2,) + x.shape, generator=g)).flatten(0, 1)
        parts.append(fattr.gradient_shap(model, noisy, dist, n_samples=3, target=0, generator=g).reshape(2, *x.shape))
    torch.testing.assert_close(got, torch.cat(parts).mean(0))
