"""Shared test configuration: Hypothesis profiles and small float64 model factories.

Hypothesis profiles (select with ``HYPOTHESIS_PROFILE=<name>``):

* ``ci`` (default): deterministic (``derandomize=True``: the same examples on
  every run and machine), no deadline (timings on a shared CI core are noisy),
  few examples so the whole suite stays fast, no ``too_slow`` health check
  (building a model per example is legitimately slow-ish), no example database.
* ``dev``: random, many more examples, for hunting bugs locally.

Model factories build small float64 modules from an explicit seed (never the
global RNG), so a test that uses them is reproducible on its own.
"""
from __future__ import annotations

import os
from typing import Any, Tuple

import pytest
import torch
from hypothesis import HealthCheck, settings
from torch import nn

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=15,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=300,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _init(module: nn.Module, seed: int) -> nn.Module:
    """Re-initialise every parameter from ``seed`` (normal, std 0.5) in float64, in eval mode."""
    g = torch.Generator().manual_seed(seed)
    module = module.to(torch.float64)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return module.eval()


def make_mlp(n_in: int = 5, n_hidden: int = 8, n_out: int = 3, seed: int = 0) -> nn.Module:
    """``Linear -> Tanh -> Linear -> Softplus -> Linear``: smooth, so path integrals converge fast."""
    return _init(nn.Sequential(nn.Linear(n_in, n_hidden), nn.Tanh(), nn.Linear(n_hidden, n_hidden),
                               nn.Softplus(), nn.Linear(n_hidden, n_out)), seed)


class SmallCNN(nn.Module):
    """``(B, 2, 6, 6) -> (B, n_out)``: conv, tanh, conv, global average pool, linear."""

    def __init__(self, n_out: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.fc = nn.Linear(4, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv1(x))
        h = torch.nn.functional.softplus(self.conv2(h))
        return self.fc(h.mean(dim=(2, 3)))


def make_cnn(n_out: int = 4, seed: int = 1) -> nn.Module:
    return _init(SmallCNN(n_out), seed)


class TwoInputModel(nn.Module):
    """``f(x1 (B, 4), x2 (B, 2, 3), scale (B, 1), mode: str, gain: float) -> (B, 3)``.

    ``scale`` is a per-example tensor argument (it must stay paired with its
    example), ``mode`` and ``gain`` are non-tensor arguments passed as is.
    """

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(6, 3)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, scale: torch.Tensor, mode: str = "tanh",
                gain: float = 1.0) -> torch.Tensor:
        act = torch.tanh if mode == "tanh" else torch.sigmoid
        h = act(self.a(x1)) * scale + torch.sin(self.b(x2.flatten(1)))
        return gain * h + (x1[:, :3] * h)


def make_two_input(seed: int = 2) -> nn.Module:
    return _init(TwoInputModel(), seed)


class ThreeDOutputModel(nn.Module):
    """``(B, 5) -> (B, 3, 4)``: outputs with more than two dims, addressed by tuple targets."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.lin(x)).reshape(-1, 3, 4) * x[:, :1, None]


def make_3d(seed: int = 3) -> nn.Module:
    return _init(ThreeDOutputModel(), seed)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    """A float64 standard-normal tensor from its own generator."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def output_change(f: Any, inputs: Any, baselines: Any = None, target: Any = None, args: Tuple[Any, ...] = ()
                  ) -> torch.Tensor:
    """``f(x)[target] - f(baseline)[target]`` per example, float64, from two plain forward passes.

    ``baselines``: None (zeros), a number, or a tensor broadcastable to the input (a tuple of
    those for tuple inputs); ``target``: None (one value per example), an int or a list.
    """
    xs = inputs if isinstance(inputs, tuple) else (inputs,)
    bs = baselines if isinstance(baselines, tuple) else (baselines,) * len(xs)
    assert len(bs) == len(xs)
    bs = tuple(torch.zeros_like(x) if b is None else torch.as_tensor(b, dtype=x.dtype).expand_as(x)
               for b, x in zip(bs, xs, strict=True))

    def picked(out: torch.Tensor) -> torch.Tensor:
        out = out.detach().to(torch.float64)
        if target is None:
            return out.reshape(out.shape[0])
        return out[torch.arange(out.shape[0]), torch.as_tensor(target).expand(out.shape[0])]

    with torch.no_grad():
        return picked(f(*xs, *args)) - picked(f(*bs, *args))


def completeness_gap(f: Any, inputs: Any, baselines: Any, attributions: Any, target: Any = None,
                     args: Tuple[Any, ...] = ()) -> torch.Tensor:
    """Per example, the attributions' sum minus :func:`output_change`, computed without fattr.

    A completeness test bounds this, and checks fattr's ``delta`` against it, rather than trust
    ``delta`` alone (a wrong delta would let wrong attributions pass). ``attributions``: a tensor,
    a tuple or a list of them (a layer's), examples along dim 0.
    """
    parts = attributions if isinstance(attributions, (tuple, list)) else (attributions,)
    total = sum(a.detach().to(torch.float64).reshape(a.shape[0], -1).sum(1) for a in parts)
    return total - output_change(f, inputs, baselines, target, args)


@pytest.fixture
def mlp() -> nn.Module:
    return make_mlp()


@pytest.fixture
def cnn() -> nn.Module:
    return make_cnn()
