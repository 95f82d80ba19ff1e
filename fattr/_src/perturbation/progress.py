"""Progress bars on stderr (a perturbation method's evaluations, a dataset job's examples): tqdm's when tqdm
is installed, else a plain line (:func:`bar`)."""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, Optional


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
        eta = _clock((self.total - self.n) / rate) if rate > 0 else "?"
        pct = 100.0 * self.n / self.total if self.total else 100.0
        sys.stderr.write(f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct:.1f}%), {rate:.1f} {self.unit}/s, "
                         f"elapsed {_clock(elapsed)}, ETA {eta}\n")
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


class JobProgress:
    """The dataset job's bar, on rank 0 only: counts ``done()`` (examples finished, all ranks) every
    ``interval`` s from a background thread, so the bar covers the whole job with no collective call
    between ranks (a slow rank never holds the others up). A context manager; a no-op when not ``enabled``.
    """

    def __init__(self, done: Callable[[], int], total: int, desc: str, *, enabled: bool = True,
                 interval: float = 0.5) -> None:
        self._done, self.total, self.desc, self.enabled, self.interval = done, total, desc, enabled, interval
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._bar: Any = None
        self._shown = 0

    def __enter__(self) -> "JobProgress":
        if self.enabled:
            self._shown = self._done()
            self._bar = bar(self.total, self.desc, initial=self._shown, unit="examples")
            self._thread = threading.Thread(target=self._run, name="fattr-progress", daemon=True)
            self._thread.start()
        return self

    def _refresh(self) -> None:
        now = self._done()
        if now > self._shown:
            self._bar.update(now - self._shown)
            self._shown = now

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._refresh()

    def __exit__(self, *exc: Any) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._refresh()
            self._bar.close()
