"""Feature ablation: replace each feature by its baseline and measure the output's change."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .. import structure
from ..base import ArgsLike, BaselinesLike, FeatureMaskLike, InputsLike, KwargsLike, ModelLike, Result, TargetLike
from ..baselines import format_baselines
from ..structure import Tensors
from .evaluate import Evaluator, differentiable, in_chunks, prepare, replace
from .features import Features, features_of
from .progress import Progress


def ablate_each(evaluate: Evaluator, xs: Tensors, bases: Sequence[torch.Tensor], features: Features,
                reference: torch.Tensor, ppe: int, progress: Progress) -> Tensors:
    """``reference`` minus ``f`` with each feature at its baseline (``ppe`` features per call), given to
    every element of the feature: per input ``(R, *x.shape[1:])``, ``R`` the rows of ``reference``."""
    outs = in_chunks(evaluate, lambda start, stop: replace(xs, bases, features.selected(start, stop)),
                     features.n, ppe, progress)  # (n_features, R)
    return features.scatter((reference.unsqueeze(0) - outs.to(reference.device)).t(), xs)


def feature_ablation(f: ModelLike, inputs: InputsLike, baselines: BaselinesLike = None, *, target: TargetLike = None,
                     args: ArgsLike = (), kwargs: KwargsLike = None, feature_mask: FeatureMaskLike = None,
                     n_features: Optional[int] = None, perturbations_per_eval: int = 1,
                     show_progress: bool = False) -> Result:
    """Feature ablation (Captum's ``FeatureAblation``).

    Each feature (each input element, or each group of ``feature_mask``) in turn is
    replaced by its baseline, and its attribution is the drop of the output::

        attr_i(x) = f(x)[target] - f(x with feature(i) <- baseline)[target]

    given to every element of the feature. All copies are batched:
    ``perturbations_per_eval`` ablated copies of the whole batch per call of ``f``.

    Args:
      f: a callable ``f(*inputs, *args, **kwargs)`` with examples along dim 0; it may also
        return one value for the whole batch (``target=None``; Captum's aggregate mode).
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      baselines: None (zeros), a number, a tensor of the input's shape or with a batch of 1,
        or a tuple of those, one per input.
      target: the output to attribute (None, int, tuple, or one entry per example).
      args: extra positional arguments of ``f``; kwargs: extra keyword arguments.
      feature_mask: integer feature ids broadcastable to each input (a batch of 1 or B; a tuple,
        one per input; ids may be shared across inputs). None: every element its own feature.
      n_features: the number of features, given statically so that a masked call compiles into one
        graph (``torch.compile(fullgraph=True)``): the mask's ids are then the features' indices, in
        ``[0, n_features)``; an id without elements changes nothing (its ablation is still evaluated).
        None: counted from the mask's values.
      perturbations_per_eval: ablated copies of the batch evaluated in one call of ``f``.
      show_progress: a progress bar on stderr.

    Returns:
      Attributions shaped like the inputs (a batch dim of 1 in aggregate mode, or one row per
      element of ``f``'s output), in the output's dtype.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
      >>> x = torch.randn(5, 4)
      >>> fattr.feature_ablation(model, x, target=1, feature_mask=torch.tensor([[0, 0, 1, 1]]),
      ...                        perturbations_per_eval=2).shape
      torch.Size([5, 4])
    """
    xs, was_tuple, ppe, args, tgt = prepare(inputs, target, args, kwargs, perturbations_per_eval, show_progress)
    bases = format_baselines(baselines, xs)
    features = features_of(feature_mask, xs, n_features=n_features)

    def compute(xs_: Tensors, bases_: Tensors, evaluate: Evaluator, ref: torch.Tensor) -> Tensors:
        with Progress(-(-features.n // ppe), "feature_ablation", show_progress) as progress:
            return ablate_each(evaluate, xs_, bases_, features, ref, ppe, progress)

    return structure.restore(differentiable(compute, f, xs, bases, tgt, args, ppe), was_tuple)
