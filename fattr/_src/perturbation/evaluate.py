"""Evaluating ``f`` on perturbed copies of the inputs: the engine every perturbation method shares.

Perturbed copies are extra batch dimensions: ``perturbations_per_eval`` copies of the
whole batch are folded into dim 0 (step-major) and evaluated in one call of ``f``,
with the target and the per-example ``args`` tiled alongside.

Output modes (as in Captum): ``f`` gives one value per example once the target is
selected (attributions per example), or, with ``target=None``, a tensor for the
whole batch whose dim 0 is not the examples (a 0-d loss, say: *aggregate mode*).
In aggregate mode each perturbed copy of the batch is its own call, and attributions
have one row per output element (a batch dim of 1 for a scalar).

Results are computed without an autograd graph and made differentiable on demand
(:mod:`..recompute`), like the gradient methods.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Number
from typing import Any, Callable, Optional, Sequence, Tuple

import torch

from .. import structure
from ..arguments import as_args, tile_args
from ..calling import call
from ..errors import check_bool, check_positive_int, fail
from ..recompute import checkpoint, reads
from ..structure import Tensors, fold
from ..targets import Target, as_target
from .progress import Progress


@dataclass(frozen=True)
class Evaluator:
    """``f`` with its target and args, for copies of a batch of ``n`` examples."""

    f: Callable[..., Any]
    target: Target
    args: Tuple[Any, ...]
    n: int
    aggregate: bool

    def __call__(self, rows: Tensors) -> torch.Tensor:
        """``rows``: per input ``(p, B, ...)``; returns ``(p, B)`` (``(p, n_outputs)`` in aggregate mode)."""
        p = rows[0].shape[0]
        if self.aggregate:
            return torch.stack([_aggregate(self.f, tuple(r[i] for r in rows), self.args) for i in range(p)])
        out = call(self.f, tuple(fold(r) for r in rows), tile_args(self.args, self.n, p))
        return self.target.tile(p).select(out, p * self.n).reshape(p, self.n)


def _aggregate(f: Callable[..., Any], xs: Tensors, args: Sequence[Any]) -> torch.Tensor:
    out = call(f, xs, args)
    if isinstance(out, Number) and not isinstance(out, bool):
        return torch.tensor(out, dtype=torch.get_default_dtype(), device=xs[0].device).reshape(1)
    if not isinstance(out, torch.Tensor):
        fail("f", "to return a tensor", out, kind=TypeError)
    return out.reshape(-1)


def reference(f: Callable[..., Any], xs: Tensors, target: Target, args: Sequence[Any]) -> Tuple[torch.Tensor, bool]:
    """``f(xs)`` at the target, ``(B,)``, and False; or, in aggregate mode, all of ``f(xs)`` flattened, and True."""
    n = xs[0].shape[0]
    out = call(f, xs, args)
    if target.is_none and (not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != n):
        if isinstance(out, torch.Tensor) or (isinstance(out, Number) and not isinstance(out, bool)):
            return _aggregate(lambda *_: out, xs, ()), True
    return target.select(out, n), False


def prepare(inputs: Any, target: Any, args: Any, kwargs: Any, perturbations_per_eval: Any, show_progress: Any
            ) -> Tuple[Tensors, bool, int, Tuple[Any, ...], Target]:
    """The arguments every perturbation method takes, checked: ``(xs, was_tuple, ppe, args, target)``."""
    xs, was_tuple = structure.as_tuple(inputs)
    ppe = check_positive_int("perturbations_per_eval", perturbations_per_eval)
    check_bool("show_progress", show_progress)
    return xs, was_tuple, ppe, as_args(args, kwargs), as_target(target, xs[0].shape[0], xs[0].device)


def replace(xs: Tensors, bases: Sequence[torch.Tensor], selected: Sequence[Optional[torch.Tensor]]) -> Tensors:
    """Per input ``(p, B, ...)``: the baseline where ``selected`` (``(p, 1 or B, ...)``), the input elsewhere.
    ``bases[i]`` is ``(1 or B, ...)`` or ``(p, 1 or B, ...)``; a None selection keeps the input."""
    out = []
    for x, b, s in zip(xs, bases, selected):
        if s is None:
            out.append(x.unsqueeze(0))
        else:
            b = b if b.dim() > x.dim() else b.unsqueeze(0)
            out.append(torch.where(s, b, x.unsqueeze(0)).expand((s.shape[0],) + tuple(x.shape)))
    p = max(r.shape[0] for r in out)
    return tuple(r.expand((p,) + tuple(r.shape[1:])) for r in out)


def in_chunks(evaluate: Evaluator, rows: Callable[[int, int], Tensors], total: int, ppe: int,
              progress: Progress) -> torch.Tensor:
    """``evaluate`` on ``rows(start, stop)`` for ``total`` perturbations, ``ppe`` per call: ``(total, ...)``."""
    outs = []
    for start in range(0, total, ppe):
        outs.append(evaluate(rows(start, min(start + ppe, total))))
        progress.update()
    if not outs:  # inputs without elements: nothing to perturb
        return torch.zeros((0, evaluate.n))
    return torch.cat(outs)


Compute = Callable[[Tensors, Tensors, Evaluator, torch.Tensor], Tensors]


def differentiable(compute: Compute, f: Callable[..., Any], xs: Tensors, bases: Tensors, target: Target,
                   args: Tuple[Any, ...], ppe: int) -> Tensors:
    """``compute(xs, bases, evaluate, reference)`` without a graph, differentiable on demand with respect
    to the inputs, baselines, tensor args and whatever ``f`` reads (its parameters); ``evaluate`` is ``f``
    on copies of the batch, ``ppe`` (``perturbations_per_eval``) of them per call."""
    k = len(xs)

    def run(tensors: Tensors, args_: Tuple[Any, ...]) -> Tensors:
        xs_, bases_ = tensors[:k], tensors[k:]
        with torch.enable_grad():
            ref, aggregate = reference(f, xs_, target, args_)
        reads(ref)
        if aggregate and ppe > 1:
            fail("perturbations_per_eval", "1 when f returns one value for the whole batch (aggregate mode: "
                 "copies of the batch cannot share a call)", ppe)
        return compute(xs_, bases_, Evaluator(f, target, args_, xs_[0].shape[0], aggregate), ref)

    return checkpoint(run, tuple(xs) + tuple(bases), args=args, module=f)
