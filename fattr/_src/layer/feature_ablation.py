"""Feature ablation at a layer: replace groups of neurons by a baseline, measure the output's change.

The ablation itself is the input-space one (:mod:`..perturbation.ablation`) applied to the tail of
the split model, with the layer's activation as its input."""
from __future__ import annotations

from numbers import Number
from typing import Any, Callable, List, Optional, Tuple, cast

import torch

from ..arguments import boundary, split_args
from ..base import (ArgsLike, BaselinesLike, FeatureMaskLike, InputsLike, KwargsLike, LayerLike, ModelLike,
                    ResultOrList, TargetLike)
from ..errors import check_positive_int, fail
from ..gradients import outputs
from ..perturbation.ablation import ablate_each
from ..perturbation.evaluate import Evaluator, reference
from ..perturbation.features import Features, features_of, per_tensor
from ..perturbation.progress import Progress
from ..recompute import checkpoint_aux, reads
from ..structure import Tensors
from ..targets import Target
from .view import LayerFunction


def _baselines(layer_baselines: Any, acts: Tensors) -> List[torch.Tensor]:
    out = []
    for i, (b, a) in enumerate(zip(per_tensor(layer_baselines, acts, "layer_baselines"), acts)):
        name = f"layer_baselines[{i}]" if isinstance(layer_baselines, tuple) else "layer_baselines"
        if b is None or (isinstance(b, Number) and not isinstance(b, bool)):
            b = torch.tensor(0 if b is None else b, dtype=a.dtype, device=a.device)
        elif not isinstance(b, torch.Tensor):
            fail(name, "None, a number or a tensor in the layer's activation space", b, kind=TypeError)
        b = b.to(a.dtype)
        try:
            out.append(torch.broadcast_to(b.to(a.device), a.shape))
        except RuntimeError:
            fail(name, f"a tensor broadcastable to the layer's activation of shape {tuple(a.shape)}", b)
    return out


def numbered(mask: Any, n_features: Optional[int]) -> Tuple[Any, Optional[int]]:
    """``mask``'s ids numbered ``0 .. n-1`` and their number ``n``, counted before the checkpoint: the
    count is a graph break under Dynamo (``torch.unique``), which inside the checkpoint's recomputed
    pass breaks the whole call into pieces (3x slower compiled than eager). The set of ids does not
    depend on the activation's shape (broadcasting repeats ids). Masks to be rejected, or given
    ``n_features``, pass unchanged to :func:`features_of`, which checks them against the activation."""
    masks = mask if isinstance(mask, tuple) else (mask,)
    if n_features is not None or not masks or any(
            not isinstance(m, torch.Tensor) or m.dtype.is_floating_point or m.dtype.is_complex
            or m.dtype == torch.bool or m.device != masks[0].device for m in masks):
        return mask, n_features
    found = Features.of(tuple(m.long() for m in masks))
    if found.n == 0:
        return mask, n_features
    return (found.index if isinstance(mask, tuple) else found.index[0]), found.n


def layer_feature_ablation(model: ModelLike, layer: LayerLike, inputs: InputsLike,
                           layer_baselines: BaselinesLike = None, *, target: TargetLike = None, args: ArgsLike = (),
                           kwargs: KwargsLike = None, layer_mask: FeatureMaskLike = None,
                           n_features: Optional[int] = None, perturbations_per_eval: int = 1,
                           attribute_to_layer_input: bool = False) -> ResultOrList:
    """Feature ablation at a layer (Captum's LayerFeatureAblation).

    Each group of neurons (each neuron, or the groups of ``layer_mask``) is
    replaced by ``layer_baselines`` in the layer's activation, and its
    attribution is ``model(x)[target]`` minus the output with the group ablated,
    given to every neuron of the group. The head runs once; the ablations run
    through the tail only, ``perturbations_per_eval`` of them per batched call.

    Args:
      model: the ``nn.Module``.
      layer: a submodule of ``model`` or its dotted name.
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      layer_baselines: the replacement values, in the layer's activation space:
        None (zeros), a number, or a tensor broadcastable to the activation (a
        tuple of these for a layer with several tensors).
      target: the output to attribute (None, int, tuple, or one entry per example). With None, ``model``
        may return one value for the whole batch (a loss: Captum's aggregate mode; attributions then have
        a batch dim of 1, and ``perturbations_per_eval`` must be 1).
      args: extra positional arguments of ``model``.
      layer_mask: integer group ids broadcastable to the activation (neurons with
        the same id are ablated together; ids may be shared across the tensors of
        a tuple activation). None: every neuron on its own.
      n_features: the number of groups, given statically (as in :func:`fattr.feature_ablation`): the
        ids of ``layer_mask`` must then lie in ``[0, n_features)``.
      perturbations_per_eval: ablations evaluated together in one tail call.
      attribute_to_layer_input: ablate the layer's input instead of its output.

    Returns:
      Attributions shaped like the layer's activation (a tuple for several
      tensors), in the model output's dtype.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
      >>> x = torch.randn(5, 3)
      >>> mask = torch.tensor([[0, 0, 1, 1]])        # two groups of two neurons
      >>> fattr.layer_feature_ablation(model, "1", x, target=0, layer_mask=mask,
      ...                              perturbations_per_eval=2).shape
      torch.Size([5, 4])
    """
    xs, _, tgt, args = boundary(model, inputs, target, args, kwargs, "model")
    ppe = check_positive_int("perturbations_per_eval", perturbations_per_eval)
    many = isinstance(layer_baselines, tuple)
    base_tensors, rebuild_bases = split_args(cast(Tuple[Any, ...], layer_baselines) if many else (layer_baselines,))
    layer_mask, n_features = numbered(layer_mask, n_features)

    def compute(acts: Tensors, given: Tensors, evaluate: Evaluator, ref: torch.Tensor) -> Tuple[Tensors, None]:
        rebuilt = rebuild_bases(given)
        bases = _baselines(rebuilt if many else rebuilt[0], acts)
        features = features_of(layer_mask, acts, "layer_mask", n_features=n_features)
        return ablate_each(evaluate, acts, bases, features, ref, ppe, Progress(0, "", False)), None

    lf = LayerFunction(model, layer, attribute_to_layer_input)
    return on_tail(lf, xs, tgt, args, base_tensors, compute, ppe)[0]


def on_tail(lf: LayerFunction, xs: Tensors, target: Target, args: Tuple[Any, ...], extra: Tensors,
            compute: Callable[[Tensors, Tensors, Evaluator, torch.Tensor], Tuple[Tensors, Any]], ppe: int
            ) -> Tuple[ResultOrList, Any]:
    """``compute(activations, extra, evaluate, reference) -> (flat attributions, aux)`` on the layer's
    activation for ``xs``, in one checkpoint (differentiable on demand with respect to ``xs``, the tensor
    ``args``, ``extra`` and the model's parameters): the head runs once, ``evaluate`` runs the tail on
    perturbed copies of the activation, ``reference`` is the tail's output at the activation. Returns the
    attributions in the activation's structure and the first run's ``aux``.

    With ``target=None``, ``f`` may return one value for the whole batch (Captum's aggregate mode; then
    ``ppe``, the perturbations per tail call, must be 1). With a target, the reference is a forward pass of
    its own (:func:`.gradients.outputs`: compiled, from an inference graph)."""
    n, m = xs[0].shape[0], len(xs)
    f = lf.function()
    arg_tensors, rebuild = split_args(args)
    k = m + len(arg_tensors)

    def run(tensors: Tensors, lf: LayerFunction = lf) -> Tuple[Tensors, Tuple[Any, ...]]:
        acts, rest = lf.head(tensors[:m], rebuild(tensors[m:k]), gradient=False)
        with torch.enable_grad():  # (without grad in a graph-free pass: the tails' fast paths)
            ref, whole = (reference(f, acts, target, rest) if target.is_none
                          else (outputs(f, acts, target, rest), False))
        reads(ref)
        if whole and ppe > 1:
            fail("perturbations_per_eval", "1 when f returns one value for the whole batch (aggregate mode: "
                 "copies of the batch cannot share a call)", ppe)
        values, aux = compute(acts, tensors[k:], Evaluator(f, target, rest, n, aggregate=whole), ref)
        return values, (rest[-1:], aux)

    values, (packing, aux) = checkpoint_aux(run, tuple(xs) + arg_tensors + tuple(extra), module=lf.model)
    return lf.restore(values, packing), aux
