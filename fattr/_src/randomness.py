"""Explicit randomness: every draw comes from the caller's ``torch.Generator``.

With ``generator=None`` a fresh generator seeded from the OS is used, so a call
never reads or advances torch's global RNG (nor numpy's). Draws happen on the
generator's device and are then moved to the data's device, outside any
transform, so the same seeded generator gives the same numbers on any path.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Sequence, Tuple, TypeVar

import torch

from .errors import fail

T = TypeVar("T")


def resolve(generator: Any) -> torch.Generator:
    """``generator``, or a fresh CPU generator seeded from the OS for None."""
    if generator is None:
        g = torch.Generator(device="cpu")
        g.seed()
        return g
    if not isinstance(generator, torch.Generator):
        fail("generator", "None or a torch.Generator", generator, kind=TypeError)
    return generator


@torch.compiler.disable  # type: ignore[untyped-decorator]
def drawn(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, a function that makes a call's random draws, run as ordinary code under ``torch.compile``
    too: Dynamo cannot trace a ``torch.Generator`` (torch 2.13), and this is one graph break where each draw
    (and a generator made for ``generator=None``) was one, each splitting the frames of the functions that
    called it. Make every draw of a call in one ``fn`` before the work that uses them, outside any loop (a
    break in a loop leaves its whole function uncompiled)."""
    return fn(*args)


def normal(generator: torch.Generator, shape: Sequence[int], *, dtype: torch.dtype,
           device: torch.device) -> torch.Tensor:
    draw_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    z = torch.randn(tuple(shape), generator=generator, dtype=draw_dtype, device=generator.device)
    return z.to(device=device, dtype=dtype)


def uniform(generator: torch.Generator, shape: Sequence[int], *, dtype: torch.dtype,
            device: torch.device) -> torch.Tensor:
    draw_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    u = torch.rand(tuple(shape), generator=generator, dtype=draw_dtype, device=generator.device)
    return u.to(device=device, dtype=dtype)


def integers(generator: torch.Generator, high: int, shape: Sequence[int], *,
             device: torch.device) -> torch.Tensor:
    return torch.randint(high, tuple(shape), generator=generator, device=generator.device).to(device)


def check_stdevs(stdevs: Any, name: str = "stdevs") -> Any:
    """A non-negative number or a tuple of them (checked before the number of inputs is known)."""
    for s in (stdevs if isinstance(stdevs, tuple) else (stdevs,)):
        if isinstance(s, bool) or not isinstance(s, numbers.Real):
            fail(name, "a non-negative number or a tuple of them, one per input", stdevs, kind=TypeError)
        if not float(s) >= 0:  # also refuses nan
            fail(name, "non-negative numbers", stdevs)
    return stdevs


def per_input_stdevs(stdevs: Any, n_inputs: int, name: str = "stdevs") -> tuple[float, ...]:
    """A number for every input, or a tuple with one per input (Captum's ``stdevs``)."""
    check_stdevs(stdevs, name)
    items: Tuple[Any, ...] = stdevs if isinstance(stdevs, tuple) else (stdevs,) * n_inputs
    if len(items) != n_inputs:
        fail(name, f"a tuple of {n_inputs} numbers, one per input", stdevs)
    return tuple(float(s) for s in items)
