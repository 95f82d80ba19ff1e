"""An attribution prior: keep the integrated-gradients mass inside the central region of the image.

The penalty is the mean, over a batch, of the absolute integrated gradients
(for the true class, zero baseline) on the image's border. The loss
backpropagates through :func:`fattr.integrated_gradients` itself: its
attributions are differentiable with respect to the model's parameters.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

import fattr

from .data import Digits
from .model import make_model
from .train import Log, train


def border_mask(size: int = 8, margin: int = 1) -> torch.Tensor:
    """``(size, size)`` bool: True on the ``margin`` outermost rows and columns."""
    mask = torch.ones(size, size, dtype=torch.bool)
    mask[margin:size - margin, margin:size - margin] = False
    return mask


def border_share(attributions: torch.Tensor, mask: torch.Tensor) -> float:
    """Share of the total ``|attribution|`` (over all examples and channels) on ``mask``'s pixels."""
    magnitude = attributions.detach().abs().sum(dim=1)  # (B, H, W)
    total = float(magnitude.sum())
    return float(magnitude[:, mask].sum()) / total if total > 0 else 0.0


def make_penalty(mask: torch.Tensor, weight: float, n_steps: int):
    """``penalty(model, x, y) = weight * mean_b sum_border |IG(model, x_b)|``.

    The border sum multiplies by the mask rather than indexing with it: boolean indexing
    has a data-dependent size, which breaks a ``torch.compile`` graph.
    """

    def penalty(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        attr = fattr.integrated_gradients(model, x, n_steps=n_steps, target=y)
        border = attr.abs().sum(dim=1) * mask.to(attr.dtype)  # (B, H, W), zero off the border
        return weight * border.sum(dim=(1, 2)).mean()

    return penalty


@dataclass
class PriorResult:
    plain_accuracy: float
    prior_accuracy: float
    plain_share: float
    prior_share: float
    prior_model: nn.Module
    seconds: float
    train_steps: int
    eval_steps: int


def run(plain: nn.Module, plain_accuracy: float, data: Digits, *, epochs: int, model_seed: int,
        batch_seed: int, weight: float = 1.0, train_steps: int = 2, eval_steps: int = 16,
        log: Log = print) -> PriorResult:
    """Train a second copy of ``plain`` with the prior and compare the two.

    The copy starts from ``make_model(model_seed)`` and sees the batches of
    ``batch_seed``: pass the seeds ``plain`` was trained with, so the prior is the
    only difference. Border shares are measured on the whole held-out set with
    ``eval_steps`` IG steps.
    """
    start = time.perf_counter()
    mask = border_mask(data.test_x.shape[-1])
    model = make_model(model_seed)
    acc = train(model, data, epochs=epochs, seed=batch_seed, penalty=make_penalty(mask, weight, train_steps),
                log=log, name="with prior")
    shares = []
    for m in (plain, model):
        with torch.no_grad():
            attr = fattr.integrated_gradients(m, data.test_x, n_steps=eval_steps, target=data.test_y)
        shares.append(border_share(attr, mask))
    return PriorResult(plain_accuracy, acc, shares[0], shares[1], model, time.perf_counter() - start, train_steps,
                       eval_steps)
