"""Deletion and insertion curves (Petsiuk et al., BMVC 2018): faithfulness of an attribution order."""
from __future__ import annotations

from typing import Any, Callable, Tuple

import torch

from .. import structure
from ..arguments import boundary, tile_args
from ..base import ArgsLike, Attributions, BaselinesLike, FeatureMaskLike, InputsLike, KwargsLike, ModelLike, TargetLike
from ..baselines import format_baselines
from ..errors import check_positive_int
from ..gradients import outputs
from ..perturbation.features import Features, group_ids
from .randomization import ranks


def _curve(f: Callable[..., Any], inputs: Any, attributions: Any, *, target: Any, args: Any, kwargs: Any,
           baselines: Any, n_steps: int, feature_mask: Any, delete: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    xs, was_tuple, tgt, args = boundary(f, inputs, target, args, kwargs)
    attrs = structure.like_inputs(attributions, xs, was_tuple)
    n_steps = check_positive_int("n_steps", n_steps)
    bases = format_baselines(baselines, xs)
    n, device = xs[0].shape[0], xs[0].device
    features = Features.of(group_ids(feature_mask, xs))  # dense ids 0..F-1 in increasing order of the user's
    batch = max(i.shape[0] for i in features.index)
    ids = torch.cat([structure.flat(i.expand((batch,) + tuple(x.shape[1:]))) for i, x in zip(features.index, xs)],
                    1).expand(n, -1)  # (B, D): the feature of every element, all inputs' elements side by side
    n_features = features.n
    with torch.no_grad():  # the order is a discrete choice: no gradient flows through it
        scores = torch.zeros(n, n_features, dtype=torch.float64, device=device)
        scores.scatter_add_(1, ids, torch.cat([a.reshape(n, -1) for a in attrs], 1).to(torch.float64))
        element_rank = ranks(-scores).gather(1, ids)  # (B, D): each element's feature's rank, highest first
    k = n_steps + 1
    counts = torch.tensor([(i * n_features) // n_steps for i in range(k)], device=device)
    changed = element_rank.unsqueeze(0) < counts.reshape(-1, 1, 1)  # (K, B, D): features moved at point k
    if not delete:
        changed = ~changed
    masks = torch.split(changed, [structure.example_size(x) for x in xs], dim=2)  # per input, (K, B, its elements)
    rows = tuple(structure.fold(torch.where(m.reshape((k,) + tuple(x.shape)), b.expand_as(x), x.unsqueeze(0)))
                 for m, x, b in zip(masks, xs, bases))
    curve = outputs(f, rows, tgt.tile(k), tile_args(args, n, k)).reshape(k, n).t()
    return curve, (curve.sum(1) - 0.5 * (curve[:, 0] + curve[:, -1])) / n_steps


_DOC = """{title}

    Features are ranked by their attribution, highest (most positive) first (a ``feature_mask``
    group by the sum of its elements' attributions; ties by feature index). Point ``k`` of the curve
    ({what}) {how} the first ``floor(k * F / n_steps)`` of the ``F`` features, so point 0 is the
    {first} and point ``n_steps`` the {last}. The curve is the selected output of ``f`` (what
    ``target`` selects: logits if ``f`` returns logits); ``auc`` is its area over [0, 1] by the
    trapezoid rule. {good} All ``(n_steps + 1) * B`` points go through ``f`` in one call; the
    curve is differentiable with respect to what ``f`` depends on (not through the order).

    Args:
      f: callable ``f(*inputs, *args)`` returning a tensor with examples along dim 0.
      inputs: a tensor ``(B, ...)`` or a tuple of them (features of all inputs ranked together).
      attributions: shaped like ``inputs``.
      target, args, kwargs: as in :func:`fattr.integrated_gradients`.
      baselines: the value of a removed feature: a number, a tensor or a tuple (baseline grammar).
      n_steps: points after the first (``n_steps + 1`` in all).
      feature_mask: None (every element a feature), or integer group ids broadcastable to each
        input (a tuple for tuple inputs; ids shared across inputs form one feature).

    Returns:
      ``(curve, auc)``: ``(B, n_steps + 1)`` and ``(B,)``.

    Example:
      >>> import torch, fattr
      >>> w = torch.tensor([3.0, -1.0, 2.0, 0.5])
      >>> f = lambda x: x @ w
      >>> x = torch.ones(1, 4)
      >>> curve, auc = fattr.metrics.{name}(f, x, x * w, n_steps=4)
      >>> curve
      {curve}
      >>> auc
      {auc}

    References:
      Petsiuk, Das, Saenko. "RISE: Randomized Input Sampling for Explanation of Black-box Models".
      BMVC 2018.
    """


def deletion(f: ModelLike, inputs: InputsLike, attributions: Attributions, *, target: TargetLike = None,
             args: ArgsLike = (), kwargs: KwargsLike = None, baselines: BaselinesLike = 0.0, n_steps: int = 20,
             feature_mask: FeatureMaskLike = None) -> Tuple[torch.Tensor, torch.Tensor]:
    return _curve(f, inputs, attributions, target=target, args=args, kwargs=kwargs, baselines=baselines,
                  n_steps=n_steps, feature_mask=feature_mask, delete=True)


def insertion(f: ModelLike, inputs: InputsLike, attributions: Attributions, *, target: TargetLike = None,
              args: ArgsLike = (), kwargs: KwargsLike = None, baselines: BaselinesLike = 0.0, n_steps: int = 20,
              feature_mask: FeatureMaskLike = None) -> Tuple[torch.Tensor, torch.Tensor]:
    return _curve(f, inputs, attributions, target=target, args=args, kwargs=kwargs, baselines=baselines,
                  n_steps=n_steps, feature_mask=feature_mask, delete=False)


deletion.__doc__ = _DOC.format(
    title="Deletion curve: the output as the most important features are replaced by the baseline.",
    what="deletion", how="replaces by the baseline", first="input itself", last="baseline",
    good="A faithful attribution makes the output fall fast: a low AUC is better.", name="deletion",
    curve="tensor([[ 4.5000,  1.5000, -0.5000, -1.0000,  0.0000]])", auc="tensor([0.5625])")
insertion.__doc__ = _DOC.format(
    title="Insertion curve: the output as the most important features are restored from the baseline.",
    what="insertion", how="restores from the baseline", first="baseline", last="input itself",
    good="A faithful attribution makes the output rise fast: a high AUC is better.", name="insertion",
    curve="tensor([[0.0000, 3.0000, 5.0000, 5.5000, 4.5000]])", auc="tensor([3.9375])")
