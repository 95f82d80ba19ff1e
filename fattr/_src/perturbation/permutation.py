"""Permutation feature importance: shuffle each feature across the batch, measure the output's change."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional

import torch

from .. import randomness, structure
from ..base import ArgsLike, FeatureMaskLike, InputsLike, KwargsLike, ModelLike, Result, TargetLike
from ..errors import check_callable, fail
from ..structure import Tensors
from .evaluate import Evaluator, differentiable, in_chunks, prepare, replace
from .features import Features, features_of
from .progress import Progress
from .shapley import permutations


def shuffles(generator: torch.Generator, n_features: int, n_examples: int) -> torch.Tensor:
    """``(n_features, n_examples)``: a random permutation of the examples per feature, never the identity
    (drawn again where it is, as Captum does); for no examples, the only (empty) permutation."""
    perms = permutations(generator, n_features, n_examples)
    if n_examples == 0:  # nothing to shuffle, and no other permutation to draw
        return perms
    identity = torch.arange(n_examples, device=perms.device)
    while True:
        same = (perms == identity).all(1)
        if not bool(same.any()):
            return perms
        perms[same] = permutations(generator, int(same.sum()), n_examples)


class Replayed:
    """A user's ``perm_func`` whose draws from torch's global (CPU) generator, like Captum's default one's, are
    the same at every run of the computation: each run starts from the generator's state when this was made,
    and :meth:`finish` leaves the generator where the first run left it, as if ``perm_func`` had run once.
    (A recomputation in backward restores the global generator itself; a forward run again to keep its
    graph, as a layer method's fallback capture does for a function reading tensors outside it, does not.)"""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.start = torch.get_rng_state()
        self.end: Optional[torch.Tensor] = None

    @contextlib.contextmanager
    def replaying(self) -> Iterator[None]:
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.start)
            yield
            if self.end is None:
                self.end = torch.get_rng_state()

    def finish(self) -> None:
        if self.end is not None:
            torch.set_rng_state(self.end)


def permute_each(evaluate: Evaluator, xs: Tensors, features: Features, perms: Optional[torch.Tensor],
                 reference: torch.Tensor, ppe: int, progress: Progress, perm_func: Optional[Replayed] = None
                 ) -> Tensors:
    """``reference`` minus ``f`` with each feature shuffled across the examples (feature ``i`` by
    ``perms[i]``, ``(n_features, B)``; or by ``perm_func(x, mask)``), ``ppe`` features per call, given to
    every element of the feature: per input ``(R, *x.shape[1:])``, ``R`` the rows of ``reference``."""
    def rows(start: int, stop: int) -> Tensors:
        selected = features.selected(start, stop)
        if perm_func is not None:  # per input (p, B, ...): perm_func(x, mask) for the features it holds
            fn = perm_func.fn
            return tuple(torch.stack([(fn(x, mask) if bool(mask.any()) else x).expand_as(x) for mask in s])
                         for x, s in zip(xs, selected))  # a mask per feature, (1 or B, ...)
        assert perms is not None  # (internal: drawn by the caller when there is no perm_func)
        return replace(xs, [x[perms[start:stop]] for x in xs], selected)

    with perm_func.replaying() if perm_func is not None else contextlib.nullcontext():
        outs = in_chunks(evaluate, rows, features.n, ppe, progress).to(reference.device)
    return features.scatter((reference.unsqueeze(0) - outs).t(), xs)


def feature_permutation(f: ModelLike, inputs: InputsLike, *, target: TargetLike = None, args: ArgsLike = (),
                        kwargs: KwargsLike = None, feature_mask: FeatureMaskLike = None,
                        n_features: Optional[int] = None, perturbations_per_eval: int = 1,
                        generator: Optional[torch.Generator] = None, perm_func: Optional[Callable[..., Any]] = None,
                        show_progress: bool = False) -> Result:
    """Permutation feature importance (Captum's ``FeaturePermutation``).

    Each feature in turn has its values shuffled across the examples of the batch (a random
    permutation ``pi``, not the identity), and its attribution is the output's drop::

        attr_i(x)_b = f(x)[target]_b - f(x with feature(i) of example b taken from example pi(b))[target]_b

    Usually ``f`` returns one value for the whole batch (a loss or a metric: Captum's
    aggregate mode), giving attributions with a batch dim of 1. A feature spanning several
    inputs (shared ids in ``feature_mask``) is shuffled with one permutation in all of them.
    ``perturbations_per_eval`` shuffled copies of the batch per call of ``f``.

    Args:
      f, target, args, kwargs, feature_mask, show_progress: as in :func:`fattr.feature_ablation`.
      inputs: a tensor ``(B, ...)`` with ``B >= 2`` (or ``B == 0``: empty attributions), or a tuple of them.
      n_features: as in :func:`fattr.feature_ablation`; feature ``i`` gets the ``i``-th permutation drawn,
        so an id without elements changes only which draws the others get.
      perturbations_per_eval: shuffled copies of the batch per call (1 in aggregate mode).
      generator: the ``torch.Generator`` the permutations are drawn from.
      perm_func: Captum's ``perm_func(x, feature_mask) -> x_perturbed`` instead of the shuffles: called
        for every feature and every input holding it, with one input ``(B, ...)`` and the feature's
        boolean mask (``generator`` is then unused).

    Returns:
      Attributions shaped like the inputs (a batch dim of 1 in aggregate mode).

    Example:
      >>> import torch, fattr
      >>> w = torch.tensor([[1.0], [0.0], [2.0], [0.0]])  # the model ignores features 1 and 3
      >>> x, y = torch.randn(16, 4), torch.randn(16, 1)
      >>> loss = lambda x: torch.nn.functional.mse_loss(x @ w, y)
      >>> attr = fattr.feature_permutation(loss, x, generator=torch.Generator().manual_seed(0))
      >>> attr.shape, attr[0, 1].item(), attr[0, 3].item()
      (torch.Size([1, 4]), 0.0, 0.0)
    """
    xs, was_tuple, ppe, args, tgt = prepare(inputs, target, args, kwargs, perturbations_per_eval, show_progress)
    n = xs[0].shape[0]
    if n == 1:  # no examples is fine (empty attributions); one cannot be shuffled
        fail("inputs", "at least 2 examples (features are shuffled across the batch)", xs[0])
    check_callable("perm_func", perm_func, optional=True)
    features = features_of(feature_mask, xs, n_features=n_features)
    replayed = None if perm_func is None else Replayed(perm_func)
    perms = None if replayed is not None else shuffles(randomness.resolve(generator), features.n, n).to(xs[0].device)

    def compute(xs_: Tensors, _: Tensors, evaluate: Evaluator, ref: torch.Tensor) -> Tensors:
        with Progress(-(-features.n // ppe), "feature_permutation", show_progress) as progress:
            return permute_each(evaluate, xs_, features, perms, ref, ppe, progress, replayed)

    result = differentiable(compute, f, xs, (), tgt, args, ppe)
    if replayed is not None:
        replayed.finish()
    return structure.restore(result, was_tuple)
