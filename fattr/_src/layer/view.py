"""A split seen by the core engine: the model as ``f(*activations, *rest)``.

Layer methods are core methods applied to the tail. :class:`LayerFunction`
flattens the head's outputs into what the core takes: a tuple of activation
tensors (all layers' tensors, in order) as the *inputs*, and the leaves of
``rest`` as *args*, so the core pairs the per-example values of ``rest`` with
their example at every path step or sample (the usual ``args`` rule: a tensor
whose dim 0 is the batch size is per example). The last arg is a :class:`Packing`
(how the flat values fold back), so the tail and :meth:`LayerFunction.restore`
read it from the head's result: a :class:`LayerFunction` is a value, never changed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils import _pytree as pytree

from ..base import ResultOrList
from ..calling import Bound, explained
from ..errors import fail
from ..recompute import checkpoint_aux, reads
from ..structure import Tensors
from .capture import pack
from .split import Split, Ticket, build

_FLAT = (torch.Tensor, nn.Parameter, Ticket)  # exact types pytree treats as leaves


@dataclass(frozen=True)
class Packing:
    """How a head's flat values fold back: per layer ``(was a tuple, number of tensors)``, and the
    structure of ``rest``. The last entry of :meth:`LayerFunction.head`'s ``rest``."""

    layout: Tuple[Tuple[bool, int], ...]
    spec: Optional[pytree.TreeSpec]  # None: ``rest`` was a flat tuple of tensors (and the ticket)


@dataclass(frozen=True)
class LayerFunction:
    """One split of ``model`` at ``layer``, with the flattening the core methods need.

    Args:
      model, layer, attribute_to_layer_input: as in :func:`fattr.split` (``model`` may be any
        callable whose computation calls ``layer``; ``layer`` may be a split of it).
      name: the argument name used in error messages.
      allow_list: accept a list of layers (the result is then a list).
    """

    split: Split
    name: str
    model: Optional[nn.Module] = field(init=False)  # the module whose parameters and training mode count
    _run_head: Callable[..., Tuple[Any, Tuple[Any, ...]]] = field(init=False, repr=False, compare=False)

    def __init__(self, model: Any, layer: Any, attribute_to_layer_input: bool, *, name: str = "layer",
                 allow_list: bool = False, exportable: bool = True) -> None:
        object.__setattr__(self, "split", build(model, layer, attribute_to_layer_input, name=name,
                                                allow_list=allow_list, exportable=exportable))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "model", self.split.owner)
        # the heads of one LayerFunction (one attribution call) check the model's fingerprint once
        session = self.split.session
        object.__setattr__(self, "_run_head", session() if session is not None else self.split.head)

    def head(self, inputs: Tensors, args: Sequence[Any], *, gradient: bool = True) -> Tuple[Tensors, Tuple[Any, ...]]:
        """``(activations, rest_leaves)`` for ``inputs`` (B rows): flat activation tensors, each ``(B, ...)``;
        the last entry of ``rest_leaves`` is their :class:`Packing`.

        ``gradient``: the method differentiates with respect to the activation (it must be floating point).
        The head runs without a graph (so modules keep their inference fast paths) and its results
        are differentiable on demand (:mod:`..recompute`); a model in training mode keeps the graph.
        """
        def run(rows: Tensors, extra: Tuple[Any, ...]) -> Tuple[Tensors, Tuple[Any, ...]]:
            flat, leaves, packing = self._head(rows, extra, gradient)  # without grad: inference fast paths
            # the model's tensors (None: a function whose modules fattr cannot see: unknown, the graph is
            # kept), and what the head read from outside it (:attr:`.split.Ticket.outside`)
            reads(self.model, *leaves[-1].outside)
            return flat + tuple([t for t in leaves if isinstance(t, torch.Tensor)]), (len(flat), leaves, packing)

        values, (n_flat, leaves, packing) = checkpoint_aux(run, inputs, args=args, module=self.model)
        carried = iter(values[n_flat:])
        return values[:n_flat], tuple([next(carried) if isinstance(t, torch.Tensor) else t for t in leaves]) + (packing,)

    def _head(self, inputs: Tensors, args: Sequence[Any], gradient: bool
              ) -> Tuple[Tensors, Tuple[Any, ...], Packing]:
        try:
            activation, rest = self._run_head(*inputs, *args)
        except (RuntimeError, ValueError) as error:  # a clearer error for a cause diagnose recognises
            explained(error, self.split.model, self.model, inputs, args)
            raise
        n = inputs[0].shape[0]
        flat: List[torch.Tensor] = []
        layout = []
        where = "input" if self.split.to_input else "output"
        for i, a in enumerate(activation if self.split.was_list else [activation]):
            is_tuple, label = isinstance(a, (tuple, list)), f"{self.name}[{i}]" if self.split.was_list else self.name
            items = list(a) if is_tuple else [a]
            if not items or not all([isinstance(t, torch.Tensor) for t in items]):
                fail(label, f"a layer whose {where} is a tensor or a tuple of tensors", a,
                     "Choose a layer with tensor activations (e.g. a submodule of this one).", kind=TypeError)
            for t in items:
                if t.dim() == 0 or t.shape[0] != n:
                    fail(label, f"a layer whose {where} has the {n} examples along dim 0", t,
                         "fattr folds path steps into dim 0, so the layer must keep examples there.")
                if gradient and not (t.is_floating_point() or t.is_complex()):
                    fail(label, f"a layer whose {where} is floating point (a gradient method "
                         "differentiates with respect to it)", t,
                         "For integer inputs such as token ids, attribute to the embedding's output instead.",
                         kind=TypeError)
            flat.extend(items)
            layout.append((is_tuple, len(items)))
        if type(rest) is tuple and all([type(v) in _FLAT for v in rest]):  # the common case, without pytree
            return tuple(flat), rest, Packing(tuple(layout), None)
        leaves, spec = pytree.tree_flatten(rest)
        return tuple(flat), tuple(leaves), Packing(tuple(layout), spec)

    def function(self) -> Callable[..., Any]:
        """``f(*activations, *rest_leaves) -> model output``: the tail, for the core engine (``rest_leaves``
        as :meth:`head` returns them, the :class:`Packing` last)."""
        tail, was_list = self.split.tail, self.split.was_list

        def f(*values: Any) -> Any:
            packing = values[-1]
            k = sum([n for _, n in packing.layout])
            packed = pack(packing.layout, values[:k])
            rest = (tuple(values[k:-1]) if packing.spec is None
                    else pytree.tree_unflatten(list(values[k:-1]), packing.spec))
            return tail(packed if was_list else packed[0], rest)

        return Bound(f, self.model)  # whose training mode counts

    def restore(self, flat: Sequence[torch.Tensor], rest: Sequence[Any]) -> ResultOrList:
        """Flat per-tensor results in the activation's structure (a list for a list of layers); ``rest``
        as :meth:`head` returned it."""
        packed = pack(rest[-1].layout, flat)
        return packed if self.split.was_list else packed[0]
