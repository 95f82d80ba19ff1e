"""Progress bars on stderr: tqdm's when tqdm is installed, else a plain line (:func:`bar`).

:class:`Progress` counts a perturbation method's evaluations of ``f`` (``show_progress=True``);
the dataset job's bar (:mod:`..dataset.progress`) is drawn by :func:`bar` too.
"""
from __future__ import annotations

import sys
import time
from typing import Any


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _Line:
    """A tqdm-like bar without tqdm: one line on stderr at most every ``every`` seconds."""

    def __init__(self, total: int, initial: int, desc: str, unit: str, every: float = 2.0) -> None:
        self.total, self.n, self.desc, self.unit, self.every = total, initial, desc, unit, every
        self._start, self._start_n, self._last = time.perf_counter(), initial, 0.0

    def update(self, k: int) -> None:
        self.n += k
        now = time.perf_counter()
        if now - self._last >= self.every or self.n >= self.total:
            self._print(now)

    def _print(self, now: float) -> None:
        self._last = now
        elapsed = now - self._start
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.n) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.n / self.total if self.total else 100.0
        eta_s = _clock(eta) if eta == eta else "?"
        sys.stderr.write(f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct:.1f}%), {rate:.1f} {self.unit}/s, "
                         f"elapsed {_clock(elapsed)}, ETA {eta_s}\n")
        sys.stderr.flush()

    def close(self) -> None:
        self._print(time.perf_counter())


def bar(total: int, desc: str, *, initial: int = 0, unit: str = "it") -> Any:
    """A bar with ``update(k)`` and ``close()``: tqdm's, else a :class:`_Line`."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Line(total, initial, desc, unit)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)


class Progress:
    """Counts evaluations of ``f``; draws nothing unless ``enabled``. A context manager: the bar closes on exit."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self._bar = bar(total, desc) if enabled else None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *_: Any) -> None:
        if self._bar is not None:
            self._bar.close()

    def update(self) -> None:
        if self._bar is not None:
            self._bar.update(1)
