"""``neuron_selector``: which neuron (or region, or function) of a layer's activation is attributed.

Captum's grammar (``neuron_selector`` in the neuron methods' docstrings), normalised once by
:func:`as_selector`. A region also sums the dims its tuple leaves out; a callable returning a single
value is applied to each example's row on its own (``torch.func.vmap``), so aggregates such as
``lambda a: a.sum()`` mean the same as in Captum.

Selection is indexing only (no ``.item()``), so it runs inside the batched passes of every
method. A list of selectors (several neurons in one pass) is normalised by :func:`as_selectors`.

:class:`Neuron` makes the selected neuron a function of the inputs, ``select(head(*inputs, *args))``:
the model is split at the layer (:func:`..layer.split.build`) and only the head runs. Every neuron
method is an input-space method applied to this function, so it inherits that method's batching,
chunking, purity and differentiability; a list of selectors gives one column per selector
(:func:`.methods._attribute` tiles the inputs once per selector).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple, Union

import torch

from .. import structure
from ..arguments import as_args
from ..base import Tensor
from ..calling import Bound, module_of
from ..errors import Shown, check_bool, check_callable, describe, fail
from ..layer.split import build

Index = Tuple[Union[int, slice], ...]

_HELP = ("Pass an int (a column of a 2-D activation), a tuple of ints and slices (one per dim after "
         "the batch dim; slices select a region whose values are summed), or a callable returning one "
         "value per example.")


def _show(index: Index) -> Shown:
    return Shown(repr(index[0] if len(index) == 1 and isinstance(index[0], int) else index))


@dataclass(frozen=True)
class Selector:
    """A normalised ``neuron_selector``: an ``index`` (ints and slices) or a callable ``fn``."""

    index: Optional[Index] = None
    fn: Optional[Callable[..., Any]] = None
    name: str = "neuron_selector"

    def __call__(self, activation: Any, n_rows: int) -> Tensor:
        """The selected value of every row: shape ``(n_rows,)``."""
        if self.fn is None:
            assert self.index is not None
            if not isinstance(activation, Tensor):
                fail("layer", "a layer with one activation tensor for an index neuron_selector",
                     activation, "Pass a callable neuron_selector for a layer with several tensors.")
            return _index(activation, self.index, self.name)
        out = self.fn(activation)
        if not isinstance(out, Tensor):
            fail(self.name, "a callable returning a tensor", out, kind=TypeError)
        if out.dim() >= 1 and out.shape[0] == n_rows and out[0].numel() == 1:
            return out.reshape(n_rows)
        if out.numel() == 1:
            return out.reshape(1) if n_rows == 1 else _per_row(self.fn, activation)
        fail(self.name, f"a callable returning one value per example (shape ({n_rows},)) or one value",
             describe(out), _HELP)


def _per_row(fn: Callable[..., Tensor], activation: Any) -> Tensor:
    """``fn`` applied to each row on its own (a batch of 1), for callables returning one value."""
    def one(row: Any) -> Tensor:
        return fn(tuple(t.unsqueeze(0) for t in row) if isinstance(row, tuple) else row.unsqueeze(0)).reshape(())
    return torch.func.vmap(one)(activation)


def _index(activation: Tensor, index: Index, name: str) -> Tensor:
    dims = activation.dim() - 1
    has_slice = any(isinstance(i, slice) for i in index)
    if len(index) > dims or (not has_slice and len(index) != dims):
        fail(name, f"{dims} index(es) (one per dim of the layer's activation of shape "
             f"{tuple(activation.shape)} after the batch dim), or fewer with a slice among them",
             _show(index), _HELP)
    for i, size in zip(index, activation.shape[1:]):
        if isinstance(i, int) and not -size <= i < size:
            fail(name, f"indices in range for the layer's activation of shape {tuple(activation.shape)}",
                 _show(index))
    selected = activation[(slice(None),) + tuple(index)]
    if has_slice:
        if structure.example_size(selected) == 0:
            fail(name, f"a region with at least one neuron of the activation of shape "
                 f"{tuple(activation.shape)}", _show(index))
        return structure.flat(selected).sum(1)
    return selected


def as_selector(neuron_selector: Any, name: str = "neuron_selector") -> Selector:
    """Normalise one ``neuron_selector`` (checked against the activation when it is applied)."""
    if callable(neuron_selector) and not isinstance(neuron_selector, (int, tuple)):
        return Selector(fn=neuron_selector, name=name)
    if isinstance(neuron_selector, bool):
        fail(name, "an int, a tuple of ints and slices, or a callable", neuron_selector, _HELP, kind=TypeError)
    if isinstance(neuron_selector, int):
        return Selector(index=(neuron_selector,), name=name)
    if isinstance(neuron_selector, tuple) and neuron_selector:
        for item in neuron_selector:
            if isinstance(item, bool) or not isinstance(item, (int, slice)):
                fail(name, "a tuple of ints and slices", Shown(repr(neuron_selector)), _HELP, kind=TypeError)
            if isinstance(item, slice) and not all(v is None or (isinstance(v, int) and not isinstance(v, bool))
                                                   for v in (item.start, item.stop, item.step)):
                fail(name, "slices of ints", Shown(repr(neuron_selector)), kind=TypeError)
        return Selector(index=tuple(neuron_selector), name=name)
    fail(name, "an int, a non-empty tuple of ints and slices, or a callable", neuron_selector, _HELP,
         kind=TypeError)


def as_selectors(neuron_selector: Any) -> Tuple[List[Selector], bool]:
    """``(selectors, was_list)``: a list of selectors (several neurons in one pass) or one."""
    if isinstance(neuron_selector, list):
        if not neuron_selector:
            fail("neuron_selector", "a selector or a non-empty list of them", neuron_selector, _HELP)
        return [as_selector(s, f"neuron_selector[{i}]") for i, s in enumerate(neuron_selector)], True
    return [as_selector(neuron_selector)], False


class Neuron:
    """The neuron(s) ``neuron_selector`` names in ``layer``'s output (input, with ``attribute_to_neuron_input``)."""

    def __init__(self, model: Any, layer: Any, neuron_selector: Any, attribute_to_neuron_input: bool, *,
                 exportable: bool = True) -> None:
        check_callable("model", model)
        check_bool("attribute_to_neuron_input", attribute_to_neuron_input)
        self.model = model
        self.selectors, self.was_list = as_selectors(neuron_selector)
        self.split = build(model, layer, attribute_to_neuron_input, allow_list=False, exportable=exportable,
                           side="attribute_to_neuron_input")

    def function(self) -> Callable[..., Tensor]:
        """``g(*inputs, *args, **kwargs)``: ``(n_rows,)`` for one selector, ``(n_rows, K)`` for a list."""
        selectors: List[Selector] = self.selectors
        single = not self.was_list

        def g(*values: Any, **keywords: Any) -> Tensor:
            act, _ = self.split.head(*as_args(values, keywords))  # the layer's activation
            n = values[0].shape[0]
            return selectors[0](act, n) if single else torch.stack([s(act, n) for s in selectors], dim=1)

        return Bound(g, module_of(self.model))  # whose training mode counts
