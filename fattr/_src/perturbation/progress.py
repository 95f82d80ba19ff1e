"""``show_progress=True``: a progress bar on stderr (tqdm when installed, else a plain counter)."""
from __future__ import annotations

import importlib
import sys
from typing import Any


class Progress:
    """Counts evaluations of ``f``; draws nothing unless ``enabled``."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.total, self.desc, self.done = total, desc, 0
        self._bar: Any = None
        self.enabled = enabled
        if enabled:
            try:
                tqdm = importlib.import_module("tqdm.auto").tqdm
            except ImportError:  # pragma: no cover - tqdm is optional
                self._bar = None
            else:
                self._bar = tqdm(total=total, desc=desc, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
        else:  # pragma: no cover - tqdm is optional
            sys.stderr.write(f"\r{self.desc}: {self.done}/{self.total}")
            sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:  # pragma: no cover - tqdm is optional
            sys.stderr.write("\n")
