"""Layer Gradient x Activation: the gradient of the target with respect to the layer, times the activation."""
from __future__ import annotations

from typing import Any, Sequence, Tuple, cast

from ..arguments import boundary
from ..base import ArgsLike, InputsLike, KwargsLike, LayerLike, ModelLike, ResultOrList, TargetLike
from ..errors import check_bool, fail
from ..gradients import gradient_pass
from ..recompute import checkpoint_aux
from ..structure import Tensors
from .view import LayerFunction


def layer_gradient_x_activation(model: ModelLike, layer: LayerLike, inputs: InputsLike, *, target: TargetLike = None,
                                args: ArgsLike = (), kwargs: KwargsLike = None, multiply_by_inputs: bool = True,
                                attribute_to_layer_input: bool = False) -> ResultOrList:
    """Gradient x activation at a layer (Captum's LayerGradientXActivation).

    ``activation * d model(inputs)[target] / d activation``: one head pass and one
    batched forward and backward pass of the tail.

    Args:
      model: the ``nn.Module``.
      layer: a submodule of ``model`` or its dotted name, or a list of them (each
        is attributed on its own, with the other layers left free: Captum's semantics).
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      target: the output to attribute (None, int, tuple, or one entry per example).
      args: extra positional arguments of ``model``.
      multiply_by_inputs: if False, return the gradient alone.
      attribute_to_layer_input: attribute to the layer's input instead of its output.

    Returns:
      Attributions shaped like the layer's activation (a tuple when it has
      several tensors); a list, one per layer, for a list of layers.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
      >>> attr = fattr.layer_gradient_x_activation(model, "1", torch.randn(5, 3), target=0)
      >>> attr.shape
      torch.Size([5, 4])
    """
    check_bool("multiply_by_inputs", multiply_by_inputs)
    xs, _, tgt, args = boundary(model, inputs, target, args, kwargs, "model")
    many, out = isinstance(layer, (list, tuple)), []
    if many and not layer:
        fail("layer", "a non-empty list of modules or dotted names", layer)
    for i, item in enumerate(cast(Sequence[Any], layer) if many else [layer]):  # each layer on its own, the others left free
        lf = LayerFunction(model, item, attribute_to_layer_input, name=f"layer[{i}]" if many else "layer")

        def run(rows: Tensors, extra: Tuple[Any, ...], lf: LayerFunction = lf) -> Tuple[Tensors, Tuple[Any, ...]]:
            acts, rest = lf.head(rows, extra)  # head and gradients: one checkpoint
            grads = gradient_pass(lf.function(), acts, tgt, rest)
            return tuple(g * a if multiply_by_inputs else g for g, a in zip(grads, acts)), rest[-1:]

        out.append(lf.restore(*checkpoint_aux(run, xs, args=args, module=lf.model, traceable=True)))
    return out if many else out[0]
