"""Occlusion: slide a window over each input, replace it by the baseline, measure the output's change."""
from __future__ import annotations

import math
from typing import Any, List, Tuple, Union

import torch

from .. import structure
from ..base import ArgsLike, BaselinesLike, InputsLike, KwargsLike, ModelLike, Result, TargetLike
from ..baselines import format_baselines
from ..errors import fail
from ..structure import Tensors
from .evaluate import Evaluator, differentiable, in_chunks, prepare, replace
from .progress import Progress

Shape = Tuple[int, ...]


def _is_ints(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _per_input(value: Any, xs: Tensors, name: str, scalar_ok: bool) -> List[Any]:
    """One entry per input: a tuple of entries for tuple inputs, or one entry serving every input."""
    if isinstance(value, tuple) and value and not _is_ints(value):
        if len(value) != len(xs):
            fail(name, f"a tuple of {len(xs)} entries, one per input", value)
        return list(value)
    if not scalar_ok and not _is_ints(value):
        fail(name, "a tuple of ints (one per input dim after the batch) or a tuple of them, one per input",
             value, kind=TypeError)
    return [value] * len(xs)


def _windows(sliding_window_shapes: Any, strides: Any, xs: Tensors) -> List[Tuple[Shape, Shape, Shape]]:
    """Per input: window shape, strides and the number of window positions along each dim."""
    out = []
    shapes = _per_input(sliding_window_shapes, xs, "sliding_window_shapes", scalar_ok=False)
    steps = _per_input(1 if strides is None else strides, xs, "strides", scalar_ok=True)
    for i, (w, s, x) in enumerate(zip(shapes, steps, xs)):
        dims = tuple(x.shape[1:])
        label = f"[{i}]" if len(xs) > 1 else ""
        if not _is_ints(w) or len(w) != len(dims) or any(v < 1 for v in w):
            fail("sliding_window_shapes" + label, f"{len(dims)} positive ints for an input of shape {tuple(x.shape)}",
                 w, kind=TypeError if not _is_ints(w) else ValueError)
        if isinstance(s, int) and not isinstance(s, bool):
            s = (s,) * len(dims)
        if not _is_ints(s) or len(s) != len(dims) or any(v < 1 for v in s):
            fail("strides" + label, f"a positive int or {len(dims)} positive ints", s)
        counts = []
        for size, wd, sd in zip(dims, w, s):
            if wd > size:
                fail("sliding_window_shapes" + label, f"windows no larger than the input's {dims}", w)
            if sd > wd and size > wd:
                fail("strides" + label, f"strides no larger than the window {w} (elements would be skipped)", s)
            counts.append(math.ceil((size - wd) / sd) + 1)
        out.append((tuple(w), tuple(s), tuple(counts)))
    return out


def _boxes(x: torch.Tensor, window: Shape, strides: Shape, counts: Shape, start: int, stop: int) -> torch.Tensor:
    """Masks of windows ``start .. stop-1`` (dim 0 fastest, as Captum numbers them): ``(p, 1, *x.shape[1:])``,
    windows cropped at the input's edge."""
    k = torch.arange(start, stop, device=x.device)
    box = torch.ones((stop - start,) + (1,) * (x.dim() - 1), dtype=torch.bool, device=x.device)
    for d, (size, w, s, c) in enumerate(zip(x.shape[1:], window, strides, counts)):
        first = (k % c) * s
        k = k // c
        pos = torch.arange(size, device=x.device)
        inside = (pos >= first.unsqueeze(1)) & (pos < (first + w).unsqueeze(1))  # (p, size)
        inside = inside.reshape((inside.shape[0],) + (1,) * d + (size,) + (1,) * (x.dim() - 2 - d))
        box = box & inside
    return box.unsqueeze(1)


def occlusion(f: ModelLike, inputs: InputsLike, sliding_window_shapes: Union[Shape, Tuple[Shape, ...]],
              strides: Union[None, int, Shape, Tuple[Union[int, Shape], ...]] = None, baselines: BaselinesLike = None,
              *, target: TargetLike = None, args: ArgsLike = (), kwargs: KwargsLike = None,
              perturbations_per_eval: int = 1, show_progress: bool = False) -> Result:
    """Occlusion (Captum's ``Occlusion``).

    A window of ``sliding_window_shapes`` slides over each input with ``strides``
    (windows are cropped at the edge: ``ceil((size - window) / stride) + 1`` positions per
    dim); each position is replaced by the baseline, and every element gets the mean
    output drop over the windows that cover it::

        attr_e(x) = mean over windows w containing e of  f(x)[target] - f(x with w <- baseline)[target]

    ``perturbations_per_eval`` occluded copies of the batch per call of ``f``.

    Args:
      f, inputs, baselines, target, args, kwargs, show_progress: as in :func:`fattr.feature_ablation`.
      sliding_window_shapes: the window, one int per input dim after the batch (a tuple of them
        for tuple inputs; one window also serves every input of the same rank).
      strides: None (1), an int, one int per dim, or a tuple of those, one per input.
      perturbations_per_eval: occluded copies of the batch evaluated in one call.

    Returns:
      Attributions shaped like the inputs (a batch dim of 1 in aggregate mode), in the output's dtype.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(72, 3))
      >>> img = torch.randn(2, 1, 8, 8)
      >>> fattr.occlusion(model, img, (1, 3, 3), strides=(1, 2, 2), target=0,
      ...                 perturbations_per_eval=4).shape
      torch.Size([2, 1, 8, 8])
    """
    xs, was_tuple, ppe, args, tgt = prepare(inputs, target, args, kwargs, perturbations_per_eval, show_progress)
    windows = _windows(sliding_window_shapes, strides, xs)
    bases = format_baselines(baselines, xs)

    def compute(xs_: Tensors, bases_: Tensors, evaluate: Evaluator, ref: torch.Tensor) -> Tensors:
        totals = [math.prod(c) for _, _, c in windows]
        out = []
        with Progress(sum(-(-t // ppe) for t in totals), "occlusion", show_progress) as progress:
            for i, ((window, step, counts), total) in enumerate(zip(windows, totals)):
                x = xs_[i]

                def rows(start: int, stop: int) -> Tensors:
                    box = _boxes(x, window, step, counts, start, stop)
                    return replace(xs_, bases_, [box if j == i else None for j in range(len(xs_))])

                changes = ref.unsqueeze(0) - in_chunks(evaluate, rows, total, ppe, progress).to(ref.device)
                boxes = _boxes(x, window, step, counts, 0, total).flatten(1).to(changes.dtype)  # (windows, E)
                mean = (changes.t() @ boxes) / boxes.sum(0)  # (R, E): over the windows covering each element
                out.append(mean.reshape((ref.shape[0],) + tuple(x.shape[1:])))
        return tuple(out)

    return structure.restore(differentiable(compute, f, xs, bases, tgt, args, ppe), was_tuple)
