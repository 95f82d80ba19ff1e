"""A split seen by the core engine: the model as ``f(*activations, *rest)``.

Layer methods are core methods applied to the tail. :class:`LayerFunction`
flattens the head's outputs into what the core takes: a tuple of activation
tensors (all layers' tensors, in order) as the *inputs*, and the leaves of
``rest`` as *args*, so the core pairs the per-example values of ``rest`` with
their example at every path step or sample (the usual ``args`` rule: a tensor
whose dim 0 is the batch size is per example). :meth:`LayerFunction.restore`
turns flat attributions back into the activation's structure.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch.utils import _pytree as pytree

from ..arguments import split_args
from ..calling import Bound, explained
from ..errors import fail
from ..recompute import checkpoint, reads
from ..structure import Tensors
from .split import build

# per layer: (activation was a tuple, number of tensors)
Layout = Tuple[Tuple[bool, int], ...]


class LayerFunction:
    """One split of ``model`` at ``layer``, with the flattening the core methods need.

    Args:
      model, layer, attribute_to_layer_input: as in :func:`fattr.split` (``model`` may be any
        callable whose computation calls ``layer``).
      name: the argument name used in error messages.
      allow_list: accept a list of layers (the result is then a list).
    """

    def __init__(self, model: Any, layer: Any, attribute_to_layer_input: bool, *, name: str = "layer",
                 allow_list: bool = False, exportable: bool = True) -> None:
        self.split = build(model, layer, attribute_to_layer_input, name=name, allow_list=allow_list,
                           exportable=exportable, once=True)
        self.f = model
        self.model = self.split.owner  # whose parameters and training mode count
        self.name = name
        self.to_input = attribute_to_layer_input
        self.layout: Optional[Layout] = None
        self.spec: Optional[pytree.TreeSpec] = None

    @property
    def n_tensors(self) -> int:
        assert self.layout is not None
        return sum(k for _, k in self.layout)

    def _label(self, i: int) -> str:
        return f"{self.name}[{i}]" if self.split.was_list else self.name

    def head(self, inputs: Tensors, args: Sequence[Any], *, gradient: bool = True) -> Tuple[Tensors, Tuple[Any, ...]]:
        """``(activations, rest_leaves)`` for ``inputs`` (B rows): flat activation tensors, each ``(B, ...)``.

        ``gradient``: the method differentiates with respect to the activation (it must be floating point).
        The head runs without a graph (so modules keep their inference fast paths) and its results
        are differentiable on demand (:mod:`..recompute`); a model in training mode keeps the graph.
        """
        arg_tensors, rebuild = split_args(args)
        k = len(inputs)
        structure_of: List[Any] = []

        def run(tensors: Tensors) -> Tensors:  # without grad: modules keep their inference fast paths
            flat, leaves = self._head(tensors[:k], rebuild(tensors[k:]), gradient)
            structure_of[:] = [len(flat), leaves]
            reads(self.model)  # None (a function whose modules fattr cannot see): unknown, the graph is kept
            return flat + tuple(t for t in leaves if isinstance(t, torch.Tensor))

        values = checkpoint(run, tuple(inputs) + arg_tensors, module=self.model)
        n_flat, leaves = structure_of
        carried = iter(values[n_flat:])
        return values[:n_flat], tuple(next(carried) if isinstance(t, torch.Tensor) else t for t in leaves)

    def _head(self, inputs: Tensors, args: Sequence[Any], gradient: bool) -> Tuple[Tensors, Tuple[Any, ...]]:
        try:
            activation, rest = self.split.head(*inputs, *args)
        except (RuntimeError, ValueError) as error:  # a clearer error for a cause diagnose recognises
            explained(error, self.f, self.model, inputs, args)
            raise
        n = inputs[0].shape[0]
        per_layer = activation if self.split.was_list else [activation]
        flat: List[torch.Tensor] = []
        layout = []
        where = "input" if self.to_input else "output"
        for i, a in enumerate(per_layer):
            is_tuple = isinstance(a, (tuple, list))
            items = list(a) if is_tuple else [a]
            if not items or not all(isinstance(t, torch.Tensor) for t in items):
                fail(self._label(i), f"a layer whose {where} is a tensor or a tuple of tensors", a,
                     "Choose a layer with tensor activations (e.g. a submodule of this one).", kind=TypeError)
            for t in items:
                if t.dim() == 0 or t.shape[0] != n:
                    fail(self._label(i), f"a layer whose {where} has the {n} examples along dim 0", t,
                         "fattr folds path steps into dim 0, so the layer must keep examples there.")
                if gradient and not (t.is_floating_point() or t.is_complex()):
                    fail(self._label(i), f"a layer whose {where} is floating point (a gradient method "
                         "differentiates with respect to it)", t,
                         "For integer inputs such as token ids, attribute to the embedding's output instead.",
                         kind=TypeError)
            flat.extend(items)
            layout.append((is_tuple, len(items)))
        if self.layout is None:
            self.layout = tuple(layout)
        leaves, spec = pytree.tree_flatten(rest)
        if self.spec is None:
            self.spec = spec
        return tuple(flat), tuple(leaves)

    def _pack(self, flat: Sequence[Any]) -> List[Any]:
        assert self.layout is not None
        out, i = [], 0
        for is_tuple, k in self.layout:
            out.append(tuple(flat[i:i + k]) if is_tuple else flat[i])
            i += k
        return out

    def function(self) -> Callable[..., Any]:
        """``f(*activations, *rest_leaves) -> model output``: the tail, for the core engine."""
        assert self.spec is not None
        k, spec, tail, was_list = self.n_tensors, self.spec, self.split.tail, self.split.was_list

        def f(*values: Any) -> Any:
            packed = self._pack(values[:k])
            rest = pytree.tree_unflatten(list(values[k:]), spec)
            return tail(packed if was_list else packed[0], rest)

        return Bound(f, self.model)  # whose training mode counts

    def restore(self, flat: Sequence[torch.Tensor]) -> Any:
        """Flat per-tensor results in the activation's structure (a list for a list of layers)."""
        packed = self._pack(flat)
        return packed if self.split.was_list else packed[0]

