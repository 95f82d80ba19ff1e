"""Permutation feature importance at a layer: shuffle groups of neurons across the batch, measure the
output's change.

The shuffles are the input-space ones (:mod:`..perturbation.permutation`) applied to the tail of the
split model, with the layer's activation as its input; the head runs once."""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch

from .. import randomness
from ..arguments import boundary
from ..base import (ArgsLike, FeatureMaskLike, InputsLike, KwargsLike, LayerLike, ModelLike, ResultOrList,
                    TargetLike)
from ..errors import check_callable, check_optional_positive_int, check_positive_int, fail
from ..perturbation.evaluate import Evaluator
from ..perturbation.features import features_of
from ..perturbation.permutation import Replayed, permute_each, shuffles
from ..perturbation.progress import Progress
from ..structure import Tensors
from .feature_ablation import numbered, on_tail
from .view import LayerFunction


def _shuffles(state: torch.Tensor, device: torch.device, n_features: int, n: int
              ) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`shuffles` from a generator in ``state``, and its state after the draws."""
    g = torch.Generator(device=device)
    g.set_state(state)
    return shuffles(g, n_features, n), g.get_state()


def layer_feature_permutation(model: ModelLike, layer: LayerLike, inputs: InputsLike, *, target: TargetLike = None,
                              args: ArgsLike = (), kwargs: KwargsLike = None, layer_mask: FeatureMaskLike = None,
                              n_features: Optional[int] = None, perturbations_per_eval: int = 1,
                              attribute_to_layer_input: bool = False, generator: Optional[torch.Generator] = None,
                              perm_func: Optional[Callable[..., Any]] = None) -> ResultOrList:
    """Permutation feature importance at a layer (Captum's ``LayerFeaturePermutation``).

    Each group of neurons (each neuron, or the groups of ``layer_mask``) in turn has its values
    shuffled across the examples of the batch in the layer's activation (a random permutation
    ``pi`` of the examples, not the identity), and its attribution is the output's drop::

        attr_i(x)_b = f(x)[target]_b - f(x with group(i) of example b's activation taken from example pi(b))[target]_b

    given to every neuron of the group. As :func:`fattr.feature_permutation` on the layer's
    activation: ``f`` may return one value for the whole batch (a loss or a metric, ``target=None``:
    Captum's aggregate mode; attributions then have a batch dim of 1), and a group spanning several
    tensors of the layer is shuffled with one permutation in all of them. The head runs once; the
    shuffles run through the tail only, ``perturbations_per_eval`` of them per batched call.

    Args:
      model, layer, args, kwargs, attribute_to_layer_input: as in :func:`fattr.layer_feature_ablation`.
      inputs: a tensor ``(B, ...)`` with ``B >= 2`` (or ``B == 0``: empty attributions), or a tuple of them.
      target: the output to attribute (None, int, tuple, or one entry per example).
      layer_mask, n_features: as in :func:`fattr.layer_feature_ablation` (group ids broadcastable to the
        activation, a batch of 1 or B; None: every neuron on its own).
      perturbations_per_eval: shuffled copies of the activation per tail call (1 in aggregate mode).
      generator: the ``torch.Generator`` the permutations are drawn from (group ``i`` gets the ``i``-th
        permutation :func:`fattr.feature_permutation` would draw from it).
      perm_func: Captum's ``perm_func(x, mask) -> x_perturbed`` instead of the shuffles, called for every
        group and every tensor of the activation holding it (``generator`` is then unused).

    Returns:
      Attributions shaped like the layer's activation (a tuple for several tensors; a batch dim of 1
      in aggregate mode), in the model output's dtype.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
      >>> x, y = torch.randn(16, 3), torch.randn(16, 1)
      >>> loss = lambda x, y: torch.nn.functional.mse_loss(model(x), y)   # one value for the batch
      >>> g = torch.Generator().manual_seed(0)
      >>> fattr.layer_feature_permutation(loss, model[1], x, args=(y,), generator=g).shape   # the loss's row
      torch.Size([1, 4])
      >>> fattr.layer_feature_permutation(model, model[1], x, target=0, layer_mask=torch.tensor([[0, 0, 1, 1]]),
      ...                                 perturbations_per_eval=2, generator=g).shape
      torch.Size([16, 4])
    """
    xs, _, tgt, args = boundary(model, inputs, target, args, kwargs, "model")
    ppe = check_positive_int("perturbations_per_eval", perturbations_per_eval)
    check_callable("perm_func", perm_func, optional=True)
    n_features = check_optional_positive_int("n_features", n_features)  # before the draws it sizes
    n = xs[0].shape[0]
    if n == 1:  # no examples is fine (empty attributions); one cannot be shuffled
        fail("inputs", "at least 2 examples (the layer's neurons are shuffled across the batch)", xs[0])
    replayed = None if perm_func is None else Replayed(perm_func)
    layer_mask, n_features = numbered(layer_mask, n_features)
    g = randomness.resolve(generator)
    # with a mask the number of groups is known before the head runs: the permutations are drawn now, as
    # feature_permutation draws them; without, it is the activation's size, so they are drawn in the pass, from
    # a copy of g's state (a recomputation draws the same ones), and g moves on as if it had drawn them
    perms: Optional[torch.Tensor] = None
    start: Optional[torch.Tensor] = None
    if replayed is None and n_features is not None:
        perms = randomness.drawn(shuffles, g, n_features, n)
    elif replayed is None:
        start = randomness.drawn(g.get_state)

    def compute(acts: Tensors, _: Tensors, evaluate: Evaluator, ref: torch.Tensor
                ) -> Tuple[Tensors, Optional[torch.Tensor]]:
        features = features_of(layer_mask, acts, "layer_mask", n_features=n_features)
        drawn, end = (perms, None) if start is None else randomness.drawn(_shuffles, start, g.device, features.n, n)
        drawn = None if drawn is None else drawn.to(acts[0].device)
        return permute_each(evaluate, acts, features, drawn, ref, ppe, Progress(0, "", False), replayed), end

    lf = LayerFunction(model, layer, attribute_to_layer_input)
    result, end = on_tail(lf, xs, tgt, args, (), compute, ppe)
    if end is not None:
        randomness.drawn(g.set_state, end)
    if replayed is not None:
        replayed.finish()
    return result
