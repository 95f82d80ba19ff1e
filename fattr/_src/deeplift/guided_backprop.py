"""Guided backpropagation, deconvolution and guided Grad-CAM: ReLU-rule gradients with respect to the inputs."""
from __future__ import annotations

from typing import Any, Callable

from .. import structure
from ..arguments import boundary
from ..base import ArgsLike, Attributions, InputsLike, KwargsLike, LayerLike, ModelLike, Result, TargetLike
from ..errors import check_bool, check_callable, fail
from ..layer.grad_cam import layer_grad_cam
from ..layer.interpolate import interpolate
from .guided import rule_gradients, warn_unguided


def _rule(method: str, deconvolution: bool, model: Callable[..., Any], inputs: Any, target: Any, args: Any,
          kwargs: Any) -> Attributions:
    xs, was_tuple, tgt, args = boundary(model, inputs, target, args, kwargs, "model")
    grads, unguided = rule_gradients(model, xs, tgt, args, deconvolution=deconvolution, model=model)
    warn_unguided(method, unguided, deconvolution)
    return structure.restore(grads, was_tuple)


def guided_backprop(model: ModelLike, inputs: InputsLike, *, target: TargetLike = None, args: ArgsLike = (),
                    kwargs: KwargsLike = None) -> Result:
    """Guided backpropagation (Springenberg et al., 2015), as Captum's GuidedBackprop.

    The gradient of the target output with respect to the inputs, except that every ReLU
    passes back only positive gradient signals, and only where its input was positive:
    ``d_in = relu(d_out) * (x > 0)``. ReLUs are found by intercepting torch's functions
    during the call (no hooks), so a ReLU module used twice, ``F.relu`` and ``torch.relu_``
    all get the rule; other rectifiers (ELU, LeakyReLU, GELU, SiLU, ...) keep their plain
    gradient and are named in a warning. One batched forward and backward pass.

    Args:
      model: the model (an ``nn.Module``, or any callable made of torch operations).
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      target: the output to attribute: None, int, tuple, or one entry per example.
      args: extra positional arguments of ``model``; ``kwargs``: keyword arguments.

    Returns:
      Attributions shaped like ``inputs``.

    Example:
      >>> import torch, fattr
      >>> w = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
      >>> f = lambda x: torch.relu(x @ w) @ torch.tensor([[1.0], [-1.0]])
      >>> x = torch.tensor([[2.0, 1.0]])           # hidden (1, -1): only the first unit is active
      >>> fattr.saliency(f, x, target=0, abs=False)  # the active unit's gradient, signed
      tensor([[ 1., -1.]])
      >>> fattr.guided_backprop(f, x, target=0)      # its signal is positive: passed as is
      tensor([[ 1., -1.]])
      >>> fattr.guided_backprop(lambda x: -f(x), x, target=0)  # a negative signal is stopped
      tensor([[0., 0.]])
    """
    return _rule("guided_backprop", False, model, inputs, target, args, kwargs)


def deconvolution(model: ModelLike, inputs: InputsLike, *, target: TargetLike = None, args: ArgsLike = (),
                  kwargs: KwargsLike = None) -> Result:
    """Deconvolution (Zeiler & Fergus, 2014), as Captum's Deconvolution.

    The gradient of the target output with respect to the inputs, except that every ReLU
    passes back the positive part of the incoming gradient, whatever the sign of its input:
    ``d_in = relu(d_out)``. Same interception, coverage and warning as
    :func:`fattr.guided_backprop`; arguments and result as there.

    Example:
      >>> import torch, fattr
      >>> w = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
      >>> f = lambda x: torch.relu(x @ w) @ torch.tensor([[1.0], [1.0]])
      >>> x = torch.tensor([[2.0, 1.0]])  # hidden (1, -1): the second unit is off, deconvolution passes it
      >>> fattr.deconvolution(f, x, target=0)
      tensor([[0., 0.]])
      >>> fattr.guided_backprop(f, x, target=0)
      tensor([[ 1., -1.]])
    """
    return _rule("deconvolution", True, model, inputs, target, args, kwargs)


def guided_grad_cam(model: ModelLike, layer: LayerLike, inputs: InputsLike, *, target: TargetLike = None,
                    args: ArgsLike = (), kwargs: KwargsLike = None, interpolate_mode: str = "nearest",
                    attribute_to_layer_input: bool = False) -> Result:
    """Guided Grad-CAM (Selvaraju et al., 2017), as Captum's GuidedGradCam.

    :func:`fattr.guided_backprop` times the ReLU'd Grad-CAM map of ``layer``
    (:func:`fattr.layer_grad_cam` with ``relu_attributions=True``) upsampled to each input's
    spatial size with :func:`fattr.interpolate`: ``gb(x) * up(relu(sum_c mean(grad_c) act_c))``.
    An input without spatial dims (``(B, D)``) gets the map of a layer without spatial dims,
    one value per example (Captum returns an empty tensor there); an input whose number of
    spatial dims differs from the layer's is refused (Captum warns and returns an empty tensor).

    Args:
      model: the ``nn.Module``.
      layer: a submodule of ``model`` or its dotted name (usually the last conv layer); one tensor.
      inputs: a tensor ``(B, C, ...)`` or a tuple of them.
      target, args, kwargs: as in :func:`fattr.guided_backprop`.
      interpolate_mode: the upsampling mode of :func:`fattr.interpolate` (``"nearest"``, ``"bilinear"``, ...).
      attribute_to_layer_input: take Grad-CAM at the layer's input instead of its output.

    Returns:
      Attributions shaped like ``inputs``.

    Example:
      >>> import torch, fattr
      >>> cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
      ...                           torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 4))
      >>> x = torch.randn(2, 3, 10, 10)
      >>> fattr.guided_grad_cam(cnn, "1", x, target=3).shape
      torch.Size([2, 3, 10, 10])
    """
    check_callable("model", model)
    check_bool("attribute_to_layer_input", attribute_to_layer_input)
    if not isinstance(interpolate_mode, str):
        fail("interpolate_mode", "a string such as 'nearest' or 'bilinear'", interpolate_mode, kind=TypeError)
    xs, was_tuple = structure.as_tuple(inputs)
    cam = layer_grad_cam(model, layer, inputs, target=target, args=args, kwargs=kwargs, relu_attributions=True,
                         attribute_to_layer_input=attribute_to_layer_input)
    if isinstance(cam, tuple):
        if len(cam) != 1:
            fail("layer", "a layer with one activation tensor (Guided Grad-CAM takes one map)",
                 f"a layer with {len(cam)} tensors")
        cam = cam[0]
    gb = structure.as_tuple(guided_backprop(model, inputs, target=target, args=args, kwargs=kwargs))[0]
    out = []
    for i, (g, x) in enumerate(zip(gb, xs)):
        spatial = tuple(x.shape[2:])
        if cam.dim() - 2 != len(spatial):
            fail(f"inputs[{i}]" if was_tuple else "inputs",
                 f"{cam.dim() - 2} spatial dim(s) after the channel dim, like the Grad-CAM map of shape "
                 f"{tuple(cam.shape)}", x, "Choose a layer whose activation has the input's spatial layout.")
        out.append(g * (interpolate(cam, spatial, mode=interpolate_mode) if spatial else cam))
    return structure.restore(tuple(out), was_tuple)
