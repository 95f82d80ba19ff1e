"""DeepLift names what its rule cannot see: fused recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` and
their cells run as one op) and any other call on input-dependent tensors outside the rule catalogue
that is not known to be linear; models made of linear layers and covered nonlinearities stay silent."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import fattr
from conftest import _init, completeness_gap, randn


class Recurrent(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}.get(kind)
        self.rnn = cls(3, 4, batch_first=True) if cls is not None else None
        self.cell = nn.LSTMCell(3, 4) if kind == "lstm_cell" else None
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cell is not None:
            return self.out(self.cell(x[:, 0])[0])
        return self.out(self.rnn(x)[0][:, -1])


@pytest.mark.parametrize("kind,name", [("lstm", "torch.lstm"), ("gru", "torch.gru"), ("rnn", "torch.rnn_tanh"),
                                       ("lstm_cell", "torch.lstm_cell")])
def test_recurrent_layers_are_named_in_a_warning(kind: str, name: str) -> None:
    model, x = _init(Recurrent(kind), 0), randn(3, 5, 3, seed=1)
    with pytest.warns(UserWarning, match="rescale rule does not cover") as record:
        attr, delta = fattr.deeplift(model, x, target=0, return_delta=True)
    assert name in str(record[0].message)
    gap = completeness_gap(model, x, None, attr, 0)  # computed here, not by fattr
    assert float(gap.abs().max()) > 1e-6  # completeness is indeed lost
    torch.testing.assert_close(delta.detach(), gap, rtol=0, atol=1e-12)


def test_other_nonlinear_calls_outside_the_catalogue_are_named() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.lgamma(self.a(x).abs() + 1))

    with pytest.warns(UserWarning, match=r"torch.lgamma \(not known to be linear\)"):
        fattr.deeplift(_init(Odd(), 0), randn(3, 3, seed=1), target=0)


class Residual(nn.Module):
    """Linear layers, covered nonlinearities and structural ops only: nothing to report."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.bn, self.pool, self.drop = nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(2), nn.Dropout(0.2)
        self.fc = nn.Linear(4 * 2 * 2 + 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        h = h + self.bn(self.conv2(h))                          # residual
        h = torch.nn.functional.max_pool2d(h, 2)
        feats = torch.cat([self.pool(h).flatten(1), h.mean(dim=(2, 3))], dim=1)
        return torch.sigmoid(self.fc(self.drop(feats.view(feats.shape[0], -1))))


def test_linear_layers_and_covered_nonlinearities_are_silent() -> None:
    model, x = _init(Residual(), 0), randn(3, 2, 8, 8, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = 0.1 * randn(1, 2, 8, 8, seed=2)
        attr, delta = fattr.deeplift(model, x, b, target=1, return_delta=True)
        fattr.layer_deeplift(model, "conv2", x, target=1)
        mlp = _init(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)), 0)
        fattr.deeplift(mlp, randn(3, 4, seed=3), target=0)
    gap = completeness_gap(model, x, b, attr, 1)  # computed here, not by fattr
    assert float(gap.abs().max()) < 1e-10
    torch.testing.assert_close(delta.detach(), gap, rtol=0, atol=1e-12)
