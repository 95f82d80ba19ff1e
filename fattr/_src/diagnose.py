"""Why the user's function failed: torch's errors from inside ``f`` reworded by their cause.

Some mistakes only show when ``f`` runs: a model and inputs of different dtypes, an
``args`` tensor that is neither per example nor something ``f`` takes as is, a
BatchNorm model in training mode given a single example. Torch then raises from deep
inside the model ("mat1 and mat2 must have the same dtype", "The size of tensor a (3)
must match ..."). :func:`explain` recognises these causes, only after ``f`` has failed
(so nothing valid is refused), and gives the error the standard form: the argument,
what was expected, what arrived, and the fix; torch's own error stays chained to it.
"""
from __future__ import annotations

import re
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .arguments import Keywords
from .errors import Shown, message

_DTYPE = re.compile(r"dtype|scalar type|type \(|should be the same|same type", re.IGNORECASE)
_SIZES = re.compile(r"size|shape|dimension|broadcast|mat1 and mat2", re.IGNORECASE)
_BATCHNORM = "Expected more than 1 value per channel when training"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def model_dtype(module: Optional[nn.Module]) -> Optional[torch.dtype]:
    """The dtype of the module's first floating-point parameter (or buffer); None if it has none."""
    if module is None:
        return None
    return next((t.dtype for t in [*module.parameters(), *module.buffers()] if t.is_floating_point()), None)


def _dtype_mismatch(error: BaseException, module: Optional[nn.Module],
                    inputs: Sequence[torch.Tensor]) -> Optional[Exception]:
    if not isinstance(error, RuntimeError) or not _DTYPE.search(str(error)):
        return None
    dtypes = sorted({str(x.dtype) for x in inputs if isinstance(x, torch.Tensor) and x.is_floating_point()})
    want = model_dtype(module)
    if want is None or not dtypes or dtypes == [str(want)]:
        return None
    return TypeError(message(
        "inputs", f"tensors of the model's dtype ({want}: its parameters' dtype)",
        Shown(f"{', '.join(dtypes)} inputs"),
        f"Convert one to the other: inputs.to({want}) or model.to({dtypes[0]}). (The model failed with: "
        f"{_first_line(error)})"))


def _odd_args(error: BaseException, f: Any, inputs: Sequence[torch.Tensor],
              args: Sequence[Any]) -> Optional[Exception]:
    from .calling import Bound  # (calling imports this module)
    if not isinstance(error, RuntimeError) or not _SIZES.search(str(error)) or isinstance(f, Bound):
        return None  # (a layer method's tail gets the model's internal values as args: not the user's to fix)
    rows = inputs[0].shape[0] if inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].dim() else None
    labelled: List[Tuple[str, Any]] = []
    for i, a in enumerate(args):
        if isinstance(a, Keywords):
            labelled.extend((f"kwargs[{n!r}]", v) for n, v in zip(a.names, a.values))
        else:
            labelled.append((f"args[{i}]" if len(args) > 1 or isinstance(a, tuple) else "args", a))
    text = str(error)
    for label, value in labelled:
        if (isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] not in (1, rows)
                and re.search(rf"\b{value.shape[0]}\b", text)):  # torch's message names its size
            return ValueError(message(
                label, "a tensor with one row per example (fattr pairs it with its example at every path step "
                "or sample) or one whose dim 0 f takes as is",
                Shown(f"a {value.dtype} tensor of shape {tuple(value.shape)}, and f failed on it"),
                "A per-example tensor needs as many rows as the inputs have examples. "
                f"(f failed with: {_first_line(error)})"))
    return None


def _batchnorm_of_one(error: BaseException) -> Optional[Exception]:
    if not isinstance(error, ValueError) or not str(error).startswith(_BATCHNORM):
        return None
    return ValueError(message(
        "inputs", "more than one example for a model in training mode with batch normalisation (it normalises "
        "over the batch)", Shown("a single example"),
        "Call model.eval() before attributing, which also makes each example's attribution independent "
        "of the others in the batch (fattr leaves the model's mode as it is)."))


def explain(error: BaseException, f: Callable[..., Any], module: Optional[nn.Module],
            inputs: Sequence[torch.Tensor], args: Sequence[Any]) -> Optional[Exception]:
    """A clearer error for ``f``'s ``error`` when its cause is recognised, else None (re-raise as is)."""
    return (_dtype_mismatch(error, module, inputs) or _batchnorm_of_one(error)
            or _odd_args(error, f, inputs, args))
