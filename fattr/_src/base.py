"""The contract's vocabulary: the type aliases and function types every module shares.

Public signatures are typed with these; each names what a parameter may be (see the README's
conventions), so one definition serves the engine, the methods and the adapters.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple, Union

import torch

Tensor = torch.Tensor
Tensors = Tuple[torch.Tensor, ...]
TensorOrTensors = Union[torch.Tensor, Tensors]

# target: None, an int, a tuple (outputs with more than two dims), one entry per example (a list or a
# 1-D tensor), or a list of tuples
TargetLike = Union[None, int, Tuple[int, ...], Sequence[int], Sequence[Tuple[int, ...]], torch.Tensor]
# baselines: None (zeros), a number, a tensor (the input's shape or a batch of 1), a tuple of those,
# or a callable returning them (Captum's conventions: no argument, or the inputs as given)
BaselinesLike = Union[None, float, torch.Tensor, Tuple[Any, ...], Callable[..., Any]]
# extra arguments of f: positional (a value or a tuple) and keyword (a dict)
ArgsLike = Any
KwargsLike = Optional[dict]

# points(alphas, tensors) -> (points, velocities): the path of a path method, (K, B, ...) tensors;
# velocities may be None (then the gradient is not multiplied by them)
PointsFn = Callable[[torch.Tensor, Tensors], Tuple[Tensors, Optional[Tensors]]]
