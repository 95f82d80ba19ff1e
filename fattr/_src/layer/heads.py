"""Several batches through a split's head in one call, where that is exact.

A layer method that needs the head on several batches of the same examples (the
inputs and the baselines; GradientSHAP's points, noisy inputs and starts) can
stack their rows into one head call: one checkpoint, one pass through the head,
then the rows split back. That is exact when the rows do not see each other (a
module in eval mode: fattr folds path steps into dim 0 on that premise anyway) and
every value the head hands the tail can be split back unambiguously: ``rest`` must
carry no tensor whose dim 0 is the stacked row count (per example, or shared with
that size by chance? one call cannot tell), and no tensor of ``args`` may have that
many rows. Otherwise the head runs once per batch, and for that model and layer
from then on (models with skip connections around the layer, whose ``rest`` is
per example). Under Dynamo the head runs once per batch (the compiled graph holds both).
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, List, Sequence, Set, Tuple

import torch
from torch import nn

from ..arguments import split_args, tile_args
from ..compiled import dynamo_tracing
from ..recompute import rows_apart
from ..structure import Tensors
from .view import LayerFunction

Head = Tuple[Tensors, Tuple[Any, ...]]
_SEPARATE: "weakref.WeakKeyDictionary[nn.Module, Set[Tuple[Any, ...]]]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def heads(lf: LayerFunction, batches: Sequence[Tensors], args: Tuple[Any, ...], n: int) -> List[Head]:
    """``[lf.head(batch, args) for batch in batches]``, as one head call over the batches' rows where
    exact (see the module docstring). Each batch has ``rows`` rows, the same shapes, and ``args``
    has been tiled for ``rows`` (its per-example tensors have ``rows`` rows); ``n`` is ``rows``."""
    m, owner = len(batches), lf.model
    if dynamo_tracing():  # no lock or memory of models under Dynamo (a compiled graph fuses the calls anyway)
        return [lf.head(batch, args) for batch in batches]
    key = (tuple([id(layer) for layer in lf.split.layers]), lf.split.to_input)
    with _LOCK:
        known = owner is not None and key in _SEPARATE.get(owner, ())
    if (m == 1 or owner is None or not rows_apart(owner) or known
            or any([b.shape != x.shape for batch in batches[1:] for b, x in zip(batch, batches[0])])
            or any([t.dim() > 0 and t.shape[0] == m * n for t in split_args(args)[0]])):
        return [lf.head(batch, args) for batch in batches]
    acts, rest = lf.head(tuple([torch.cat(rows) for rows in zip(*batches)]), tile_args(args, n, m))
    if any([isinstance(r, torch.Tensor) and r.dim() > 0 and r.shape[0] == m * n for r in rest]):
        with _LOCK:
            _SEPARATE.setdefault(owner, set()).add(key)
        return [lf.head(batch, args) for batch in batches]
    parts = [a.tensor_split(m) for a in acts]  # (one op per activation: m views of n rows)
    return [(tuple([p[i] for p in parts]), rest) for i in range(m)]
