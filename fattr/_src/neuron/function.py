"""A neuron as a function of the inputs: ``select(head(*inputs, *args))``.

The model is split at the layer (:func:`..layer.split.build`); only the head (the part of the
model up to the layer) runs, and the selector picks the neuron of every row. Every neuron method
is an input-space method applied to this function, so it inherits that method's batching,
chunking, purity and differentiability. Several selectors at once (a list) give a function with
one column per selector; the inputs are then tiled once per selector (block ``s`` of the rows
belongs to selector ``s``) and each block's column is its target, so all neurons go through one
batched pass.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import torch

from .. import structure
from ..arguments import as_args, tile, tile_args
from ..base import Attributions
from ..baselines import format_baselines
from ..calling import Bound, module_of
from ..errors import check_bool, check_callable
from ..layer.split import build
from ..structure import Tensors
from .selector import Selector, as_selectors

Tensor = torch.Tensor


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
            if single:
                return selectors[0](act, n)
            return torch.stack([s(act, n) for s in selectors], dim=1)

        return Bound(g, module_of(self.model))  # whose training mode counts

    # ---- several selectors: one block of rows per selector
    def tiled(self, xs: Tensors, args: Tuple[Any, ...], baselines: Any = None, per_example_baselines: bool = False
              ) -> Tuple[Tensors, Tuple[Any, ...], Optional[Tensors], Tensor]:
        """``(inputs, args, baselines, target)`` with every example repeated once per selector, block-major
        (``baselines`` too when they are per example: None and numbers mean zeros and constants)."""
        n, k = xs[0].shape[0], len(self.selectors)
        bases = None
        if per_example_baselines:
            bases = tuple(tile(b.expand_as(x), k) for b, x in zip(format_baselines(baselines, xs), xs))
        target = torch.arange(k, device=xs[0].device).repeat_interleave(n)
        return tuple(tile(x, k) for x in xs), tile_args(args, n, k), bases, target

    def untile(self, result: Any, was_tuple: bool) -> List[Attributions]:
        """Per selector, its block of the rows, in the inputs' structure."""
        parts, _ = structure.as_tuple(result)
        k = len(self.selectors)
        blocks = [structure.unfold(p, k) for p in parts]
        return [structure.restore(tuple(b[s] for b in blocks), was_tuple) for s in range(k)]
