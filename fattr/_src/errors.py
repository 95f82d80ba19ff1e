"""Argument checks with clear messages: the one place that words them.

Every check raises ``TypeError`` for a wrong kind and ``ValueError`` for a wrong
value or shape; the message names the argument, what was expected and what
arrived. Checks look at types and shapes only (static facts), so they never
break a ``torch.compile`` graph.
"""
from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Iterable, NoReturn

import numpy as np
import torch

if TYPE_CHECKING:
    from typing_extensions import TypeGuard


class Shown(str):
    """A value already worded for a message (``fail`` prints it as is)."""


_SCALARS = (str, bytes, numbers.Number, type(None))


def describe(value: Any) -> str:
    """A short description of ``value`` for error messages: never a pasted tensor or a big object.

    Tensors and arrays by dtype and shape, containers by kind and size (a mapping or a
    dataclass, such as a ``ModelOutput``, by its keys), scalars and strings by value, any
    other object by its type.
    """
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        more = ", ..." if len(value) > 4 else ""
        return f"a tuple of {len(value)} ({', '.join(describe(v) for v in value[:4])}{more})"
    if isinstance(value, list):
        return f"a list of length {len(value)}"
    kind = type(value).__name__
    if isinstance(value, Mapping):
        keys = [str(k) for k in list(value.keys())[:6]]
        return f"a {kind} with keys {', '.join(keys) or 'none'}{', ...' if len(value) > 6 else ''}"[:200]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [field.name for field in dataclasses.fields(value)][:6]
        return f"a {kind} (fields {', '.join(names)})"[:200]
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # numpy arrays and the like
        return f"a {kind} of dtype {value.dtype} and shape {tuple(value.shape)}"
    if isinstance(value, _SCALARS):
        return f"{kind} {value!r}"[:200]
    return f"a {kind}"[:200]


def message(name: str, expected: str, value: Any, hint: str = "") -> str:
    """The standard message: ``name: expected X, got Y. hint``."""
    got = value if isinstance(value, Shown) else describe(value)
    return f"{name}: expected {expected}, got {got}." + (f" {hint}" if hint else "")


def fail(name: str, expected: str, value: Any, hint: str = "", *, kind: type = ValueError) -> NoReturn:
    """Raise ``kind`` with the standard :func:`message`."""
    raise kind(message(name, expected, value, hint))


def is_int(value: Any) -> bool:
    """A Python or numpy integer (``numbers.Integral``), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_integer_tensor(value: Any) -> TypeGuard[torch.Tensor]:
    """A tensor of an integer dtype (ids, labels, indices): not floating, complex or bool."""
    return isinstance(value, torch.Tensor) and not (value.is_floating_point() or value.is_complex()
                                                    or value.dtype == torch.bool)


def check_integer_tensor(name: str, value: Any, expected: str = "an integer tensor") -> torch.Tensor:
    """A tensor of an integer dtype (:func:`is_integer_tensor`), else ``TypeError`` worded ``expected``."""
    if not isinstance(value, torch.Tensor) or value.is_floating_point() or value.is_complex() \
            or value.dtype == torch.bool:  # (is_integer_tensor's test, inline: a target is checked on every call)
        fail(name, expected, value, kind=TypeError)
    return value


def check_positive_int(name: str, value: Any) -> int:
    """A positive int; numpy integer scalars are accepted and returned as ``int``."""
    if not is_int(value):
        fail(name, "a positive int", value, kind=TypeError)
    if value < 1:
        fail(name, "a positive int (>= 1)", value)
    return int(value)


def check_optional_positive_int(name: str, value: Any) -> int | None:
    return None if value is None else check_positive_int(name, value)


def check_number(name: str, value: Any, expected: str, bad: Callable[[Any], bool]) -> float:
    """A real number (not a bool) for which ``bad`` is false: ``TypeError`` for another kind, ``ValueError``
    for a bad value, both worded ``expected``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(name, expected, value, kind=TypeError)
    if bad(value):
        fail(name, expected, value)
    return float(value)


def check_nonnegative_float(name: str, value: Any) -> float:
    return check_number(name, value, "a non-negative number", lambda v: v < 0)


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (a numpy bool is accepted); never a truthy stand-in such as ``1`` or ``"yes"``."""
    if isinstance(value, np.bool_):  # numpy's bool (not an int subclass, unlike Python's)
        return bool(value)
    if not isinstance(value, bool):
        fail(name, "True or False", value, kind=TypeError)
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        fail(name, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def check_callable(name: str, value: Any, optional: bool = False) -> Any:
    if not callable(value) and not (optional and value is None):
        fail(name, "a callable", value, kind=TypeError)
    return value
