"""GradientSHAP at a layer: expected layer gradients between the input and random baselines."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch

from .. import structure
from ..arguments import tile_args
from ..base import (ArgsLike, BaselinesLike, InputsLike, KwargsLike, LayerLike, ModelLike, StdevsLike, TargetLike,
                    WithDeltaOrList)
from ..gradient_shap import paths, sample, sample_deltas
from ..gradients import gradient_pass, outputs
from ..path import accumulation_dtype
from ..recompute import checkpoint_aux
from ..structure import Tensors
from .heads import heads
from .view import LayerFunction


def layer_gradient_shap(model: ModelLike, layer: LayerLike, inputs: InputsLike, baselines: BaselinesLike,
                        n_samples: int = 5, stdevs: StdevsLike = 0.0, *, target: TargetLike = None, args: ArgsLike = (),
                        kwargs: KwargsLike = None, generator: Optional[torch.Generator] = None,
                        multiply_by_inputs: bool = True, return_delta: bool = False,
                        attribute_to_layer_input: bool = False) -> WithDeltaOrList:
    """GradientSHAP at a layer (Captum's LayerGradientShap).

    For each example, ``n_samples`` times: add Gaussian noise (``stdevs``) to the
    input, draw a baseline row from ``baselines`` and ``alpha ~ U[0, 1]``, take the
    layer gradient at the input-space point ``baseline + alpha * (noisy - baseline)``
    and multiply it by ``act(noisy) - act(baseline)``; the attribution is the mean
    over samples. The draws are made exactly as :func:`fattr.gradient_shap` makes
    them (same generator, same order), from ``generator`` only. The head runs on
    the noisy inputs, the baselines and the points (one call over all three where
    exact), the tail on the points: every stage is one batched call over the ``n_samples * B`` rows.

    Args:
      model: the ``nn.Module``.
      layer: a submodule of ``model`` or its dotted name.
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      baselines: the input-space reference distribution: a tensor ``(M, ...)``, a
        tuple of them (equal ``M``) or a callable returning one from the inputs.
      n_samples: samples per example.
      stdevs: standard deviation of the input noise, one number or one per input.
      target: the output to attribute (None, int, tuple, or one entry per example).
      args: extra positional arguments of ``model``.
      generator: a ``torch.Generator``; the same seed gives the same attributions.
      multiply_by_inputs: if False, return the mean layer gradient.
      return_delta: also return ``sum(attr_sample) - (model(noisy) - model(baseline))``
        for every (example, sample) pair, example first: shape ``(B * n_samples,)``.
      attribute_to_layer_input: attribute to the layer's input instead of its output.

    Returns:
      Attributions shaped like the layer's activation (a tuple for several
      tensors); with ``return_delta``, ``(attributions, delta)``.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
      >>> x, dist = torch.randn(4, 3), torch.randn(10, 3)
      >>> g = torch.Generator().manual_seed(0)
      >>> fattr.layer_gradient_shap(model, "1", x, dist, n_samples=8, target=0, generator=g).shape
      torch.Size([4, 8])
    """
    # (the draws, one graph break under Dynamo, then the paths: in this frame's graph)
    d = paths(*sample(inputs, baselines, n_samples, stdevs, multiply_by_inputs, return_delta, generator), target, args,
              kwargs)
    n, k = d.n, d.n_samples
    lf = LayerFunction(model, layer, attribute_to_layer_input)
    f, tgt = lf.function(), d.target.tile(k)
    batches = [d.points] + ([d.noisy, d.starts] if multiply_by_inputs or return_delta else [])
    m = len(d.points)

    # (lf a default, not a cell: Dynamo cannot resume this frame after the break with a cell holding it)
    def run(tensors: Tensors, rest: Tuple[Any, ...], lf: LayerFunction = lf) -> Tuple[Tensors, Tuple[Any, ...]]:
        rows = [tuple(structure.fold(p) for p in tensors[i * m:(i + 1) * m]) for i in range(len(batches))]
        (acts_p, rest_p), *others = heads(lf, rows, rest, n * k)  # one checkpoint
        grads = gradient_pass(f, acts_p, tgt, rest_p)
        if others:
            (acts_n, rest_n), (acts_s, rest_s) = others
        per_sample = tuple(g * (a - b) for g, a, b in zip(grads, acts_n, acts_s)) if multiply_by_inputs else grads
        if not return_delta:
            return per_sample, rest_p[-1:]
        return per_sample + (outputs(f, acts_n, tgt, rest_n).to(torch.float64)
                             - outputs(f, acts_s, tgt, rest_s).to(torch.float64),), rest_p[-1:]

    values, packing = checkpoint_aux(run, tuple(t for b in batches for t in b), args=tile_args(d.args, n, k),
                                     module=lf.model, traceable=True)
    per_sample = values[:len(values) - return_delta]
    attr = tuple(structure.unfold(p.to(accumulation_dtype(p.dtype, p.device)), k).mean(0).to(p.dtype)
                 for p in per_sample)
    result = lf.restore(attr, packing)
    return (result, sample_deltas(per_sample, values[-1], k, n)) if return_delta else result
