"""From multipliers to attributions: the default product, ``custom_attribution_func``, delta, warning."""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable, Optional, Sequence, Tuple

import torch

from ..arguments import map_args, repeat_rows, tile
from ..delta import row_totals
from ..errors import Shown, describe, fail
from ..path import accumulation_dtype
from ..base import Tensor, Tensors
from ..targets import Target


def check_custom(func: Any) -> Optional[Callable[..., Any]]:
    """``custom_attribution_func`` must be None or a callable taking 1 to 3 parameters (Captum's rule)."""
    if func is None:
        return None
    if not callable(func):
        fail("custom_attribution_func", "None or a callable", func, kind=TypeError)
    try:
        count = len(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        fail("custom_attribution_func", "a callable whose signature can be inspected", func, kind=TypeError)
    if not 1 <= count <= 3:
        fail("custom_attribution_func", "a callable of 1 to 3 parameters: (multipliers[, inputs[, baselines]])",
             Shown(f"a callable of {count} parameters"))
    return func


def attributions(grads: Tensors, xs: Tensors, bs: Tensors, multiply_by_inputs: bool,
                 custom: Optional[Callable[..., Any]]) -> Tensors:
    """``grads * (xs - bs)``, ``grads``, or ``custom(grads[, xs[, bs]])`` (tuples of equal length)."""
    if custom is None:
        return tuple(g * (x - b) for g, x, b in zip(grads, xs, bs)) if multiply_by_inputs else tuple(grads)
    out = custom(*(tuple(grads), tuple(xs), tuple(bs))[:len(inspect.signature(custom).parameters)])
    if isinstance(out, Tensor) and len(xs) == 1:
        out = (out,)
    if not isinstance(out, (tuple, list)) or len(out) != len(xs) or not all(isinstance(t, Tensor) for t in out):
        fail("custom_attribution_func", f"to return a tuple of {len(xs)} tensor(s), one per attributed tensor",
             Shown(describe(out)))
    n = xs[0].shape[0]
    for i, t in enumerate(out):
        if t.dim() == 0 or t.shape[0] != n:
            fail("custom_attribution_func", f"to return tensors with {n} rows along dim 0", t)
    return tuple(out)


def delta(attrs: Tensors, out_x: Tensor, out_b: Tensor) -> Tensor:
    """Per row: ``sum(attributions) - (f(x) - f(baseline))``, in float64."""
    return row_totals(attrs) - (out_x.to(torch.float64) - out_b.to(torch.float64))


def mean_over_baselines(attrs: Tensors, n: int, m: int) -> Tensors:
    """``(n*m, ...)`` rows ordered example-first -> ``(n, ...)`` means over the ``m`` baselines."""
    out = []
    for a in attrs:
        per_pair = a.reshape((n, m) + tuple(a.shape[1:]))
        out.append(per_pair.to(accumulation_dtype(a.dtype, a.device)).mean(1).to(a.dtype))
    return tuple(out)


def pairs(xs: Tensors, dist: Tensors, args: Tuple[Any, ...], target: Target
          ) -> Tuple[Tensors, Tensors, Tuple[Any, ...], Target]:
    """Every (example, baseline) pair as one row, example first (row ``i*m + j``: example ``i``, baseline
    ``j``): the inputs, the baselines, the per-example ``args`` and the target, each for ``n * m`` rows."""
    n, m = xs[0].shape[0], dist[0].shape[0]
    pair_args = map_args(lambda a: repeat_rows(a, n, m), args)
    pair_target = target if target.rows is None else Target(rows=repeat_rows(target.rows, n, m), bounds=target.bounds)
    return (tuple(repeat_rows(x, n, m) for x in xs), tuple(tile(d, n) for d in dist), pair_args, pair_target)


def warn_uncovered(method: str, names: Sequence[str]) -> None:
    if names:
        warnings.warn(
            f"fattr.{method}: the model applies nonlinear operations that DeepLift's rescale rule does not cover "
            f"to input-dependent tensors: {', '.join(names)}. They get their plain gradient, so the attributions "
            "need not sum to f(inputs) - f(baselines) (return_delta=True shows by how much).",
            UserWarning, stacklevel=4)  # warn_uncovered <- _attribute <- the public method <- its caller
