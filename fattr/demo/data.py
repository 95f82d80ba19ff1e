"""scikit-learn's digits (1797 images of 8x8 pixels, bundled with scikit-learn) as tensors."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Digits:
    """A seeded train / held-out split; images ``(N, 1, 8, 8)`` float32 in ``[0, 1]``, labels int64."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def load(seed: int = 0, test_fraction: float = 0.2) -> Digits:
    """Load the digits and split them with a permutation drawn from ``seed``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise RuntimeError("the demo needs scikit-learn: pip install 'fattr[demo]' (or run make demo)") from e
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * x.shape[0]))
    test, train = order[:n_test], order[n_test:]
    return Digits(x[train], y[train], x[test], y[test])


def one_per_class(y: torch.Tensor, classes: range = range(8)) -> torch.Tensor:
    """Indices of the first example of each class in ``classes`` (the digits the pictures show)."""
    hits = [(y == c).nonzero().flatten()[:1] for c in classes]  # empty for a class without examples
    return torch.cat(hits).to(torch.int64)
