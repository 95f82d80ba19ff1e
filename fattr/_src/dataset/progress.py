"""The job's progress bar, on rank 0 only: examples done across all ranks, rate, ETA.

Every rank marks its finished chunks in the store; rank 0 counts the marks from a
background thread every ``interval`` seconds, so the bar covers the whole job with
no collective call between ranks (a slow rank never holds the others up). The bar
is :func:`..perturbation.progress.bar`: tqdm's when tqdm is installed, a plain line on stderr otherwise.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from ..perturbation.progress import bar


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
