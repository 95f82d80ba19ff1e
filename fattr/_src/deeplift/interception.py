"""Swapping the rescale rule in for the nonlinearities of one forward pass, without hooks.

Two ``TorchFunctionMode``\\ s, each alive for one forward pass only. Torch function
modes live on a thread-local stack, so concurrent calls from several threads do not
see each other's; nothing is attached to the model.

* :class:`Recorder` runs the forward pass unchanged and keeps the input of every covered
  nonlinearity, in call order (the baselines' pass, and the inputs' pass when gradients
  with respect to parameters are needed).
* :class:`Replayer` runs the inputs' forward pass and replaces the ``k``-th covered
  nonlinearity by its rescale-rule surrogate (:mod:`.rules`), paired with the ``k``-th
  recorded one. It also follows which tensors depend on the attributed tensors, and
  names every call that is nonlinear in them but invisible to the rule
  (:func:`.catalog.uncovered`), so that the caller can warn.

The pairing is by call order: a model must call the same covered nonlinearities, on
tensors of the same shapes, for the inputs and for the baselines (no control flow on
the values); a mismatch raises a ``ValueError``.
"""
from __future__ import annotations

import weakref
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch.overrides import TorchFunctionMode

from ..errors import fail
from . import rules
from .catalog import Call, parse, tensors_in, uncovered

Tensor = torch.Tensor
Record = Tuple[str, str, Tensor]  # (kind, name, input of the nonlinearity)

_MISMATCH_HINT = ("DeepLift pairs the nonlinearities of the inputs' and the baselines' forward passes in call "
                  "order; the model must not branch on its input values.")


class Recorder(TorchFunctionMode):
    """Runs the forward pass as is; ``records`` gets the input of each covered nonlinearity."""

    def __init__(self) -> None:
        super().__init__()
        self.records: List[Record] = []

    def __torch_function__(self, func: Any, types: Any, args: Tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        call = parse(func, args, kwargs)
        if call is not None:
            x = call.input
            self.records.append((call.kind, call.name, x.clone() if call.inplace else x))
        return func(*args, **kwargs)


def _is_inplace(func: Any) -> bool:
    name = getattr(func, "__name__", "")
    if name.startswith("__"):
        return name == "__setitem__" or (name.startswith("__i") and name not in ("__init__", "__index__",
                                                                                  "__int__", "__invert__"))
    return name.endswith("_")


class Replayer(TorchFunctionMode):
    """Runs the inputs' forward pass with covered nonlinearities replaced by rescale-rule surrogates.

    Args:
      refs: the baselines' records (from a :class:`Recorder`).
      anchors: the inputs' records from a pass that kept the graph to the parameters, or
        None (then the anchor is the detached input of the nonlinearity).
      eps: below this ``|x - ref|`` the multiplier is the plain gradient.
      sources: the tensors attributed to (for the dependence tracking).
    """

    def __init__(self, refs: Sequence[Record], anchors: Optional[Sequence[Record]], eps: float,
                 sources: Sequence[Tensor]) -> None:
        super().__init__()
        self.refs, self.anchors, self.eps = refs, anchors, eps
        self.count = 0
        self.uncovered: List[str] = []
        self._dependent: Dict[int, Any] = {}
        for s in sources:
            self._mark(s)

    # ---- dependence on the attributed tensors
    def _mark(self, value: Any) -> None:
        for t in tensors_in(value):
            self._dependent[id(t)] = weakref.ref(t)

    def _has(self, t: Tensor) -> bool:
        ref = self._dependent.get(id(t))
        return ref is not None and ref() is t

    def dependent(self, value: Any) -> bool:
        return any(self._has(t) for t in tensors_in(value))

    def _any_dependent(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> bool:
        return any(self.dependent(a) for a in args) or any(self.dependent(v) for v in kwargs.values())

    # ---- the pass
    def __torch_function__(self, func: Any, types: Any, args: Tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        deps = self._any_dependent(args, kwargs)
        call = parse(func, args, kwargs)
        if call is not None:
            result = self._rule(call)
        else:
            if deps:
                name = uncovered(func, args, kwargs, self.dependent)
                if name is not None and name not in self.uncovered:
                    self.uncovered.append(name)
            result = func(*args, **kwargs)
            if deps and args and _is_inplace(func):
                self._mark(args[0])
            if deps and "out" in kwargs:
                self._mark(kwargs["out"])
        if deps:
            self._mark(result)
        return result

    def _rule(self, call: Call) -> Any:
        k = self.count
        self.count += 1
        x = call.input
        if k >= len(self.refs):
            fail("model", f"at most {len(self.refs)} covered nonlinearities per forward pass, as in the baselines' "
                 "pass", f"a call of {call.name} beyond them", _MISMATCH_HINT)
        kind, name, ref = self.refs[k]
        if kind != call.kind or ref.shape != x.shape:
            fail("model", f"call {k + 1} of a covered nonlinearity to be {name} on shape {tuple(ref.shape)}, as in "
                 "the baselines' pass", f"{call.name} on shape {tuple(x.shape)}", _MISMATCH_HINT)
        work = x.clone() if call.inplace else x
        anchor = self.anchors[k][2] if self.anchors is not None else work.detach()
        out = rules.apply(call, work, ref, anchor, self.eps)
        if call.inplace:
            return x.copy_(out)
        return out

    def check_complete(self) -> None:
        """Every recorded nonlinearity of the baselines' pass was met in this pass."""
        if self.count != len(self.refs):
            fail("model", f"{len(self.refs)} covered nonlinearities per forward pass, as in the baselines' pass",
                 f"{self.count}", _MISMATCH_HINT)
