"""``args`` and ``kwargs``: extra arguments passed to ``f`` after the inputs.

``args`` are positional (Captum's ``additional_forward_args``), ``kwargs`` keyword
(an attention mask, token type ids). A tensor with one row per example belongs to
its example and is tiled alongside it whenever examples are replicated (path
steps, noise samples, ablations); anything else is passed as is.

Inside fattr both travel as one tuple: the positional values, then, when there are
keyword arguments, one :class:`Keywords` entry holding them. Every function that
pairs, tiles or differentiates extra arguments goes through :func:`map_args` and
:func:`split_args`, and :func:`.calling.call` unpacks the :class:`Keywords` entry, so
keyword arguments follow the same rules as positional ones everywhere.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, Sequence, Tuple

import torch
from torch.utils import _pytree as pytree

from . import structure
from .base import Tensors
from .errors import check_callable, fail
from .targets import Target, as_target


class Keywords:
    """The keyword arguments of ``f``, as the last entry of an args tuple (immutable)."""

    __slots__ = ("names", "values")

    def __init__(self, names: Tuple[str, ...], values: Tuple[Any, ...]) -> None:
        self.names = names
        self.values = values

    def __repr__(self) -> str:
        return f"Keywords({', '.join(self.names)})"


pytree.register_pytree_node(
    Keywords, lambda k: (list(k.values), k.names), lambda values, names: Keywords(names, tuple(values)),
    serialized_type_name="fattr.Keywords")


def as_args(args: Any, kwargs: Any = None) -> Tuple[Any, ...]:
    """``args`` as a tuple (``None -> ()``, a single value -> a 1-tuple: Captum's rule), followed by
    ``kwargs`` as one :class:`Keywords` entry when there are any."""
    if args is None:
        args = ()
    elif not isinstance(args, tuple):
        args = (args,)
    if kwargs is None or (isinstance(kwargs, dict) and not kwargs):
        return args
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        fail("kwargs", "a dict of keyword arguments of f (names to values)", kwargs, kind=TypeError)
    return args + (Keywords(tuple(kwargs), tuple(kwargs.values())),)


def unpack(args: Sequence[Any]) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    """``(positional, keyword)`` arguments for a call."""
    if args and isinstance(args[-1], Keywords):
        return tuple(args[:-1]), dict(zip(args[-1].names, args[-1].values))
    return tuple(args), {}


def values(args: Sequence[Any]) -> Iterator[Any]:
    """Every value among ``args``, keyword values included."""
    for a in args:
        if isinstance(a, Keywords):
            yield from a.values
        else:
            yield a


def map_args(fn: Callable[[Any], Any], args: Sequence[Any]) -> Tuple[Any, ...]:
    """``args`` with ``fn`` applied to every value, keyword values included."""
    return tuple(Keywords(a.names, tuple(fn(v) for v in a.values)) if isinstance(a, Keywords) else fn(a)
                 for a in args)


def is_per_example(arg: Any, n_examples: int) -> bool:
    return isinstance(arg, torch.Tensor) and arg.dim() > 0 and arg.shape[0] == n_examples


def tile(x: torch.Tensor, k: int) -> torch.Tensor:
    """``(B, ...) -> (k*B, ...)``: ``k`` copies stacked step-major (row ``s*B + b`` is example ``b``)."""
    if k == 1:
        return x
    return x.unsqueeze(0).expand((k,) + tuple(x.shape)).reshape((k * x.shape[0],) + tuple(x.shape[1:]))


def repeat_rows(value: Any, n_examples: int, k: int) -> Any:
    """``value`` with a per-example tensor repeated ``k`` times example-major (each row ``k`` times in a row:
    row ``b*k + s`` is example ``b``), the order Captum's metrics and the SHAP pairs use; anything else as is."""
    return value.repeat_interleave(k, dim=0) if k > 1 and is_per_example(value, n_examples) else value


def tile_args(args: Tuple[Any, ...], n_examples: int, k: int) -> Tuple[Any, ...]:
    """Tile the per-example tensors of ``args`` ``k`` times, step-major; leave the rest alone."""
    if k == 1 or not args:
        return args
    return map_args(lambda a: tile(a, k) if is_per_example(a, n_examples) else a, args)


def split_args(args: Sequence[Any]) -> Tuple[Tensors, Callable[[Tensors], Tuple[Any, ...]]]:
    """``(tensors, rebuild)``: the tensors among ``args`` (keyword values included), and
    ``rebuild(new_tensors) -> args`` with them replaced (the tensors are what a computation over
    ``args`` may be differentiated by)."""
    found = tuple(v for v in values(args) if isinstance(v, torch.Tensor)) if args else ()
    if not found:  # nothing to replace
        kept = tuple(args)
        return (), lambda tensors: kept

    def rebuild(tensors: Tensors) -> Tuple[Any, ...]:
        it = iter(tensors)
        return map_args(lambda a: next(it) if isinstance(a, torch.Tensor) else a, args)

    return found, rebuild


def boundary(f: Any, inputs: Any, target: Any, args: Any, kwargs: Any, name: str = "f"
             ) -> Tuple[Tensors, bool, Target, Tuple[Any, ...]]:
    """The conventions every method shares, checked and normalised once at its boundary: ``(inputs, was_tuple,
    target, args)``, ``f`` (named ``name``) checked callable, ``kwargs`` joined to ``args`` (:func:`as_args`)."""
    check_callable(name, f)
    xs, was_tuple = structure.as_tuple(inputs)
    return xs, was_tuple, as_target(target, xs[0].shape[0], xs[0].device), as_args(args, kwargs)
