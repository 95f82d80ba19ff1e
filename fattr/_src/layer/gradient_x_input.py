"""pnpxai's GradientXInput: input x gradient, or gradient x activation at one or more layers."""
from __future__ import annotations

from typing import Optional

from ..arguments import as_args
from ..base import ArgsLike, InputsLike, KwargsLike, LayerLike, ModelLike, ResultOrList, TargetLike
from ..errors import fail
from ..saliency import input_x_gradient
from .gradient_x_activation import layer_gradient_x_activation


def gradient_x_input(model: ModelLike, inputs: InputsLike, *, target: TargetLike = None, args: ArgsLike = (),
                     kwargs: KwargsLike = None, layer: Optional[LayerLike] = None) -> ResultOrList:
    """Gradient x Input (pnpxai's GradientXInput, Shrikumar et al., 2016).

    Without ``layer``: :func:`fattr.input_x_gradient` (``model`` may be any
    callable). With a layer: :func:`fattr.layer_gradient_x_activation` at that
    layer. With a list of layers: a list, one result per layer (as every layer method returns
    for a list of layers).

    Args:
      model: the model (an ``nn.Module`` when ``layer`` is given).
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      target: the output to attribute (None, int, tuple, or one entry per example).
      args: extra positional arguments of ``model``.
      layer: None, a submodule of ``model`` or its dotted name, or a list of them.

    Returns:
      Attributions shaped like ``inputs``, or like the layer's activation, or a
      list of those (one per layer).

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
      >>> x = torch.randn(5, 3)
      >>> fattr.gradient_x_input(model, x, target=0).shape
      torch.Size([5, 3])
      >>> [a.shape for a in fattr.gradient_x_input(model, x, target=0, layer=["0", "1"])]
      [torch.Size([5, 4]), torch.Size([5, 4])]
    """
    args = as_args(args, kwargs)
    if layer is None:
        return input_x_gradient(model, inputs, target=target, args=args)
    if isinstance(layer, (list, tuple)) and not layer:
        fail("layer", "None, a layer, or a non-empty list of layers", layer)
    return layer_gradient_x_activation(model, layer, inputs, target=target, args=args)
