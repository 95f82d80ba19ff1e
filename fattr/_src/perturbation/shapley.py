"""Shapley values of features: exact (every coalition) and sampled (random feature orders)."""
from __future__ import annotations

import math
import warnings
from typing import Optional

import torch

from .. import randomness, structure
from ..base import ArgsLike, BaselinesLike, FeatureMaskLike, InputsLike, KwargsLike, ModelLike, Result, TargetLike
from ..baselines import format_baselines
from ..errors import Shown, check_positive_int, fail
from ..structure import Tensors
from .evaluate import Evaluator, differentiable, in_chunks, prepare, replace
from .features import Features, features_of
from .progress import Progress

MAX_EXACT_FEATURES = 20


def permutations(generator: torch.Generator, n_samples: int, n_features: int) -> torch.Tensor:
    """``(n_samples, n_features)`` uniformly random orders of ``n_features`` items (features, or examples to
    shuffle: :func:`.permutation.shuffles`), drawn from ``generator``."""
    u = randomness.uniform(generator, (n_samples, n_features), dtype=torch.float64, device=generator.device)
    return u.argsort(dim=1)


def _coalitions(evaluate: Evaluator, xs: Tensors, bases: Tensors, features: Features, keep: torch.Tensor,
                ppe: int, progress: Progress) -> torch.Tensor:
    """``f`` on the inputs with the features of each row of ``keep`` ``(P, n)`` kept and the others at
    their baseline: ``(P, R)``."""
    def rows(start: int, stop: int) -> Tensors:
        return replace(xs, bases, [~k for k in features.kept(keep[start:stop])])

    return in_chunks(evaluate, rows, keep.shape[0], ppe, progress)


def shapley_value_sampling(f: ModelLike, inputs: InputsLike, baselines: BaselinesLike = None, *,
                           target: TargetLike = None, args: ArgsLike = (), kwargs: KwargsLike = None,
                           feature_mask: FeatureMaskLike = None, n_features: Optional[int] = None,
                           n_samples: int = 25, perturbations_per_eval: int = 1,
                           generator: Optional[torch.Generator] = None, show_progress: bool = False) -> Result:
    """Shapley value sampling (Captum's ``ShapleyValueSampling``).

    For each of ``n_samples`` random orders of the features, the features are switched
    from their baseline to their input value one at a time, and each gets the change of
    the output it causes; attributions average over the orders (an unbiased estimate of
    the Shapley values of the game ``v(S) = f(x_S, baseline_rest)[target]``)::

        attr_i = mean over orders pi of  v(pi_<i + {i}) - v(pi_<i)

    The orders are shared by all examples (as in Captum). Every coalition of every order is
    one perturbed copy of the batch, ``perturbations_per_eval`` per call of ``f``; the sum of
    an example's attributions is exactly ``f(x) - f(baseline)``.

    Args:
      f, inputs, baselines, target, args, kwargs, feature_mask, perturbations_per_eval, show_progress: as
        in :func:`fattr.feature_ablation`.
      n_features: as in :func:`fattr.feature_ablation`. An id without elements is a null player: the
        estimates of the others keep their distribution, but the orders are drawn over ``n_features``
        features (other draws than without it).
      n_samples: the number of random orders.
      generator: the ``torch.Generator`` the orders are drawn from.

    Returns:
      Attributions shaped like the inputs (a batch dim of 1 in aggregate mode).

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
      >>> x = torch.randn(5, 4)
      >>> attr = fattr.shapley_value_sampling(model, x, target=2, n_samples=10, perturbations_per_eval=8,
      ...                                     generator=torch.Generator().manual_seed(0))
      >>> bool(torch.allclose(attr.sum(1), model(x)[:, 2] - model(torch.zeros(1, 4))[0, 2], atol=1e-5))
      True
    """
    xs, was_tuple, ppe, args, tgt = prepare(inputs, target, args, kwargs, perturbations_per_eval, show_progress)
    bases = format_baselines(baselines, xs)
    features = features_of(feature_mask, xs, n_features=n_features)
    s = check_positive_int("n_samples", n_samples)
    f_count = features.n
    orders = permutations(randomness.resolve(generator), s, f_count).to(xs[0].device)
    rank = orders.argsort(dim=1)  # rank[s, j]: position of feature j in order s
    steps = torch.arange(max(f_count - 1, 0), device=xs[0].device)
    # every intermediate coalition: order s with its first k+1 features kept (the last one, all kept, is x)
    keep = (rank.unsqueeze(1) <= steps.reshape(1, -1, 1)).reshape(-1, f_count)

    def compute(xs_: Tensors, bases_: Tensors, evaluate: Evaluator, ref: torch.Tensor) -> Tensors:
        with Progress(1 + -(-keep.shape[0] // ppe), "shapley_value_sampling", show_progress) as progress:
            empty = _coalitions(evaluate, xs_, bases_, features, keep[:0].new_zeros(1, f_count), 1, progress)
            middle = _coalitions(evaluate, xs_, bases_, features, keep, ppe, progress).to(ref.device)
        r = ref.shape[0]
        chain = torch.cat([empty.to(ref.device).expand(s, r).unsqueeze(1),
                           middle.reshape(s, f_count - 1, r), ref.expand(s, r).unsqueeze(1)], dim=1)
        # (R, s * n): the gain of orders[s, k]
        gains = (chain[:, 1:] - chain[:, :-1]).permute(2, 0, 1).reshape(r, s * f_count)
        per_feature = torch.zeros((r, f_count), dtype=gains.dtype, device=gains.device)
        per_feature = per_feature.index_add(1, orders.reshape(-1), gains) / s
        return features.scatter(per_feature, xs_)

    return structure.restore(differentiable(compute, f, xs, bases, tgt, args, ppe), was_tuple)


def shapley_values(f: ModelLike, inputs: InputsLike, baselines: BaselinesLike = None, *, target: TargetLike = None,
                   args: ArgsLike = (), kwargs: KwargsLike = None, feature_mask: FeatureMaskLike = None,
                   n_features: Optional[int] = None, perturbations_per_eval: int = 1,
                   show_progress: bool = False) -> Result:
    """Exact Shapley values of the features (Captum's ``ShapleyValues``).

    The game is ``v(S) = f(x_S, baseline_rest)[target]``; each feature gets

        attr_i = sum over S not containing i of  |S|! (n - |S| - 1)! / n! * (v(S + {i}) - v(S))

    computed from the ``2^n`` coalitions, each evaluated once (Captum runs every one of the
    ``n!`` orders, ``n`` evaluations each: the same values, from ``n * n!`` calls). Meant for few
    features (group them with ``feature_mask``); more than 20 are refused.

    Args:
      f, inputs, baselines, target, args, kwargs, feature_mask, show_progress: as in
        :func:`fattr.feature_ablation`.
      n_features: as in :func:`fattr.feature_ablation`; an id without elements is a null player (the
        values of the others are unchanged; each doubles the evaluations).
      perturbations_per_eval: coalitions (copies of the batch) per call of ``f``.

    Returns:
      Attributions shaped like the inputs (a batch dim of 1 in aggregate mode); an example's
      attributions sum to ``f(x) - f(baseline)``.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
      >>> x = torch.randn(4, 3)
      >>> attr = fattr.shapley_values(model, x, target=0, perturbations_per_eval=8)
      >>> bool(torch.allclose(attr.sum(1), model(x)[:, 0] - model(torch.zeros(1, 3))[0, 0], atol=1e-5))
      True
    """
    xs, was_tuple, ppe, args, tgt = prepare(inputs, target, args, kwargs, perturbations_per_eval, show_progress)
    bases = format_baselines(baselines, xs)
    features = features_of(feature_mask, xs, n_features=n_features)
    m = features.n
    if m > MAX_EXACT_FEATURES:
        fail("feature_mask" if n_features is None else "n_features", f"at most {MAX_EXACT_FEATURES} features for "
             "exact Shapley values (2^n evaluations); group elements into features or use shapley_value_sampling",
             Shown(f"{m} features"))
    if m > 12:
        warnings.warn(f"shapley_values: {m} features need {2 ** m} evaluations of f", stacklevel=2)
    device = xs[0].device
    codes = torch.arange(2 ** m, device=device)
    bit = 2 ** torch.arange(m, device=device)
    keep = (codes.unsqueeze(1) & bit) != 0  # (2^m, m): coalition c keeps feature j
    size = keep.sum(1)
    weight = torch.tensor([math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m) if k < m else 0.0
                           for k in range(m + 1)], dtype=torch.float64, device=device)

    def compute(xs_: Tensors, bases_: Tensors, evaluate: Evaluator, ref: torch.Tensor) -> Tensors:
        with Progress(-(-(2 ** m - 1) // ppe), "shapley_values", show_progress) as progress:
            values = _coalitions(evaluate, xs_, bases_, features, keep[:-1], ppe, progress).to(ref.device)
        values = torch.cat([values, ref.unsqueeze(0)])  # the full coalition is x itself
        without = ~keep  # (2^m, m): pairs (c, j) with j not in c
        gains = values[codes.unsqueeze(1) | bit] - values.unsqueeze(1)  # (2^m, m, R)
        w = (weight[size].unsqueeze(1) * without).to(gains.dtype)  # (2^m, m)
        return features.scatter(torch.einsum("cj,cjr->rj", w, gains), xs_)

    return structure.restore(differentiable(compute, f, xs, bases, tgt, args, ppe), was_tuple)
