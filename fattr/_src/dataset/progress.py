"""The job's progress bar, on rank 0 only: examples done across all ranks, rate, ETA.

Every rank marks its finished chunks in the store; rank 0 counts the marks from a
background thread every ``interval`` seconds, so the bar covers the whole job with
no collective call between ranks (a slow rank never holds the others up). The bar
is tqdm's when tqdm is installed, a plain line on stderr otherwise.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, Optional, TextIO


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _Line:
    """A tqdm-like bar without tqdm: one line on ``stream`` at most every ``every`` seconds."""

    def __init__(self, total: int, initial: int, desc: str, stream: TextIO, every: float = 2.0) -> None:
        self.total, self.n, self.desc, self.stream, self.every = total, initial, desc, stream, every
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
        self.stream.write(f"{self.desc}: {self.n}/{self.total} examples ({pct:.1f}%), {rate:.1f} examples/s, "
                          f"elapsed {_clock(elapsed)}, ETA {eta_s}\n")
        self.stream.flush()

    def close(self) -> None:
        self._print(time.perf_counter())


def _bar(total: int, initial: int, desc: str) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Line(total, initial, desc, sys.stderr)
    return tqdm(total=total, initial=initial, desc=desc, unit="ex", dynamic_ncols=True)


class Progress:
    """Counts ``done()`` (examples finished, all ranks) every ``interval`` s and shows it on a bar.

    Use as a context manager; a no-op when ``enabled`` is False.
    """

    def __init__(self, done: Callable[[], int], total: int, desc: str, *, enabled: bool = True,
                 interval: float = 0.5) -> None:
        self._done, self.total, self.desc, self.enabled, self.interval = done, total, desc, enabled, interval
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._bar: Any = None
        self._shown = 0

    def __enter__(self) -> "Progress":
        if self.enabled:
            self._shown = self._done()
            self._bar = _bar(self.total, self._shown, self.desc)
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
