"""Captum 0.9's ReLU-rule classes (guided backpropagation, deconvolution, guided Grad-CAM) on fattr's
functions; see :mod:`.classes` for the pattern."""
from __future__ import annotations

from typing import Any

import torch

from ..deeplift.guided_backprop import deconvolution, guided_backprop, guided_grad_cam
from .base import Attribution


class GuidedBackprop(Attribution):
    """Captum's ``GuidedBackprop`` on :func:`fattr.guided_backprop` (every ReLU call, modules reused or
    functional included; no hooks left on the model)."""

    fn = staticmethod(guided_backprop)

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self.model = model

    def attribute(self, inputs: Any, target: Any = None, additional_forward_args: Any = None) -> Any:
        return self._call(inputs, target=target, additional_forward_args=additional_forward_args)


class Deconvolution(Attribution):
    """Captum's ``Deconvolution`` on :func:`fattr.deconvolution`."""

    fn = staticmethod(deconvolution)

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self.model = model

    def attribute(self, inputs: Any, target: Any = None, additional_forward_args: Any = None) -> Any:
        return self._call(inputs, target=target, additional_forward_args=additional_forward_args)


class GuidedGradCam(Attribution):
    """Captum's ``GuidedGradCam`` on :func:`fattr.guided_grad_cam`."""

    fn = staticmethod(guided_grad_cam)
    layer_method = True

    def __init__(self, model: torch.nn.Module, layer: torch.nn.Module, device_ids: Any = None) -> None:
        super().__init__(model, layer, device_ids=device_ids)
        self.model = model

    def attribute(self, inputs: Any, target: Any = None, additional_forward_args: Any = None,
                  interpolate_mode: str = "nearest", attribute_to_layer_input: bool = False) -> Any:
        return self._call(inputs, target=target, additional_forward_args=additional_forward_args,
                          interpolate_mode=interpolate_mode, attribute_to_layer_input=attribute_to_layer_input)
