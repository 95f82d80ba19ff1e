"""Perturbation samples for the metrics: Captum's layout, fattr's randomness.

A metric draws ``n_perturb_samples`` perturbations per example. As in Captum, the perturbation
function sees the inputs repeated example-major (``torch.repeat_interleave``: the copies of
example 0, then of example 1, ...), ``max_examples_per_batch // B`` samples per example at a time,
so a perturbation function gives the same numbers here and in Captum. A function with a
``generator`` parameter receives the metric's ``generator=``; randomness never comes from torch's
global generator unless the user's own function draws from it.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, List, Optional

import torch

from ..arguments import map_args, repeat_rows
from ..errors import check_optional_positive_int


def sample_chunks(n_samples: int, n_examples: int, max_examples_per_batch: Optional[int]) -> List[int]:
    """Samples per example in each call: Captum's ``_divide_and_aggregate_metrics`` split (at least one
    sample of every example per call, at most all of them)."""
    max_examples_per_batch = check_optional_positive_int("max_examples_per_batch", max_examples_per_batch)
    per = n_samples if max_examples_per_batch is None else min(max(max_examples_per_batch // n_examples, 1),
                                                               n_samples)
    return [min(per, n_samples - start) for start in range(0, n_samples, per)]


def repeat_target(target: Any, k: int) -> Any:
    """A target in the user's grammar for the example-major repeated batch."""
    if isinstance(target, list):
        return [t for t in target for _ in range(k)]
    if isinstance(target, torch.Tensor) and target.dim() > 0 and target.numel() > 1:
        return target.repeat_interleave(k, dim=0)
    return target


def repeat_args(args: Any, n_examples: int, k: int) -> Any:
    """Per-example tensors among ``args`` (a tuple, a single value, or a dict of keyword arguments)."""
    if isinstance(args, dict):
        return {name: repeat_rows(v, n_examples, k) for name, v in args.items()}
    if isinstance(args, tuple):
        return map_args(lambda v: repeat_rows(v, n_examples, k), args)
    return repeat_rows(args, n_examples, k)


def takes_generator(fn: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "generator" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def takes_two(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` declares a second positional parameter (Captum's check for a second argument)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)
    return positional > 1 or any(p.kind is p.VAR_POSITIONAL for p in parameters)
