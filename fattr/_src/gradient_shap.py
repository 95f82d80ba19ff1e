"""GradientSHAP: expected gradients between the input and baselines drawn from a distribution."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch

from . import randomness, structure
from .arguments import as_args, tile_args
from .base import ArgsLike, BaselinesLike, InputsLike, KwargsLike, ModelLike, StdevsLike, TargetLike, WithDelta
from .baselines import format_distribution
from .errors import check_bool, check_callable, check_positive_int
from .gradients import gradients, outputs
from .path import accumulation_dtype
from .structure import Tensors
from .targets import Target, as_target
from .delta import row_totals

Noise = Tuple[Optional[torch.Tensor], ...]  # per input (None: no noise)


@dataclass(frozen=True)
class Draws:
    """A GradientSHAP call's draws and conventions, shared by the input and layer variants: each draw
    ``(n_samples, B, ...)`` per input, all from the generator. ``noisy``: the inputs plus Gaussian noise
    (``stdevs``); ``starts``: one baseline row drawn uniformly per (sample, example), shared by all inputs;
    ``points``: ``start + alpha * (noisy - start)`` with ``alpha ~ U[0, 1]``."""

    xs: Tensors
    noisy: Tensors
    starts: Tensors
    points: Tensors
    args: Tuple[Any, ...]
    target: Target
    n_samples: int
    n: int  # examples


def sample(inputs: Any, baselines: Any, n_samples: Any, stdevs: Any, multiply_by_inputs: Any, return_delta: Any,
           generator: Any) -> Tuple[Tensors, Tensors, Tuple[float, ...], int, Noise, torch.Tensor, torch.Tensor]:
    """Check a GradientSHAP call's arguments and make its draws: ``(xs, dist, sds, n_samples, noise, rows,
    alpha)`` (see :func:`_draws`), the draws last, so that under Dynamo nothing follows them in this frame."""
    xs, _ = structure.as_tuple(inputs)
    structure.require_floating(xs)
    n_samples = check_positive_int("n_samples", n_samples)
    check_bool("multiply_by_inputs", multiply_by_inputs)
    check_bool("return_delta", return_delta)
    sds = randomness.per_input_stdevs(stdevs, len(xs))
    dist = format_distribution(baselines, xs, given=inputs)
    noise, rows, alpha = randomness.drawn(_draws, generator, xs, sds, dist[0].shape[0], n_samples)
    return xs, dist, sds, n_samples, noise, rows, alpha


def paths(xs: Tensors, dist: Tensors, sds: Tuple[float, ...], n_samples: int, noise: Noise, rows: torch.Tensor,
          alpha: torch.Tensor, target: Any, args: Any, kwargs: Any) -> Draws:
    """The :class:`Draws` of :func:`sample`'s draws."""
    noisy = tuple(x + sd * z if z is not None else x.expand((n_samples,) + tuple(x.shape))
                  for x, sd, z in zip(xs, sds, noise))
    starts = tuple(d[rows] for d in dist)
    points = tuple(s + alpha.to(x.dtype).reshape(alpha.shape + (1,) * (x.dim() - 1)) * (xn - s)
                   for s, xn, x in zip(starts, noisy, xs))
    n = xs[0].shape[0]
    return Draws(xs, noisy, starts, points, as_args(args, kwargs), as_target(target, n, xs[0].device), n_samples, n)


def _draws(generator: Any, xs: Tensors, sds: Tuple[float, ...], m: int,
           n_samples: int) -> Tuple[Noise, torch.Tensor, torch.Tensor]:
    """Every draw of a call, in this order: each input's noise (None where its ``sd`` is 0), a
    baseline row per (sample, example), ``alpha`` per (sample, example)."""
    gen = randomness.resolve(generator)
    n, device = xs[0].shape[0], xs[0].device
    noise = tuple(randomness.normal(gen, (n_samples,) + tuple(x.shape), dtype=x.dtype, device=device)
                  if sd > 0 else None for x, sd in zip(xs, sds))
    rows = randomness.integers(gen, m, (n_samples, n), device=device)
    return noise, rows, randomness.uniform(gen, (n_samples, n), dtype=torch.float64, device=device)


def sample_deltas(per_sample: Tensors, change: torch.Tensor, n_samples: int, n: int) -> torch.Tensor:
    """Each (example, sample) pair's completeness delta, example first: ``(B * n_samples,)``."""
    m = n_samples * n
    total = row_totals(tuple(p.reshape(m, p.numel() // max(m, 1)) for p in per_sample))  # (sample, example) rows
    return (total - change).reshape(n_samples, n).t().reshape(-1)


def gradient_shap(f: ModelLike, inputs: InputsLike, baselines: BaselinesLike, n_samples: int = 5,
                  stdevs: StdevsLike = 0.0, *, target: TargetLike = None, args: ArgsLike = (),
                  kwargs: KwargsLike = None, generator: Optional[torch.Generator] = None,
                  multiply_by_inputs: bool = True, return_delta: bool = False) -> WithDelta:
    """GradientSHAP (Lundberg & Lee, 2017): SHAP values approximated by expected gradients.

    For each example, ``n_samples`` times: add Gaussian noise (``stdevs``) to the
    input, draw a baseline row uniformly from ``baselines`` and ``alpha ~ U[0, 1]``,
    and take the gradient at ``baseline + alpha * (noisy - baseline)``; the
    attribution is the mean of ``gradient * (noisy - baseline)``. All
    ``n_samples * B`` points go through one batched forward and backward pass, and
    every random draw comes from ``generator``.

    Args:
      f: callable ``f(*inputs, *args)`` returning a tensor with examples along dim 0.
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      baselines: the reference distribution: a tensor ``(M, ...)`` (or a tuple, one
        per input, with equal ``M``), or a callable returning one from the inputs.
      n_samples: samples per example.
      stdevs: standard deviation of the input noise, one number or one per input.
      target, args: as in :func:`fattr.integrated_gradients`.
      generator: a ``torch.Generator``; the same seed gives the same attributions.
      multiply_by_inputs: if False, return the mean gradient (local attribution).
      return_delta: also return the delta of each (example, sample) pair, example
        first: shape ``(B * n_samples,)``.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Linear(3, 2)
      >>> x, dist = torch.randn(4, 3), torch.randn(10, 3)
      >>> g = torch.Generator().manual_seed(0)
      >>> attr, delta = fattr.gradient_shap(model, x, dist, n_samples=8, target=0, generator=g,
      ...                                   return_delta=True)
      >>> attr.shape, delta.shape
      (torch.Size([4, 3]), torch.Size([32]))
    """
    check_callable("f", f)
    d = paths(*sample(inputs, baselines, n_samples, stdevs, multiply_by_inputs, return_delta, generator),
              target, args, kwargs)  # (not draw: the paths in this frame's graph)
    n, k = d.n, d.n_samples
    grads = gradients(f, tuple(structure.fold(p) for p in d.points), d.target.tile(k), tile_args(d.args, n, k))
    per_sample = [structure.unfold(g, k) * (xn - s) if multiply_by_inputs else structure.unfold(g, k)
                  for g, xn, s in zip(grads, d.noisy, d.starts)]
    attr = tuple(p.to(accumulation_dtype(p.dtype, p.device)).mean(0).to(x.dtype) for p, x in zip(per_sample, d.xs))
    result = structure.restore(attr, isinstance(inputs, tuple))
    if not return_delta:
        return result
    ends = tuple(torch.cat([structure.fold(xn), structure.fold(s)]) for xn, s in zip(d.noisy, d.starts))
    out = outputs(f, ends, d.target.tile(2 * k), tile_args(d.args, n, 2 * k)).to(torch.float64)
    return result, sample_deltas(tuple(per_sample), out[:k * n] - out[k * n:], k, n)
