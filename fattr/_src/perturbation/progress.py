"""``show_progress=True``: a progress bar on stderr (tqdm when installed, else a plain counter)."""
from __future__ import annotations

import importlib
import sys
from typing import Any


class Progress:
    """Counts evaluations of ``f``; draws nothing unless ``enabled``. A context manager: the bar closes on exit."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.total, self.desc, self.done, self.enabled = total, desc, 0, enabled
        self._bar: Any = None
        if enabled:
            try:
                self._bar = importlib.import_module("tqdm.auto").tqdm(total=total, desc=desc, file=sys.stderr)
            except ImportError:  # pragma: no cover - tqdm is optional
                pass

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *_: Any) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:  # pragma: no cover - tqdm is optional
            sys.stderr.write("\n")

    def update(self) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
        elif self.enabled:  # pragma: no cover - tqdm is optional
            sys.stderr.write(f"\r{self.desc}: {self.done}/{self.total}")
            sys.stderr.flush()
