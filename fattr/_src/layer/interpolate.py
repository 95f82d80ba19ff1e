"""Upsampling layer attributions to the input's size."""
from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F

from ..errors import check_choice, fail

MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")
_MODE_DIMS = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5}


def interpolate(layer_attributions: torch.Tensor, size: Union[int, Sequence[int]],
                mode: str = "nearest") -> torch.Tensor:
    """Resize layer attributions ``(B, C, *spatial)`` to ``size`` (Captum's ``LayerAttribution.interpolate``).

    Typically used to overlay a Grad-CAM map ``(B, 1, h, w)`` on an image ``(B, 3, H, W)``.

    Args:
      layer_attributions: a tensor with 3, 4 or 5 dims: examples, channels, then 1 to 3 spatial dims.
      size: the spatial size: an int, or one int per spatial dim.
      mode: ``"nearest"`` (default), ``"nearest-exact"``, ``"area"``, ``"linear"`` (3-D
        tensors), ``"bilinear"``/``"bicubic"`` (4-D) or ``"trilinear"`` (5-D).

    Returns:
      A tensor ``(B, C, *size)``.

    Example:
      >>> import torch, fattr
      >>> cam = torch.arange(4.0).reshape(1, 1, 2, 2)
      >>> fattr.interpolate(cam, (4, 4))[0, 0]
      tensor([[0., 0., 1., 1.],
              [0., 0., 1., 1.],
              [2., 2., 3., 3.],
              [2., 2., 3., 3.]])
    """
    if not isinstance(layer_attributions, torch.Tensor):
        fail("layer_attributions", "a tensor (B, C, *spatial)", layer_attributions, kind=TypeError)
    if layer_attributions.dim() not in (3, 4, 5):
        fail("layer_attributions", "a tensor with 3, 4 or 5 dims (examples, channels, 1 to 3 spatial dims)",
             layer_attributions)
    check_choice("mode", mode, MODES)
    spatial = layer_attributions.dim() - 2
    if isinstance(size, bool) or not (isinstance(size, int) or (
            isinstance(size, (tuple, list)) and all(isinstance(s, int) and not isinstance(s, bool) for s in size))):
        fail("size", f"an int or {spatial} ints (the spatial size)", size, kind=TypeError)
    if isinstance(size, (tuple, list)) and len(size) != spatial:
        fail("size", f"{spatial} ints for a {layer_attributions.dim()}-dim tensor", size)
    if any(s < 1 for s in ([size] if isinstance(size, int) else size)):
        fail("size", "positive sizes", size)
    if mode in _MODE_DIMS and _MODE_DIMS[mode] != layer_attributions.dim():
        fail("mode", f"a mode for {layer_attributions.dim()}-dim tensors ('{mode}' needs "
             f"{_MODE_DIMS[mode]} dims)", mode)
    return F.interpolate(layer_attributions, size=tuple(size) if isinstance(size, (tuple, list)) else size, mode=mode)
