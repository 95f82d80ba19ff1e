"""GradientSHAP: expected gradients between the input and baselines drawn from a distribution."""
from __future__ import annotations

from typing import Any, Callable, Tuple

import torch

from . import randomness, structure
from .arguments import as_args, tile_args
from .baselines import format_distribution
from .errors import check_bool, check_callable, check_positive_int
from .gradients import gradients, outputs
from .path import accumulation_dtype
from .structure import Tensors
from .targets import as_target
from .delta import row_totals


def sample_points(gen: torch.Generator, xs: Tensors, dist: Tensors, n_samples: int,
                  sds: Tuple[float, ...]) -> Tuple[Tensors, Tensors, Tensors]:
    """GradientSHAP's draws, all from ``gen``, each ``(n_samples, B, ...)`` per input.

    Returns ``(noisy, starts, points)``: the inputs plus Gaussian noise (``sds``),
    one baseline row drawn uniformly per (sample, example) and shared by all inputs,
    and ``start + alpha * (noisy - start)`` with ``alpha ~ U[0, 1]``.
    """
    n, device = xs[0].shape[0], xs[0].device
    noisy = tuple(x + sd * randomness.normal(gen, (n_samples,) + tuple(x.shape), dtype=x.dtype, device=device)
                  if sd > 0 else x.expand((n_samples,) + tuple(x.shape)) for x, sd in zip(xs, sds))
    rows = randomness.integers(gen, dist[0].shape[0], (n_samples, n), device=device)
    alpha = randomness.uniform(gen, (n_samples, n), dtype=torch.float64, device=device)
    starts = tuple(d[rows] for d in dist)
    points = tuple(s + alpha.to(x.dtype).reshape(alpha.shape + (1,) * (x.dim() - 1)) * (xn - s)
                   for s, xn, x in zip(starts, noisy, xs))
    return noisy, starts, points


def gradient_shap(f: Callable[..., Any], inputs: Any, baselines: Any, n_samples: int = 5,
                  stdevs: Any = 0.0, *, target: Any = None, args: Any = (), kwargs: Any = None, generator: Any = None,
                  multiply_by_inputs: bool = True, return_delta: bool = False):
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
    xs, was_tuple = structure.as_tuple(inputs)
    structure.require_floating(xs)
    n_samples = check_positive_int("n_samples", n_samples)
    check_bool("multiply_by_inputs", multiply_by_inputs)
    check_bool("return_delta", return_delta)
    sds = randomness.per_input_stdevs(stdevs, len(xs))
    dist = format_distribution(baselines, xs, given=inputs)
    n, device = xs[0].shape[0], xs[0].device
    gen = randomness.resolve(generator, device)
    args = as_args(args, kwargs)
    tgt = as_target(target, n, device)

    noisy, starts, points = sample_points(gen, xs, dist, n_samples, sds)
    grads = gradients(f, tuple(structure.fold(p) for p in points), tgt.tile(n_samples),
                      tile_args(args, n, n_samples))
    per_sample = []
    for g, xn, s, x in zip(grads, noisy, starts, xs):
        g = structure.unfold(g, n_samples)
        per_sample.append(g * (xn - s) if multiply_by_inputs else g)
    attr = tuple(p.to(accumulation_dtype(p.dtype, p.device)).mean(0).to(x.dtype) for p, x in zip(per_sample, xs))
    result = structure.restore(attr, was_tuple)
    if not return_delta:
        return result
    ends = tuple(torch.cat([structure.fold(xn), structure.fold(s)]) for xn, s in zip(noisy, starts))
    out = outputs(f, ends, tgt.tile(2 * n_samples), tile_args(args, n, 2 * n_samples)).to(torch.float64)
    m = n_samples * n
    total = row_totals(tuple(p.reshape(m, p.numel() // max(m, 1)) for p in per_sample))  # (sample, example) rows
    delta = (total - (out[:m] - out[m:])).reshape(n_samples, n)
    return result, delta.t().reshape(-1)
