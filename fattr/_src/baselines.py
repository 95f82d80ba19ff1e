"""Baselines: the one place that turns the user's ``baselines`` into tensors.

Accepted (per input): ``None`` (zeros), a Python scalar, a tensor of the input's
shape, or a tensor with a batch of 1 (broadcast over examples). A tuple gives one
per input; a single scalar or ``None`` also serves every input of a tuple.
"""
from __future__ import annotations

import inspect
from numbers import Number
from typing import Any, Callable, Optional

import torch

from .errors import Shown, fail
from .structure import Tensors


def _on_device(baseline: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    """``baseline`` in the input's dtype and on its device; a tensor without data (meta) is refused."""
    if baseline.device != x.device and baseline.is_meta:
        fail(name, f"a tensor with values, on the inputs' device ({x.device})",
             Shown(f"a {baseline.dtype} tensor of shape {tuple(baseline.shape)} on device meta (no values)"),
             f"Create the baselines on {x.device}, e.g. torch.zeros_like(inputs).")
    same = baseline.dtype is x.dtype and baseline.device == x.device  # (the common case: no call)
    return baseline if same else baseline.to(dtype=x.dtype, device=x.device)


def _one(baseline: Any, x: torch.Tensor, name: str) -> torch.Tensor:
    if baseline is None:
        return torch.zeros((1,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    if isinstance(baseline, Number) and not isinstance(baseline, bool):
        value = float(baseline)  # type: ignore[arg-type]  # numbers.Number declares no __float__
        return torch.full((1,) + tuple(x.shape[1:]), value, dtype=x.dtype, device=x.device)
    if not isinstance(baseline, torch.Tensor):
        fail(name, "None, a number or a tensor", baseline, kind=TypeError)
    if baseline.dim() == 0:
        return _on_device(baseline, x, name).expand((1,) + tuple(x.shape[1:]))
    if tuple(baseline.shape[1:]) != tuple(x.shape[1:]) or baseline.shape[0] not in (1, x.shape[0]):
        fail(name, f"a tensor of shape {tuple(x.shape)} or {(1,) + tuple(x.shape[1:])} to match the input",
             baseline)
    return _on_device(baseline, x, name)


def format_baselines(baselines: Any, inputs: Tensors, name: str = "baselines") -> Tensors:
    """One baseline tensor per input, each with a batch of 1 or of the input's batch."""
    if isinstance(baselines, tuple):
        if len(baselines) != len(inputs):
            fail(name, f"a tuple of {len(inputs)} baselines, one per input", baselines)
        return tuple(_one(b, x, f"{name}[{i}]") for i, (b, x) in enumerate(zip(baselines, inputs)))
    if isinstance(baselines, torch.Tensor) and len(inputs) > 1 and baselines.dim() > 0:
        fail(name, f"a tuple of {len(inputs)} baselines for a tuple of {len(inputs)} inputs", baselines)
    return tuple(_one(baselines, x, name) for x in inputs)


def call_baselines(fn: Callable[..., Any], given: Any, name: str = "baselines") -> Any:
    """Captum's convention for a callable ``baselines``: called with no argument when it takes
    none, else with the inputs as the user gave them (one argument: the tensor or the tuple)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: give it the inputs
        return fn(given)
    variadic = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
    if not variadic and not any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters):
        if any(p.default is inspect.Parameter.empty and p.kind is p.KEYWORD_ONLY for p in parameters):
            fail(name, "a callable taking no argument or one (the inputs)",
                 Shown("a callable with required keyword-only parameters"), kind=TypeError)
        return fn()
    return fn(given)


def format_distribution(baselines: Any, inputs: Tensors, name: str = "baselines", *, given: Any = None) -> Tensors:
    """Baselines for distribution methods (SHAP variants): rows drawn from, or a callable giving them.

    A callable is called as Captum calls it (:func:`call_baselines`) with ``given``, the inputs
    as the user gave them (default: the tensor, or the tuple for several inputs).
    Returns one tensor per input with ``M >= 1`` rows (``M`` shared by all inputs).
    """
    if callable(baselines) and not isinstance(baselines, torch.Tensor):
        if given is None:
            given = inputs if len(inputs) > 1 else inputs[0]
        baselines = call_baselines(baselines, given, name)
    if baselines is None:
        fail(name, "a tensor (a distribution of baseline rows), a tuple of them or a callable", baselines,
             kind=TypeError)
    rows = _rows(baselines, inputs, name) or format_baselines(baselines, inputs, name)
    m = rows[0].shape[0]
    for i, r in enumerate(rows):
        if r.shape[0] != m:
            fail(f"{name}[{i}]", f"{m} rows like {name}[0]", r)
    return rows


def _rows(baselines: Any, inputs: Tensors, name: str) -> Optional[Tensors]:
    """Baseline rows, one tensor per input; None unless every baseline given is a tensor with a batch dim."""
    items = baselines if isinstance(baselines, tuple) else (baselines,)
    if not all(isinstance(b, torch.Tensor) and b.dim() > 0 for b in items):
        return None
    if len(items) != len(inputs):
        fail(name, f"{len(inputs)} baseline tensors, one per input", baselines)
    out = []
    for i, (b, x) in enumerate(zip(items, inputs)):
        label = f"{name}[{i}]" if isinstance(baselines, tuple) else name
        if tuple(b.shape[1:]) != tuple(x.shape[1:]):
            fail(label, f"rows of shape {tuple(x.shape[1:])} like the input's examples", b)
        out.append(_on_device(b, x, label))
    return tuple(out)
