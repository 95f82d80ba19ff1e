"""Tensor-or-tuple inputs: normalised once at the boundary, restored once on the way out."""
from __future__ import annotations

import math
from typing import Any

import torch

from .base import TensorOrTensors as TensorOrTensors, Tensors as Tensors  # re-exported: modules import them from here
from .base import WithDelta
from .errors import fail


def as_tuple(inputs: Any, name: str = "inputs") -> tuple[Tensors, bool]:
    """Return ``(tuple_of_tensors, was_tuple)``; check every element is a tensor with a batch dim."""
    was_tuple = isinstance(inputs, tuple)
    items = inputs if was_tuple else (inputs,)
    if was_tuple and len(items) == 0:
        fail(name, "a tensor or a non-empty tuple of tensors", inputs)
    for i, item in enumerate(items):
        label = f"{name}[{i}]" if was_tuple else name
        if not isinstance(item, torch.Tensor):
            fail(label, "a torch.Tensor", item,
                 "Wrap lists or arrays with torch.as_tensor first.", kind=TypeError)
        if item.dim() == 0:
            fail(label, "a tensor with examples along dim 0", item)
    n = items[0].shape[0]
    for i, item in enumerate(items[1:], start=1):
        if item.shape[0] != n:
            fail(f"{name}[{i}]", f"{n} examples along dim 0, like {name}[0]", item)
    return tuple(items), was_tuple


INTEGER_INPUTS_HINT = ("For integer inputs such as token ids, attribute to the embedding layer's output "
                      "instead: fattr.layer_integrated_gradients(model, model.embeddings, ids, ...) (or another "
                      "layer method at the embedding).")


def require_floating(inputs: Tensors, name: str = "inputs") -> None:
    """Gradient and path methods differentiate with respect to the inputs (or interpolate them):
    each must be floating point."""
    for i, x in enumerate(inputs):
        if not (x.is_floating_point() or x.is_complex()):
            fail(f"{name}[{i}]" if len(inputs) > 1 else name,
                 "a floating-point tensor (the method differentiates with respect to it or interpolates it)",
                 x, INTEGER_INPUTS_HINT, kind=TypeError)


def like_inputs(attributions: Any, xs: Tensors, was_tuple: bool, name: str = "attributions") -> Tensors:
    """``attributions`` as a tuple, checked to have the inputs' structure and shapes."""
    attrs, attr_tuple = as_tuple(attributions, name)
    if attr_tuple != was_tuple or len(attrs) != len(xs):
        fail(name, f"the structure of inputs ({len(xs)} tensor(s))", attributions)
    for i, (a, x) in enumerate(zip(attrs, xs)):
        if a.shape != x.shape:
            fail(f"{name}[{i}]" if was_tuple else name, f"shape {tuple(x.shape)} like the input", a)
    return attrs


def restore(values: Tensors, was_tuple: bool) -> TensorOrTensors:
    """Undo :func:`as_tuple`."""
    return tuple(values) if was_tuple else values[0]


def example_size(x: torch.Tensor) -> int:
    """Elements per example (``x[0].numel()``, also defined for a batch of no examples)."""
    return math.prod(x.shape[1:])


def flat(x: torch.Tensor, lead: int = 1) -> torch.Tensor:
    """``x`` with the dims after its first ``lead`` flattened into one (always present, 1 when there are
    none): ``reshape(*lead_dims, -1)``, also for a batch of no examples, where ``-1`` is ambiguous."""
    return x.reshape(tuple(x.shape[:lead]) + (math.prod(x.shape[lead:]),))


def fold(points: torch.Tensor) -> torch.Tensor:
    """``(K, B, ...) -> (K*B, ...)``: extra batch dims (steps, samples) folded into dim 0, step-major."""
    return points.flatten(0, 1)


def unfold(rows: torch.Tensor, k: int) -> torch.Tensor:
    """``(K*B, ...) -> (K, B, ...)``; the inverse of :func:`fold`."""
    return rows.reshape((k, rows.shape[0] // k) + rows.shape[1:])


def empty_result(xs: Tensors, was_tuple: bool, return_delta: bool) -> WithDelta:
    """What a method gives for a batch of no examples: zero-row attributions (and deltas)."""
    attr = restore(tuple(torch.zeros_like(x) for x in xs), was_tuple)
    return (attr, torch.zeros(0, dtype=torch.float64, device=xs[0].device)) if return_delta else attr
