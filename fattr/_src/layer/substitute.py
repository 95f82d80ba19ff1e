"""The fallback split for functions that cannot be captured: run them with the layer's value swapped.

The head runs the whole function and records the layer's activation; the tail runs the whole
function again with the layer's output (or positional input) replaced by the given activation,
as Captum's hooks do. For the duration of one run, a forward hook (and pre-hook) is registered
on each layer and removed when the run ends, also after an error. The hooks act only for the
run that registered them, in its own thread, so concurrent calls, in this thread or others,
do not interfere; nothing else about the model is changed, and the model is called as it is
(a parent that reads the layer's attributes sees the layer itself).

This path is correct for any function Captum's hooks handle, but slower: nothing before the
layer is shared, so the tail is a full forward pass per path step, and ``rest`` is the
inputs and args themselves.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, List, Sequence, Tuple

from torch import nn

from ..calling import call, modules_of
from ..arguments import as_args, unpack
from . import locking
from .capture import attributes_kept, check_called_once, clone

_CAPTURE = object()
_local = threading.local()


@dataclass(eq=False)
class _Swap:
    """One layer's part of one run: records its activation, or substitutes the given one."""

    layer: nn.Module
    to_input: bool
    activation: Any = _CAPTURE
    captured: Any = None
    calls: int = 0


def _mine(swap: _Swap) -> bool:
    return swap in getattr(_local, "active", ())


def _hooks(swap: _Swap) -> Tuple[Callable[..., Any], Callable[..., Any]]:
    def pre(module: nn.Module, args: Tuple[Any, ...]) -> Any:
        if not _mine(swap):
            return None
        swap.calls += 1
        if not swap.to_input or swap.calls != 1:
            return None
        if swap.activation is _CAPTURE:
            swap.captured = clone(args[0] if len(args) == 1 else tuple(args))
            return None
        a = swap.activation
        return clone(tuple(a) if isinstance(a, tuple) else (a,))

    def post(module: nn.Module, args: Tuple[Any, ...], output: Any) -> Any:
        if not _mine(swap) or swap.to_input or swap.calls != 1:
            return None
        if swap.activation is _CAPTURE:
            swap.captured = clone(output)
            return None
        return clone(swap.activation)

    return pre, post


def _modules(f: Callable[..., Any], swaps: Sequence[_Swap]) -> List[nn.Module]:
    return list({id(m): m for root in modules_of(f) + [s.layer for s in swaps] for m in root.modules()}.values())


def _run(f: Callable[..., Any], swaps: List[_Swap], values: Sequence[Any], labels: Sequence[str]) -> Any:
    handles = []
    active = getattr(_local, "active", ())
    _local.active = active + tuple(swaps)
    try:
        for swap in swaps:
            pre, post = _hooks(swap)
            # without kwargs: one dict entry each (with them, a second dict is written after the first,
            # and another thread calling the layer in between would call the hook without its kwargs)
            handles.append(swap.layer.register_forward_pre_hook(pre))
            handles.append(swap.layer.register_forward_hook(post))
        with locking.reading(), attributes_kept(_modules(f, swaps), strict=False):  # a forward that sets attributes
            positional, keywords = unpack(values)
            out = call(f, positional, as_args((), keywords))
    finally:
        for handle in handles:
            handle.remove()
        _local.active = active
    for swap, label in zip(swaps, labels):
        check_called_once(label, swap.layer, swap.calls)
    return out


def run_head(f: Callable[..., Any], layers: Sequence[nn.Module], labels: Sequence[str], to_input: bool,
             values: Sequence[Any]) -> Tuple[List[Any], Tuple[Any, ...]]:
    """``(activations, rest)``: the recorded activations; ``rest`` is ``values`` (inputs and args)."""
    swaps = [_Swap(layer, to_input) for layer in layers]
    _run(f, swaps, values, labels)
    return [s.captured for s in swaps], tuple(values)


def run_tail(f: Callable[..., Any], layers: Sequence[nn.Module], labels: Sequence[str], to_input: bool,
             activations: Sequence[Any], rest: Sequence[Any]) -> Any:
    """The function's output on ``rest`` with the layers' activations replaced."""
    swaps = [_Swap(layer, to_input, a) for layer, a in zip(layers, activations)]
    return _run(f, swaps, rest, labels)
