"""The demo's classifier: three convolutions and two linear layers, built from a seed."""
from __future__ import annotations

import torch
from torch import nn

LAYER = "conv3"  # where the layer methods attribute: the last convolution, 4 x 4 positions


class DigitsCNN(nn.Module):
    """``(B, 1, 8, 8) -> (B, 10)`` logits. One module per nonlinearity, so Captum's hooks work too."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.relu4 = nn.ReLU()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        h = self.relu3(self.conv3(h))
        return self.fc2(self.relu4(self.fc1(self.flatten(h))))


def make_model(seed: int) -> DigitsCNN:
    """A freshly initialised model; the global RNG is seeded inside a fork and left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DigitsCNN()
