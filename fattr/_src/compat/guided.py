"""Captum 0.9's ReLU-rule classes (guided backpropagation, deconvolution, guided Grad-CAM) on fattr's
functions; see :mod:`.classes` for the pattern."""
from __future__ import annotations

from ..deeplift.guided_backprop import deconvolution, guided_backprop, guided_grad_cam
from .base import Attribution, captum


class GuidedBackprop(Attribution, fn=guided_backprop, init=captum("model"),
                     attribute=captum("inputs", target=None, additional_forward_args=None)):
    """Captum's ``GuidedBackprop`` on :func:`fattr.guided_backprop` (every ReLU call, modules reused or
    functional included; no hooks left on the model)."""


class Deconvolution(Attribution, fn=deconvolution, init=captum("model"),
                    attribute=captum("inputs", target=None, additional_forward_args=None)):
    """Captum's ``Deconvolution`` on :func:`fattr.deconvolution`."""


class GuidedGradCam(Attribution, fn=guided_grad_cam, layer_method=True,
                    init=captum("model", "layer", device_ids=None),
                    attribute=captum("inputs", target=None, additional_forward_args=None, interpolate_mode="nearest",
                                     attribute_to_layer_input=False)):
    """Captum's ``GuidedGradCam`` on :func:`fattr.guided_grad_cam`."""
