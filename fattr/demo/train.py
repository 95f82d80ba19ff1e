"""Training loop for the demo's models, with an optional attribution penalty in the loss."""
from __future__ import annotations

import time
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .data import Digits

Penalty = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
Log = Callable[[str], None]
Step = Callable[[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer, penalty: Optional[Penalty] = None) -> Step:
    """``step(x, y) -> (loss, penalty)``, both detached: cross-entropy plus ``penalty(model, x, y)``,
    backward, one optimizer step. A plain function of tensors: ``torch.compile(step)`` compiles the
    whole training step (``benchmarks/train_step.py``)."""

    def step(x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        loss = F.cross_entropy(model(x), y)
        extra = penalty(model, x, y) if penalty is not None else loss.new_zeros(())
        loss = loss + extra
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach(), extra.detach()

    return step


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train(model: nn.Module, data: Digits, *, epochs: int, seed: int, penalty: Optional[Penalty] = None,
          batch_size: int = 64, max_lr: float = 5e-3, log: Optional[Log] = None, name: str = "model") -> float:
    """Adam with a one-cycle learning rate; batches drawn from ``seed``. Returns held-out accuracy.

    ``penalty(model, x, y)`` is added to the cross-entropy of every batch.
    """
    generator = torch.Generator().manual_seed(seed)
    n = data.train_x.shape[0]
    steps_per_epoch = (n + batch_size - 1) // batch_size
    optimizer = torch.optim.Adam(model.parameters(), lr=max_lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=epochs * steps_per_epoch)
    step = make_step(model, optimizer, penalty)
    model.train()
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        total_penalty = 0.0
        for i in range(0, n, batch_size):
            rows = order[i:i + batch_size]
            _, extra = step(data.train_x[rows], data.train_y[rows])
            total_penalty += float(extra)
            schedule.step()
        if log is not None:
            model.eval()
            acc = accuracy(model, data.test_x, data.test_y)
            model.train()
            extra_text = f", mean penalty {total_penalty / steps_per_epoch:.4f}" if penalty is not None else ""
            log(f"{name}: epoch {epoch + 1}/{epochs}, held-out accuracy {acc:.1%}{extra_text} "
                f"({time.perf_counter() - start:.1f} s)")
    model.eval()
    return accuracy(model, data.test_x, data.test_y)
