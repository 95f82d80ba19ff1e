"""A neuron as a function of the inputs: ``select(head(*inputs, *args))``.

The model is split at the layer (:func:`..layer.split.build`); only the head (the part of the
model up to the layer) runs, and the selector picks the neuron of every row. Every neuron method
is an input-space method applied to this function, so it inherits that method's batching,
chunking, purity and differentiability. Several selectors at once (a list) give a function with
one column per selector (:func:`.methods._attribute` tiles the inputs once per selector).
"""
from __future__ import annotations

from typing import Any, Callable, List

import torch

from ..arguments import as_args
from ..base import Tensor
from ..calling import Bound, module_of
from ..errors import check_bool, check_callable
from ..layer.split import build
from .selector import Selector, as_selectors


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
