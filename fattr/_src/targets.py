"""The target grammar: which output of ``f`` is attributed, for each example.

``None`` (``f`` gives one value per example), an ``int``, a ``tuple`` of ints (outputs
with more than two dims), a list or 1-D integer tensor with one entry per example,
or a list of tuples. Normalised once by :func:`as_target`; :meth:`Target.select`
picks the values with indexing only (no ``.item()``), so it is vmap- and
compile-safe.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch

from .errors import Shown, check_integer_tensor, describe, fail, is_int
from .structure import example_size
from .tracing import is_compiling

_HELP = ("Use None when f returns one value per example, an int or a tuple of ints for every example, "
         "or a list / 1-D tensor with one entry per example.")


@dataclass(frozen=True)
class Target:
    """A normalised target: ``static`` index shared by all examples, or ``rows`` ``(N, d)`` per example.

    ``bounds``: per column of ``rows``, its smallest and largest entry, read once when the
    target is normalised (not under ``torch.compile``, where reading values would break the
    graph), so that every :meth:`select` checks the range without touching tensors.
    """

    static: Optional[Tuple[int, ...]] = None
    rows: Optional[torch.Tensor] = None
    bounds: Optional[Tuple[Tuple[int, int], ...]] = None

    @property
    def is_none(self) -> bool:
        return self.static is None and self.rows is None

    def tile(self, k: int) -> "Target":
        """The target for ``k`` copies of the batch folded step-major into dim 0."""
        if self.rows is None or k == 1:
            return self
        if self.rows.shape[0] == 1:  # one example: a view, no copy (``select`` only reads the rows)
            return Target(rows=self.rows.expand(k, self.rows.shape[1]), bounds=self.bounds)
        return Target(rows=self.rows.repeat(k, 1), bounds=self.bounds)

    def select(self, output: Any, n_rows: int) -> torch.Tensor:
        """Per-row value of ``output`` at the target: a tensor of shape ``(n_rows,)``."""
        if not isinstance(output, torch.Tensor):
            fail("f", "to return a tensor", output, _output_hint(output), kind=TypeError)
        if output.dim() == 0 or output.shape[0] != n_rows:
            fail("f", f"to return a tensor with one row per input row ({n_rows} rows in this call)", output,
                 "f must keep examples along dim 0 (fattr folds path steps and samples into it).")
        if self.is_none:
            if example_size(output) != 1:
                fail("target", f"an index into f's per-example output of shape {tuple(output.shape[1:])}",
                     Shown("None"), _HELP)
            return output.reshape(n_rows)
        width = self.static is not None and len(self.static) or self.rows.shape[1]  # type: ignore[union-attr]
        if width != output.dim() - 1:
            shown = repr(self.static) if self.static is not None else describe(self.rows)
            fail("target", f"{output.dim() - 1} index(es) per example for f's output of shape "
                 f"{tuple(output.shape)}", Shown(shown), _HELP)
        if self.static is not None:
            for i, size in zip(self.static, output.shape[1:]):
                if not -size <= i < size:
                    fail("target", f"indices in range for f's output of shape {tuple(output.shape)}",
                         Shown(repr(self.static)))
            return output.select(1, self.static[0]) if width == 1 else output[(slice(None),) + self.static]
        rows = self.rows.to(output.device)  # type: ignore[union-attr]
        if self.bounds is not None:
            for (lo, hi), size in zip(self.bounds, output.shape[1:]):
                if lo < -size or hi >= size:
                    fail("target", f"indices in range for f's output of shape {tuple(output.shape)}",
                         Shown(f"values from {lo} to {hi}"))
            if all(lo >= 0 for lo, _ in self.bounds):
                return _gather(output, rows)
        index = (torch.arange(n_rows, device=output.device),) + tuple(rows.unbind(1))
        return output[index]


def _output_hint(output: Any) -> str:
    """How to make ``f`` return a tensor, for a model that returns a structure (a ``ModelOutput``, a dict)."""
    names = list(output.keys()) if hasattr(output, "keys") and callable(output.keys) else []
    field = "logits" if "logits" in names or hasattr(output, "logits") else (str(names[0]) if names else "")
    if field:
        return (f"Pass a function that returns the tensor to attribute, e.g. "
                f"f = lambda *a, **k: model(*a, **k).{field} (or model(...)[{field!r}]).")
    if isinstance(output, (tuple, list)):
        return "Pass a function that returns the tensor to attribute, e.g. f = lambda *a: model(*a)[0]."
    return "f must return one tensor with examples along dim 0."


def _gather(output: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``output[i, *rows[i]]`` for every row ``i``, by one ``gather`` (non-negative ``rows``)."""
    n = output.shape[0]
    if rows.shape[1] == 1:
        return output.gather(1, rows).reshape(n)
    flat, stride, linear = output.reshape(n, -1), 1, None
    for j in range(rows.shape[1] - 1, -1, -1):
        term = rows[:, j] * stride
        linear = term if linear is None else linear + term
        stride *= output.shape[j + 1]
    return flat.gather(1, linear.reshape(n, 1)).reshape(n)  # type: ignore[union-attr]


def _per_example(rows: torch.Tensor, device: torch.device | None) -> Target:
    rows = rows.to(device=device, dtype=torch.long)
    if is_compiling():
        return Target(rows=rows)
    if rows.numel() == 0:
        return Target(rows=rows, bounds=((0, -1),) * rows.shape[1])
    if rows.numel() <= 256 and rows.device.type == "cpu":  # a few values: read once, no reductions
        columns = tuple(zip(*rows.tolist()))
        return Target(rows=rows, bounds=tuple((min(c), max(c)) for c in columns))
    lo, hi = rows.amin(0).tolist(), rows.amax(0).tolist()
    return Target(rows=rows, bounds=tuple(zip(lo, hi)))


def as_target(target: Any, n_examples: int, device: torch.device | None = None) -> Target:
    """Normalise the user's ``target`` for a batch of ``n_examples``."""
    if target is None:
        return Target()
    if isinstance(target, torch.Tensor):
        check_integer_tensor("target", target)
        if target.dim() == 0 or (target.dim() == 1 and target.numel() == 1):
            if is_compiling():  # reading the value would break the graph
                return _per_example(target.reshape(1, 1).expand(n_examples, 1), device)
            return Target(static=(int(target),))  # the same index for every example
        if target.dim() == 1:
            if target.numel() != n_examples:
                fail("target", f"a 1-D tensor with {n_examples} entries (one per example)", target, _HELP)
            return _per_example(target.reshape(n_examples, 1), device)
        if target.dim() == 2 and target.shape[0] == n_examples:
            return _per_example(target, device)
        fail("target", f"a 0-d tensor or a 1-D tensor with {n_examples} entries", target, _HELP)
    if isinstance(target, bool):
        fail("target", "None, an int, a tuple, a list or an integer tensor", target, _HELP, kind=TypeError)
    if is_int(target):  # Python and numpy integers alike
        return Target(static=(int(target),))
    if isinstance(target, tuple):
        if not all(is_int(t) for t in target) or not target:
            fail("target", "a non-empty tuple of ints (one index per output dim after the batch)", target,
                 kind=TypeError)
        return Target(static=tuple(int(t) for t in target))
    if isinstance(target, list):
        if len(target) != n_examples:
            fail("target", f"a list with {n_examples} entries (one per example)", target, _HELP)
        if all(is_int(t) for t in target):
            return _per_example(torch.tensor([int(t) for t in target], dtype=torch.long).reshape(n_examples, 1),
                                device)
        if all(isinstance(t, tuple) for t in target):
            widths = {len(t) for t in target}
            if len(widths) != 1 or not all(is_int(i) for t in target for i in t):
                fail("target", "a list of int tuples of equal length", target, kind=TypeError)
            return _per_example(torch.tensor([[int(i) for i in t] for t in target], dtype=torch.long), device)
        fail("target", "a list of ints or a list of tuples of ints", target, kind=TypeError)
    fail("target", "None, an int, a tuple, a list or an integer tensor", target, _HELP, kind=TypeError)
