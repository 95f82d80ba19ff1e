"""Grad-CAM at a layer: channel-averaged gradients weighting the activation."""
from __future__ import annotations

from typing import Any, Tuple

import torch.nn.functional as F

from ..arguments import boundary
from ..base import ArgsLike, InputsLike, KwargsLike, LayerLike, ModelLike, ResultOrList, TargetLike
from ..errors import check_bool
from ..gradients import gradient_pass
from ..recompute import checkpoint_aux
from ..structure import Tensors
from .view import LayerFunction


def layer_grad_cam(model: ModelLike, layer: LayerLike, inputs: InputsLike, *, target: TargetLike = None,
                   args: ArgsLike = (), kwargs: KwargsLike = None, relu_attributions: bool = False,
                   attr_dim_summation: bool = True, attribute_to_layer_input: bool = False) -> ResultOrList:
    """Grad-CAM (Selvaraju et al., 2017) at a layer, as Captum's LayerGradCam.

    The gradient of the target with respect to the layer's activation ``(B, C, ...)``
    is averaged over the dims after the channel dim (dim 1), multiplied by the
    activation and summed over channels: ``sum_c mean(grad_c) * act_c``, shape
    ``(B, 1, ...)``. Use :func:`fattr.interpolate` to upsample it to the input.

    Args:
      model: the ``nn.Module``.
      layer: a submodule of ``model`` or its dotted name (usually the last conv layer).
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      target: the output to attribute (None, int, tuple, or one entry per example).
      args: extra positional arguments of ``model``.
      relu_attributions: apply a ReLU to the result (the original Grad-CAM).
      attr_dim_summation: sum over channels; if False keep them, shape like the activation.
      attribute_to_layer_input: use the layer's input instead of its output.

    Returns:
      A tensor ``(B, 1, ...)`` (a tuple for layers with several tensors).

    Example:
      >>> import torch, fattr
      >>> cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
      ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))
      >>> x = torch.randn(2, 3, 10, 10)
      >>> cam = fattr.layer_grad_cam(cnn, "0", x, target=1, relu_attributions=True)
      >>> cam.shape, fattr.interpolate(cam, (10, 10)).shape
      (torch.Size([2, 1, 8, 8]), torch.Size([2, 1, 10, 10]))
    """
    check_bool("relu_attributions", relu_attributions)
    check_bool("attr_dim_summation", attr_dim_summation)
    xs, _, tgt, args = boundary(model, inputs, target, args, kwargs, "model")
    lf = LayerFunction(model, layer, attribute_to_layer_input)

    def run(rows: Tensors, extra: Tuple[Any, ...]) -> Tuple[Tensors, Tuple[Any, ...]]:
        acts, rest = lf.head(rows, extra)  # head and gradients: one checkpoint
        out = []
        for g, a in zip(gradient_pass(lf.function(), acts, tgt, rest), acts):
            weights = g.mean(dim=tuple(range(2, g.dim())), keepdim=True) if g.dim() > 2 else g
            cam = (weights * a).sum(dim=1, keepdim=True) if attr_dim_summation else weights * a
            out.append(F.relu(cam) if relu_attributions else cam)
        return tuple(out), rest[-1:]

    return lf.restore(*checkpoint_aux(run, xs, args=args, module=lf.model, traceable=True))
