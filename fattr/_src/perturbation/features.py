"""Feature masks: which input elements form one feature, and per-feature values broadcast back.

A feature mask holds one integer id per input element (broadcastable to the input,
with a batch of 1 or of the input's batch; a tuple with one per input, ids may be
shared across inputs). ``None`` makes every element its own feature, numbered
consecutively across the inputs (Captum's default). :class:`Features` numbers the features
``0 .. n-1`` and scatters per-feature values back to the inputs' shapes.

The number of features sets the number of evaluations of ``f``: with ``None`` it is the
number of elements per example, known from the shapes alone (so ``torch.compile(fullgraph=True)``
traces it); a mask's features are counted from its values (a graph break under Dynamo), unless
``n_features`` gives their number (see :func:`features_of`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, List

import torch

from ..errors import Shown, check_integer_tensor, check_positive_int, fail
from ..structure import Tensors, example_size, flat


def per_tensor(value: Any, tensors: Tensors, name: str) -> List[Any]:
    """One entry of ``value`` per tensor: a tuple is taken as is, anything else serves every tensor."""
    if isinstance(value, tuple):
        if len(value) != len(tensors):
            fail(name, f"a tuple of {len(tensors)} entries, one per tensor", value)
        return list(value)
    if len(tensors) > 1 and isinstance(value, torch.Tensor):
        fail(name, f"a tuple of {len(tensors)} entries for {len(tensors)} tensors", value)
    return [value] * len(tensors)


def group_ids(mask: Any, tensors: Tensors, name: str = "feature_mask") -> Tensors:
    """Group ids per tensor, with as many dims as the tensor and a batch dim of 1 or B (not expanded)."""
    if mask is None:  # every element its own group, numbered across the tensors
        starts = itertools.accumulate((example_size(t) for t in tensors), initial=0)
        return tuple(torch.arange(s, s + example_size(t), device=t.device).reshape((1,) + tuple(t.shape[1:]))
                     for s, t in zip(starts, tensors))
    out = []
    for i, (m, t) in enumerate(zip(per_tensor(mask, tensors, name), tensors)):
        label = f"{name}[{i}]" if isinstance(mask, tuple) else name
        check_integer_tensor(label, m, "an integer tensor of group ids")
        if m.dim() > t.dim():
            fail(label, f"group ids broadcastable to the tensor of shape {tuple(t.shape)}", m)
        m = m.to(device=t.device, dtype=torch.long).reshape((1,) * (t.dim() - m.dim()) + tuple(m.shape))
        if m.shape[0] not in (1, t.shape[0]) or any(a not in (1, b) for a, b in zip(m.shape[1:], t.shape[1:])):
            fail(label, f"group ids broadcastable to the tensor of shape {tuple(t.shape)}, with a batch of 1 or "
                 f"{t.shape[0]}", m)
        out.append(m)
    return tuple(out)


def features_of(mask: Any, tensors: Tensors, name: str = "feature_mask", contiguous: bool = False,
                n_features: Any = None) -> "Features":
    """The features of ``mask`` (see :func:`group_ids` and :meth:`Features.of`).

    With ``n_features`` the ids are the features' indices: exactly ``n_features`` features, present
    or not, so that every shape depends on ``n_features`` alone. The ids must lie in ``[0, n_features)``:
    eagerly a ``ValueError`` naming both with the smallest and largest id found; under ``torch.compile``
    an assert in the graph (``torch._assert_async``), which fails when the graph runs: a ``RuntimeError``
    on CPU, a device-side assert on CUDA (reported at a later synchronisation).
    """
    ids = group_ids(mask, tensors, name)
    if n_features is not None:
        n = check_positive_int("n_features", n_features)
        _check_range(ids, n, name)
        return Features(ids, n)
    if mask is None:  # already dense: nothing to read from the values
        return Features(ids, sum(example_size(t) for t in tensors))
    return Features.of(ids, contiguous)


def _check_range(ids: Tensors, n: int, name: str) -> None:
    every = torch.cat([m.reshape(-1) for m in ids])
    if torch.compiler.is_compiling():  # a value check Dynamo traces: it fails when the graph runs, never silently
        torch._assert_async(((every >= 0) & (every < n)).all(), f"{name}: expected ids in [0, n_features) = "
                            f"[0, {n}), got an id outside that range.")
    elif every.numel() and not (int(every.min()) >= 0 and int(every.max()) < n):
        fail(name, f"ids in [0, n_features) = [0, {n})", Shown(f"ids from {int(every.min())} to {int(every.max())}"),
             "Give n_features above the largest id, or leave it None to count the features from the mask.")


@dataclass(frozen=True)
class Features:
    """Features of a tuple of tensors.

    Attributes:
      index: per tensor, the feature index (``0 .. n-1``) of every element, shaped
        ``(1 or B, *tensor.shape[1:])`` (broadcast over the batch when its batch is 1).
      n: the number of features.
    """

    index: Tensors
    n: int

    @staticmethod
    def of(ids_per_tensor: Tensors, contiguous: bool = False) -> "Features":
        """Dense numbering of the ids present (``contiguous``: every id from the smallest to the
        largest, present or not: Captum's interpretable features for LIME and KernelSHAP)."""
        flat = torch.cat([m.reshape(-1) for m in ids_per_tensor])
        if flat.numel() == 0:
            return Features(tuple(m.clone() for m in ids_per_tensor), 0)
        if contiguous:
            lo, hi = int(flat.min()), int(flat.max())
            return Features(tuple(m - lo for m in ids_per_tensor), hi - lo + 1)
        ids = torch.unique(flat)  # sorted
        return Features(tuple(torch.searchsorted(ids, m) for m in ids_per_tensor), int(ids.shape[0]))

    def scatter(self, values: torch.Tensor, tensors: Tensors) -> Tensors:
        """``values`` ``(R, n)`` (one row per example, or per output in aggregate mode) given to every
        element of each feature: tensors ``(R, *t.shape[1:])``."""
        r = values.shape[0]
        out = []
        for i, t in zip(self.index, tensors):
            if i.shape[0] != 1 and i.shape[0] != r:
                fail("feature_mask", f"a batch of 1 when f returns {r} value(s) for the whole batch", i)
            ids = flat(i.expand((i.shape[0],) + tuple(t.shape[1:]))).expand(r, -1)
            out.append(values.gather(1, ids).reshape((r,) + tuple(t.shape[1:])))
        return tuple(out)

    def selected(self, start: int, stop: int) -> Tensors:
        """Per tensor, whether each element belongs to feature ``start .. stop-1``: ``(p, 1 or B, ...)``."""
        chunk = torch.arange(start, stop, device=self.index[0].device)
        return tuple(i.unsqueeze(0) == chunk.reshape((-1,) + (1,) * i.dim()) for i in self.index)

    def kept(self, keep: torch.Tensor) -> Tensors:
        """Per tensor, whether each element keeps its input value, from ``keep`` ``(p, n)`` (shared by
        the examples) or ``(p, B, n)`` (per example), boolean: ``(p, 1 or B, ...)``."""
        keep = keep if keep.dim() == 3 else keep.unsqueeze(1)  # (p, 1 or B, n)
        out = []
        for i in self.index:
            p, b = keep.shape[0], i.shape[0] if keep.shape[1] == 1 else keep.shape[1]
            ids = flat(i).unsqueeze(0).expand(p, b, -1)
            out.append(keep.expand(p, b, -1).gather(2, ids).reshape((p, b) + tuple(i.shape[1:])))
        return tuple(out)
