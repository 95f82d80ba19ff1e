"""Gradient of the selected output with respect to the inputs, for a batch of rows.

Rows are independent examples, so the gradient of the *sum* of the selected
outputs gives every row's own gradient in one backward pass: one batched forward
and backward, the floor for any gradient method. Built on ``torch.func.grad``,
which works under an outer ``torch.no_grad()``, never touches ``requires_grad``
or ``.grad``, composes with an outer autograd (attributions are differentiable
with respect to parameters and inputs) and is traced by ``torch.compile``.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, Tuple

import torch

from .calling import call
from .structure import Tensors
from .targets import Target


def _low_precision(t: torch.Tensor) -> bool:
    return t.dtype in (torch.float16, torch.bfloat16)


def gradients_and_outputs(f: Callable[..., Any], rows: Tensors, target: Target,
                          args: Sequence[Any] = ()) -> Tuple[Tensors, torch.Tensor]:
    """``(d f(rows)[target] / d rows, f(rows)[target])``: per-row gradients and selected outputs.

    ``target`` and the per-example entries of ``args`` must already match ``rows``.
    """
    n_rows = rows[0].shape[0]

    def selected(*xs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        out = target.select(call(f, xs, args), n_rows)
        total = out.sum(dtype=torch.float32) if _low_precision(out) else out.sum()
        return total, out

    argnums = tuple(range(len(rows)))
    grads, out = torch.func.grad(selected, argnums=argnums, has_aux=True)(*rows)
    return tuple(grads), out


def gradients(f: Callable[..., Any], rows: Tensors, target: Target, args: Sequence[Any] = ()) -> Tensors:
    """Per-row gradients of ``f(rows)[target]`` with respect to each tensor in ``rows``."""
    return gradients_and_outputs(f, rows, target, args)[0]


def outputs(f: Callable[..., Any], rows: Tensors, target: Target, args: Sequence[Any] = ()) -> torch.Tensor:
    """``f(rows)[target]``, one value per row."""
    return target.select(call(f, rows, args), rows[0].shape[0])
