"""Feature ablation at a layer: replace groups of neurons by a baseline, measure the output's change."""
from __future__ import annotations

import math
from numbers import Number
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .. import structure
from ..arguments import as_args, split_args, tile_args
from ..errors import check_positive_int, fail
from ..gradients import outputs
from ..recompute import mark, on_demand, reached_leaves
from ..structure import Tensors
from ..targets import Target, as_target
from .view import LayerFunction


def _per_tensor(value: Any, acts: Tensors, name: str) -> List[Any]:
    if isinstance(value, tuple):
        if len(value) != len(acts):
            fail(name, f"a tuple of {len(acts)} entries, one per tensor of the layer's activation", value)
        return list(value)
    if len(acts) > 1 and isinstance(value, torch.Tensor):
        fail(name, f"a tuple of {len(acts)} entries for a layer with {len(acts)} tensors", value)
    return [value] * len(acts)


def _broadcast(t: torch.Tensor, act: torch.Tensor, name: str, what: str) -> torch.Tensor:
    try:
        return torch.broadcast_to(t.to(act.device), act.shape)
    except RuntimeError:
        fail(name, f"{what} broadcastable to the layer's activation of shape {tuple(act.shape)}", t)


def _baselines(layer_baselines: Any, acts: Tensors) -> List[torch.Tensor]:
    out = []
    for i, (b, a) in enumerate(zip(_per_tensor(layer_baselines, acts, "layer_baselines"), acts)):
        name = f"layer_baselines[{i}]" if isinstance(layer_baselines, tuple) else "layer_baselines"
        if b is None:
            b = torch.zeros((), dtype=a.dtype, device=a.device)
        elif isinstance(b, Number) and not isinstance(b, bool):
            b = torch.tensor(b, dtype=a.dtype, device=a.device)
        elif not isinstance(b, torch.Tensor):
            fail(name, "None, a number or a tensor in the layer's activation space", b, kind=TypeError)
        out.append(_broadcast(b.to(a.dtype), a, name, "a tensor"))
    return out


def _masks(layer_mask: Any, acts: Tensors) -> List[torch.Tensor]:
    """Group ids per tensor, with as many dims as the activation and a batch dim of 1 or B (not expanded)."""
    if layer_mask is None:  # every neuron its own group, numbered across the activation's tensors
        out, offset = [], 0
        for a in acts:
            size = math.prod(a.shape[1:])  # (not a[0]: the batch may be empty)
            out.append(torch.arange(offset, offset + size, device=a.device).reshape((1,) + tuple(a.shape[1:])))
            offset += size
        return out
    out = []
    for i, (m, a) in enumerate(zip(_per_tensor(layer_mask, acts, "layer_mask"), acts)):
        name = f"layer_mask[{i}]" if isinstance(layer_mask, tuple) else "layer_mask"
        if not isinstance(m, torch.Tensor) or m.dtype.is_floating_point or m.dtype.is_complex or m.dtype == torch.bool:
            fail(name, "an integer tensor of group ids", m, kind=TypeError)
        _broadcast(m, a, name, "group ids")  # checks the shape
        out.append(m.to(device=a.device, dtype=torch.long).reshape((1,) * (a.dim() - m.dim()) + tuple(m.shape)))
    return out


def layer_feature_ablation(model: nn.Module, layer: Any, inputs: Any, layer_baselines: Any = None, *,
                           target: Any = None, args: Any = (), kwargs: Any = None, layer_mask: Any = None,
                           perturbations_per_eval: int = 1, attribute_to_layer_input: bool = False):
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
      target: the output to attribute (None, int, tuple, or one entry per example).
      args: extra positional arguments of ``model``.
      layer_mask: integer group ids broadcastable to the activation (neurons with
        the same id are ablated together; ids may be shared across the tensors of
        a tuple activation). None: every neuron on its own.
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
    xs, _ = structure.as_tuple(inputs)
    ppe = check_positive_int("perturbations_per_eval", perturbations_per_eval)
    args = as_args(args, kwargs)
    n = xs[0].shape[0]
    lf = LayerFunction(model, layer, attribute_to_layer_input)
    acts, rest = lf.head(xs, args, gradient=False)
    bases = _baselines(layer_baselines, acts)
    masks = _masks(layer_mask, acts)
    tgt = as_target(target, n, xs[0].device)
    f = lf.function()
    groups = torch.unique(torch.cat([m.reshape(-1) for m in masks]))  # sorted
    rest_tensors, rebuild = split_args(rest)
    k = len(acts)

    def run(tensors: Tensors, graph: bool) -> Tuple[Tensors, Optional[List[torch.Tensor]]]:
        acts_, bases_, rest_ = tensors[:k], tensors[k:2 * k], rebuild(tensors[2 * k:])
        tracking = not graph and torch.is_grad_enabled()
        since = mark() if tracking else 0
        reference = outputs(f, acts_, tgt, rest_)
        reached = reached_leaves([reference], (), since) if tracking else []
        with torch.set_grad_enabled(graph and torch.is_grad_enabled()):  # no graph: the tails' fast paths
            return _ablate(f, acts_, bases_, masks, groups, ppe, tgt, rest_, reference), reached

    return lf.restore(on_demand(run, acts + tuple(bases) + rest_tensors, keep=lf.model is None or lf.model.training))


def _ablate(f: Callable[..., Any], acts: Tensors, bases: Sequence[torch.Tensor], masks: List[torch.Tensor],
            groups: torch.Tensor, ppe: int, tgt: Target, rest: Tuple[Any, ...], reference: torch.Tensor) -> Tensors:
    """For each group, ``reference`` minus the output with the group ablated (``ppe`` groups per tail call),
    given to every neuron of the group."""
    n = acts[0].shape[0]
    changes = []
    for start in range(0, groups.shape[0], ppe):
        chunk = groups[start:start + ppe]
        p = chunk.shape[0]
        selected = [m.unsqueeze(0) == chunk.reshape((p,) + (1,) * m.dim()) for m in masks]  # (p, 1 or B, ...)
        ablated = tuple(structure.fold(torch.where(s, b.unsqueeze(0), a.unsqueeze(0)))  # (p * B, ...)
                        for s, b, a in zip(selected, bases, acts))
        out = outputs(f, ablated, tgt.tile(p), tile_args(rest, n, p)).reshape(p, n)
        changes.append(reference.unsqueeze(0) - out)
    per_group = torch.cat(changes).t()  # (B, groups)
    return tuple(per_group.gather(1, torch.searchsorted(groups, m).expand(a.shape).reshape(n, math.prod(a.shape[1:])))
                 .reshape(a.shape) for m, a in zip(masks, acts))
