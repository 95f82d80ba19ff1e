"""Captum's ``LRP`` and ``LayerLRP`` on :func:`fattr.lrp` and :func:`fattr.layer_lrp` (:mod:`fattr.captum`).

Rules are read from the modules' ``rule`` attributes, Captum's rule objects included, as Captum does; unlike
Captum, nothing is attached to the model and the attributes are left in place (Captum deletes them after
each call).
"""
from __future__ import annotations

from typing import Any

import torch

from ..compat.base import Attribution, captum
from ..base import TargetLike
from .. import structure
from .lrp import _delta, layer_lrp, lrp
from .plan import plan



class _Rules(Attribution):
    def _verbose_call(self, inputs: Any, verbose: bool, **arguments: Any) -> Any:
        if verbose:  # Captum's lines, one per layer with a rule
            for _, module, rule in plan(self.forward_func).layers:
                print(f"Applied {rule} on layer {module}")
        return self._call(inputs, **arguments)

    def compute_convergence_delta(self, attributions: Any, output: Any, end_point: Any = None, target: Any = None,
                                  additional_forward_args: Any = None) -> torch.Tensor:
        """Captum's LRP delta, ``compute_convergence_delta(attributions, output)``: ``output - sum(attributions)``
        per example, in float64 (``output``: the target outputs; the other arguments are not used)."""
        return _delta(structure.as_tuple(attributions, "attributions")[0], torch.as_tensor(output).flatten())


class LRP(_Rules, fn=lrp, delta=True, multiplies=True, init=captum("model")):
    """Captum's ``LRP`` on :func:`fattr.lrp`.

    Example:
      >>> import torch
      >>> from fattr.captum import LRP
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
      >>> relevance, delta = LRP(model).attribute(torch.rand(5, 3), target=1, return_convergence_delta=True)
      >>> relevance.shape, delta.shape
      (torch.Size([5, 3]), torch.Size([5]))
    """

    def attribute(self, inputs: Any, target: TargetLike = None, additional_forward_args: Any = None,
                  return_convergence_delta: bool = False, verbose: bool = False) -> Any:
        """Captum's ``LRP.attribute``: relevances shaped like ``inputs`` (and the delta)."""
        return self._verbose_call(inputs, verbose, target=target, additional_forward_args=additional_forward_args,
                                  return_convergence_delta=return_convergence_delta)


class LayerLRP(_Rules, fn=layer_lrp, layer_method=True, delta=True, multiplies=True, init=captum("model", "layer")):
    """Captum's ``LayerLRP`` on :func:`fattr.layer_lrp` (one layer; Captum also takes a list).

    Example:
      >>> import torch
      >>> from fattr.captum import LayerLRP
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
      >>> LayerLRP(model, model[0]).attribute(torch.rand(5, 3), target=1).shape
      torch.Size([5, 4])
    """

    def attribute(self, inputs: Any, target: TargetLike = None, additional_forward_args: Any = None,
                  return_convergence_delta: bool = False, attribute_to_layer_input: bool = False,
                  verbose: bool = False) -> Any:
        """Captum's ``LayerLRP.attribute``: relevances shaped like the layer's output or input (and the delta)."""
        return self._verbose_call(inputs, verbose, target=target, additional_forward_args=additional_forward_args,
                                  return_convergence_delta=return_convergence_delta,
                                  attribute_to_layer_input=attribute_to_layer_input)
