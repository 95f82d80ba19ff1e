"""Benchmark cases: models built in code (random weights, eval mode, float32) with their inputs.

Every model is an ``nn.Sequential`` whose children are the layers the layer
methods attribute to, so the hand-written floors in :mod:`benchmarks.pairs` can
split it exactly (``model[:k+1]`` is the head, ``model[k+1:]`` the tail) with no
library involved.

A :class:`Case` names its layers by dotted path (``"8"`` is the 9th child):
``late`` (near the output), ``early`` (near the input) and ``layer`` (the layer
the other layer methods use: the last conv layer for Grad-CAM on CNNs, the
token embedding on the transformer, the usual NLP choice).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import torch
from torch import nn


@dataclass
class Case:
    """One model with its inputs and everything a method needs to be called on it.

    Attributes:
      name: case name (``mlp``, ``cnn``, ...).
      model: the ``nn.Sequential`` model, in eval mode.
      inputs: the input batch (float features, or token ids for ``transformer``).
      target: one class index per example, ``(B,)`` long.
      baselines: the IG baseline, shaped like ``inputs`` with a batch of 1.
      distribution: baseline rows for the SHAP methods, ``(M, ...)``.
      late, early, layer: dotted names of layers (see the module docstring).
      layer_mask: groups of the ``layer`` activation for feature ablation (None: every neuron).
      tokens: True when the inputs are integer token ids (input-gradient methods do not apply).
      description: one line for the table's legend.
    """

    name: str
    model: nn.Sequential
    inputs: torch.Tensor
    target: torch.Tensor
    baselines: torch.Tensor
    distribution: torch.Tensor
    late: str
    early: str
    layer: str
    layer_mask: Optional[torch.Tensor] = None
    tokens: bool = False
    description: str = ""
    extra: Dict[str, object] = field(default_factory=dict)

    def module(self, name: str) -> nn.Module:
        return self.model.get_submodule(name)

    def index(self, name: str) -> int:
        """Position of a top-level child in the ``Sequential``."""
        return int(name)

    def to(self, device: torch.device) -> "Case":
        self.model.to(device)
        for key in ("inputs", "target", "baselines", "distribution", "layer_mask"):
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, value.to(device))
        return self


class BasicBlock(nn.Module):
    """ResNet basic block: conv-bn-relu-conv-bn + skip (1x1 conv when the shape changes), relu."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()  # one ReLU module per use, so Captum's DeepLift hooks are right
        self.shortcut = (nn.Sequential() if stride == 1 and c_in == c_out else
                         nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu2(y + self.shortcut(x))


class PositionalEmbedding(nn.Module):
    """Adds a learned position embedding to token embeddings ``(B, L, D)``."""

    def __init__(self, length: int, dim: int):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, length, dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos[:, : x.shape[1]]


class MeanPool(nn.Module):
    """Mean over the sequence dim: ``(B, L, D) -> (B, D)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1)


def _randomise_bn(model: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BatchNorm statistics, so eval-mode BN is not the identity."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.75)


def _seeded(seed: int) -> torch.Generator:
    """A case's generator; torch's global generator seeded too (the model's initial weights)."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _finish(name: str, model: nn.Sequential, inputs: torch.Tensor, n_classes: int, gen: torch.Generator, *,
            late: str, early: str, layer: str, layer_mask: Optional[torch.Tensor] = None,
            tokens: bool = False, description: str = "", n_dist: int = 10) -> Case:
    model.eval()
    target = torch.randint(0, n_classes, (inputs.shape[0],), generator=gen)
    if tokens:
        baselines = torch.zeros_like(inputs[:1])  # the padding token
        distribution = torch.randint(0, 4, (n_dist,) + tuple(inputs.shape[1:]), generator=gen)
    else:
        baselines = torch.zeros_like(inputs[:1])
        distribution = torch.randn((n_dist,) + tuple(inputs.shape[1:]), generator=gen) * 0.1
    return Case(name, model, inputs, target, baselines, distribution, late, early, layer, layer_mask, tokens,
                description)


def _channel_mask(channels: int) -> torch.Tensor:
    """One ablation group per channel of a ``(B, C, H, W)`` layer, broadcast over the spatial dims."""
    return torch.arange(channels).reshape(1, channels, 1, 1)


def mlp_tiny(scale: float = 1.0) -> Case:
    gen = _seeded(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    x = torch.randn(1, 16, generator=gen)
    return _finish("mlp_tiny", model, x, 4, gen, late="1", early="0", layer="1",
                   description="MLP 16-32-4, batch 1 (per-step cost inside a training loop)")


def mlp(scale: float = 1.0) -> Case:
    gen = _seeded(1)
    w = max(8, int(512 * scale))
    d = max(8, int(784 * scale))
    model = nn.Sequential(nn.Linear(d, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 10))
    b = max(2, int(32 * scale))
    x = torch.randn(b, d, generator=gen)
    return _finish("mlp", model, x, 10, gen, late="3", early="1", layer="3",
                   description=f"MLP {d}-{w}-{w}-10, batch {b}")


def cnn(scale: float = 1.0) -> Case:
    gen = _seeded(2)
    s = max(8, int(32 * scale))
    b = max(2, int(8 * scale))
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 0 1 2
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 3 4 5
        nn.Flatten(), nn.Linear(32 * (s // 4) ** 2, 64), nn.ReLU(), nn.Linear(64, 10))  # 6 7 8 9
    return _finish("cnn", model, torch.randn(b, 3, s, s, generator=gen), 10, gen, late="4", early="1", layer="4",
                   layer_mask=_channel_mask(32),
                   description=f"CNN, 2 conv layers (16, 32 channels) + maxpool + 2 linear, 3x{s}x{s}, batch {b}")


def resnet(scale: float = 1.0) -> Case:
    gen = _seeded(3)
    s = max(16, int(64 * scale))
    b = max(2, int(4 * scale))
    widths = [16, 16, 32, 32, 64, 64, 128, 128]
    blocks, c = [], 16
    for i, w in enumerate(widths):
        stride = 2 if w != c else 1
        blocks.append(BasicBlock(c, w, stride))
        c = w
    stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
    model = nn.Sequential(stem, *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))
    _randomise_bn(model, gen)
    return _finish("resnet", model, torch.randn(b, 3, s, s, generator=gen), 10, gen, late="8", early="1", layer="8",
                   layer_mask=_channel_mask(128),
                   description=f"ResNet-style: stem + 8 basic blocks (16-128 channels), 3x{s}x{s}, batch {b}")


def transformer(scale: float = 1.0) -> Case:
    gen = _seeded(4)
    length = max(8, int(64 * scale))
    b = max(2, int(8 * scale))
    dim, vocab = 64, 1000
    layers = [nn.TransformerEncoderLayer(dim, 4, 128, dropout=0.0, batch_first=True) for _ in range(2)]
    model = nn.Sequential(nn.Embedding(vocab, dim), PositionalEmbedding(length, dim), *layers, MeanPool(),
                          nn.Linear(dim, 2))
    ids = torch.randint(4, vocab, (b, length), generator=gen)
    mask = torch.arange(length).reshape(1, length, 1)  # one ablation group per token
    return _finish("transformer", model, ids, 2, gen, late="3", early="0", layer="0", layer_mask=mask,
                   tokens=True, description=f"Transformer: token embedding (vocab {vocab}, d {dim}) + 2 encoder "
                   f"layers + mean pool + classifier, sequence {length}, batch {b}")


CASES: Dict[str, Callable[..., Case]] = {
    "mlp_tiny": mlp_tiny, "mlp": mlp, "cnn": cnn, "resnet": resnet, "transformer": transformer,
}


def build(name: str, *, smoke: bool = False, device: str = "cpu") -> Case:
    """Build a case; ``smoke`` shrinks it to seconds-sized models for the test suite."""
    case = CASES[name](0.25 if smoke else 1.0)
    return case.to(torch.device(device))
