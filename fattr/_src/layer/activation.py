"""Layer activation: the layer's output (or input) for the given inputs."""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch
from torch.utils import _pytree as pytree

from .. import structure
from ..arguments import as_args
from ..base import ArgsLike, InputsLike, KwargsLike, LayerLike, ModelLike, ResultOrList
from ..calling import explained, module_of
from ..recompute import checkpoint_aux
from ..structure import Tensors
from .split import build


def layer_activation(model: ModelLike, layer: LayerLike, inputs: InputsLike, *, args: ArgsLike = (),
                     kwargs: KwargsLike = None, attribute_to_layer_input: bool = False) -> ResultOrList:
    """The activation of ``layer`` (Captum's LayerActivation), computed by the split's head.

    Only the part of the model the layer depends on runs. The result keeps the
    autograd graph (it is differentiable with respect to the parameters before
    the layer); wrap the call in ``torch.no_grad()`` when that is not needed. Under
    ``torch.compile`` it comes from an inference graph and is recomputed if differentiated.

    Args:
      model: the ``nn.Module``.
      layer: a submodule of ``model`` or its dotted name, or a list of them.
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      args: extra positional arguments of ``model``.
      attribute_to_layer_input: return the layer's input instead of its output.

    Returns:
      The layer's output (or input): a tensor, or a tuple when the layer has
      several; a list of those, one per layer, for a list of layers.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
      >>> x = torch.randn(5, 3)
      >>> fattr.layer_activation(model, "1", x).shape
      torch.Size([5, 4])
      >>> [a.shape for a in fattr.layer_activation(model, ["0", "2"], x)]
      [torch.Size([5, 4]), torch.Size([5, 2])]
    """
    xs, _ = structure.as_tuple(inputs)
    s = build(model, layer, attribute_to_layer_input)
    args = as_args(args, kwargs)

    def run(rows: Tensors, extra: Tuple[Any, ...]) -> Tuple[Tensors, Optional[Tuple[List[Any], Any]]]:
        activation, _ = s.head(*rows, *extra)  # (forward=True: no leaves to name)
        if type(activation) is torch.Tensor:  # the usual case, without the tree
            return (activation,), None
        leaves, spec = pytree.tree_flatten(activation)
        return tuple([t for t in leaves if isinstance(t, torch.Tensor)]), (leaves, spec)

    try:
        values, tree = checkpoint_aux(run, xs, args=args, module=s.owner, forward=True)
    except (RuntimeError, ValueError) as error:  # a clearer error for a cause diagnose recognises
        explained(error, model, module_of(model), xs, args)
        raise
    if tree is None:
        return values[0]
    leaves, spec = tree
    computed = iter(values)
    return pytree.tree_unflatten([next(computed) if isinstance(t, torch.Tensor) else t for t in leaves], spec)
