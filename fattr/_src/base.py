"""The contract's vocabulary: the type aliases and function types every module shares.

Public signatures are typed with these; each names what a parameter may be (see the README's
conventions), so one definition serves the engine, the methods and the adapters.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, ForwardRef, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

if TYPE_CHECKING:
    from .layer.split import Split
else:  # resolved where it is defined (typing.get_type_hints), without importing it here: it imports this module
    Split = ForwardRef("Split", module="fattr._src.layer.split")

Tensor = torch.Tensor
Tensors = Tuple[torch.Tensor, ...]
TensorOrTensors = Union[torch.Tensor, Tensors]

# f (model): any callable taking the inputs, then args, then kwargs by name, with examples along dim 0
# (an nn.Module or a function); for a layer method, one whose computation calls the layer (a layer given by
# its dotted name needs an nn.Module)
ModelLike = Callable[..., Any]
# inputs: a tensor (B, ...), or a tuple of them for a multi-input f
InputsLike = TensorOrTensors
# attributions (a parameter): the inputs' structure and shapes (the layer's, for a layer method)
Attributions = TensorOrTensors
# What a method returns. Its structure follows the call: the inputs' (a tuple for a tuple input; the
# layer's for a layer method), a list with one entry per layer or neuron selector for a list of them, and
# ``(attributions, delta)`` with ``return_delta=True`` (``delta`` (B,), one per example and baseline pair
# for the SHAP variants). A signature cannot say which without an @overload per combination (and a
# layer's structure is not known statically at all), so results are typed ``Union[Tensor, Any]``
# (typeshed's "Any trick"): code written for a tensor input type-checks without casts, and using a result
# as something no tensor is (a misspelt attribute) is still an error. The four names say which of the
# structures above a method can return; each docstring's Returns section says when.
Result = Union[torch.Tensor, Any]
WithDelta = Result  # the attributions, or (attributions, delta) with return_delta=True
ResultOrList = Result  # ... or a list of them, for a list of layers or neuron selectors
WithDeltaOrList = Result  # both
# layer: a submodule of the model or its dotted name; a list of them for several layers at once; or a
# reusable split of the model at it (:func:`fattr.split`)
LayerLike = Union[nn.Module, str, Sequence[Union[nn.Module, str]], Split]
# stdevs: one standard deviation of the noise for every input, or one per input
StdevsLike = Union[float, Tuple[float, ...]]
# feature_mask: integer feature ids broadcastable to the input (batch of 1 or B), a tuple with one per
# input; None: every element its own feature
FeatureMaskLike = Union[None, torch.Tensor, Tuple[torch.Tensor, ...]]
# neuron_selector: an int (a column of a (B, N) activation), a tuple of ints and slices (one per dim after
# the batch dim; a region summed per example), a callable on the activation giving one value per example,
# or a list of these (several neurons in one pass)
_Neuron = Union[int, Tuple[Union[int, slice], ...], Callable[..., torch.Tensor]]
NeuronSelectorLike = Union[_Neuron, List[_Neuron]]

# target: None, an int, a tuple (outputs with more than two dims), one entry per example (a list or a
# 1-D tensor), or a list of tuples
TargetLike = Union[None, int, Tuple[int, ...], Sequence[int], Sequence[Tuple[int, ...]], torch.Tensor]
# baselines: None (zeros), a number, a tensor (the input's shape or a batch of 1), a tuple of those,
# or a callable returning them (Captum's conventions: no argument, or the inputs as given)
BaselinesLike = Union[None, float, torch.Tensor, Tuple[Any, ...], Callable[..., Any]]
# extra arguments of f: positional (a value or a tuple) and keyword (a dict)
ArgsLike = Any
KwargsLike = Optional[Dict[str, Any]]

# points(steps, tensors) -> (rows, velocities[, args]): a path method's points at the steps (a slice), K*B rows
# step-major; velocities shaped like them or None (the gradient is then not multiplied); args, per row, follow f's
PointsFn = Callable[[slice, Tensors], Tuple[Any, ...]]
