"""Swapping the rescale rule in for the nonlinearities of one forward pass, without hooks.

Two ``TorchFunctionMode``\\ s, each alive for one forward pass only. Torch function
modes live on a thread-local stack, so concurrent calls from several threads do not
see each other's; nothing is attached to the model.

* :class:`Recorder` runs the baselines' forward pass unchanged and keeps the input and
  output of every covered nonlinearity, in call order.
* :class:`Replayer` runs the inputs' forward pass and replaces the ``k``-th covered
  nonlinearity by its rescale-rule function (:mod:`.rules`), paired with the ``k``-th
  recorded one. It also follows which tensors depend on the attributed tensors, and
  names every call that is nonlinear in them but invisible to the rule
  (:func:`.catalog.uncovered`), so that the caller can warn.

The pairing is by call order: a model must call the same covered nonlinearities, on
tensors of the same shapes, for the inputs and for the baselines (no control flow on
the values); a mismatch raises a ``ValueError``.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch.overrides import TorchFunctionMode

from ..base import Tensor
from ..errors import Shown, fail
from ..tracing import is_compiling
from . import rules
from .catalog import Call, parse, tensors_in, uncovered


_MISMATCH_HINT = ("DeepLift pairs the nonlinearities of the inputs' and the baselines' forward passes in call "
                  "order; the model must not branch on its input values.")


@dataclass
class Record:
    """One covered nonlinearity of a recorded pass: its input and its output (``(out, indices)`` for pools)."""

    kind: str
    name: str
    input: Tensor
    output: Any
    versions: Tuple[int, ...]  # of the input, then of the output's tensors; () for copies


class Recorder(TorchFunctionMode):
    """Runs the forward pass as is; ``records`` gets each covered nonlinearity's input and output."""

    def __init__(self) -> None:
        super().__init__()
        self.records: List[Record] = []

    def __torch_function__(self, func: Any, types: Any, args: Tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        call = parse(func, args, kwargs)
        if call is None:
            return func(*args, **kwargs)
        x = call.input.clone() if call.inplace else call.input
        if call.kind == "maxpool":
            output = call.op(x)  # (out, indices), whatever the call returns
            result = output if call.with_indices else output[0]
        else:
            result = output = func(*args, **kwargs)
        if is_compiling():  # Dynamo tracks no version counters: keep copies of what the rule will read
            copy = tuple(t.clone() for t in output) if isinstance(output, tuple) else output.clone()
            self.records.append(Record(call.kind, call.name, x.clone(), copy, ()))
        else:
            versions = (x._version,) + tuple(t._version for t in tensors_in(output))
            self.records.append(Record(call.kind, call.name, x, output, versions))
        return result

    def check_intact(self) -> None:
        """The model did not modify a recorded input in place after the nonlinearity read it (under
        ``torch.compile`` the records are copies, with no versions to compare)."""
        for r in self.records:
            if r.versions and r.input._version != r.versions[0]:
                fail("model", f"the input of {r.name} left unchanged after the call",
                     Shown("a later in-place update of it"),
                     "DeepLift needs the values each nonlinearity saw; use an out-of-place operation there.")


_SETITEM = torch.Tensor.__setitem__  # in place and returns None; other in-place calls return the tensor


class Replayer(TorchFunctionMode):
    """Runs the inputs' forward pass with covered nonlinearities replaced by rescale-rule functions.

    Args:
      refs: the baselines' records (from a :class:`Recorder`).
      constant: the rule pass's ``x -> x0`` (:func:`.rules.rule_pass`).
      eps: below this ``|x - ref|`` the multiplier is the plain gradient.
      sources: the tensors attributed to (for the dependence tracking).
    """

    def __init__(self, refs: Sequence[Record], constant: rules.Constant, eps: float,
                 sources: Sequence[Tensor]) -> None:
        super().__init__()
        self.refs, self.constant, self.eps = refs, constant, eps
        self.count = 0
        self.uncovered: List[str] = []
        self._dependent: Dict[int, Any] = {}
        for s in sources:
            self._mark(s)

    # ---- dependence on the attributed tensors
    def _mark(self, value: Any) -> None:
        for t in tensors_in(value):
            self._dependent[id(t)] = weakref.ref(t)

    def dependent(self, value: Any) -> bool:
        refs = ((t, self._dependent.get(id(t))) for t in tensors_in(value))
        return any(ref is not None and ref() is t for t, ref in refs)

    # ---- the pass
    def __torch_function__(self, func: Any, types: Any, args: Tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        deps = any(self.dependent(a) for a in args) or any(self.dependent(v) for v in kwargs.values())
        call = parse(func, args, kwargs)
        if call is not None:
            result = self._rule(call)
        else:
            if deps:
                name = uncovered(func, args, kwargs, self.dependent)
                if name is not None and name not in self.uncovered:
                    self.uncovered.append(name)
            result = func(*args, **kwargs)
            if deps and func is _SETITEM:  # (in-place calls that return their tensor: marked below)
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
                 "pass", Shown(f"a call of {call.name} beyond them"), _MISMATCH_HINT)
        ref = self.refs[k]
        if ref.kind != call.kind or ref.input.shape != x.shape:
            fail("model", f"call {k + 1} of a covered nonlinearity to be {ref.name} on shape "
                 f"{tuple(ref.input.shape)}, as in the baselines' pass",
                 Shown(f"{call.name} on shape {tuple(x.shape)}"), _MISMATCH_HINT)
        work = x.clone() if call.inplace else x
        intact = not ref.versions or tuple(t._version for t in tensors_in(ref.output)) == ref.versions[1:]
        ref_out = ref.output if intact else None  # (else recomputed from the recorded input)
        out = rules.apply(call, work, self.constant(work), ref.input, ref_out, self.eps)
        return x.copy_(out) if call.inplace else out

    def check_complete(self) -> None:
        """Every recorded nonlinearity of the baselines' pass was met in this pass."""
        if self.count != len(self.refs):
            fail("model", f"{len(self.refs)} covered nonlinearities per forward pass, as in the baselines' pass",
                 Shown(f"{self.count} in this pass"), _MISMATCH_HINT)
