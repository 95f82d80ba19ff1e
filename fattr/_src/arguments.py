"""``args``: extra positional arguments passed to ``f`` after the inputs (Captum's
``additional_forward_args``). A tensor with one row per example belongs to its
example and is tiled alongside it whenever examples are replicated (path steps,
noise samples); anything else is passed as is.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, Tuple

import torch


def as_args(args: Any) -> Tuple[Any, ...]:
    """``None -> ()``; a tuple stays; any other single value becomes a 1-tuple (Captum's rule)."""
    if args is None:
        return ()
    return args if isinstance(args, tuple) else (args,)


def is_per_example(arg: Any, n_examples: int) -> bool:
    return isinstance(arg, torch.Tensor) and arg.dim() > 0 and arg.shape[0] == n_examples


def tile(x: torch.Tensor, k: int) -> torch.Tensor:
    """``(B, ...) -> (k*B, ...)``: ``k`` copies stacked step-major (row ``s*B + b`` is example ``b``)."""
    if k == 1:
        return x
    return x.unsqueeze(0).expand((k,) + tuple(x.shape)).reshape((k * x.shape[0],) + tuple(x.shape[1:]))


def tile_args(args: Tuple[Any, ...], n_examples: int, k: int) -> Tuple[Any, ...]:
    """Tile the per-example tensors of ``args`` ``k`` times, step-major; leave the rest alone."""
    if k == 1:
        return args
    return tuple(tile(a, k) if is_per_example(a, n_examples) else a for a in args)


Tensors = Tuple[torch.Tensor, ...]


def split_args(args: Sequence[Any]) -> Tuple[Tensors, Callable[[Tensors], Tuple[Any, ...]]]:
    """``(tensors, rebuild)``: the tensors among ``args``, and ``rebuild(new_tensors) -> args`` with
    them replaced (the tensors are what a computation over ``args`` may be differentiated by)."""
    where = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]

    def rebuild(tensors: Tensors) -> Tuple[Any, ...]:
        out = list(args)
        for i, t in zip(where, tensors):
            out[i] = t
        return tuple(out)

    return tuple(args[i] for i in where), rebuild
