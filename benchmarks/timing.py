"""Interleaved timing: every implementation of one case x method, A B C A B C ..., after warm-up.

A sample is a block of calls when one call is short (``min_sample_s``): the same number of calls for every
implementation, so that a sub-millisecond call is timed hot, as a caller's loop runs it, rather than as one
cold call (for ``torch.compile``, Dynamo's cache lookup after another implementation ran).

Interleaving spreads slow drifts of a shared machine (other processes, frequency
changes) over every implementation alike, so ratios between them stay fair even
when absolute times wander. Each implementation is warmed up first (lazy
initialisation, allocator growth, and for ``torch.compile`` the compilation,
which is timed and reported on its own).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch


@dataclass
class Timing:
    """Seconds per call of one implementation."""

    times: List[float]  # per sample: a block's time divided by its calls
    first_s: float  # the first (warm-up) call: includes compilation for fattr_compiled
    calls: int = 1  # calls per sample

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for queued work on ``device`` (no-op on CPU)."""
    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


CLOCKS: Dict[str, Callable[[], float]] = {
    "wall": time.perf_counter,
    # CPU time of this process: on a shared machine it leaves out the time other processes
    # held the core. Meaningful for CPU runs only; with one torch thread it equals the wall
    # time of an idle machine (with several it sums the threads).
    "cpu": time.process_time,
}


def _clock(fn: Callable[[], object], sync: Callable[[], None], clock: Callable[[], float], calls: int = 1) -> float:
    """Seconds per call of ``calls`` consecutive calls."""
    sync()
    start = clock()
    for _ in range(calls):
        fn()
    sync()
    return (clock() - start) / calls


def block_size(fns: Dict[str, Callable[[], object]], min_sample_s: float, sync: Callable[[], None],
               clock: Callable[[], float], max_sample_s: float = 1.0) -> int:
    """Calls per sample, one number for every implementation: the fastest one's block (1, 2, 4, 8, ... calls)
    takes at least ``min_sample_s``, unless the slowest one's would then take more than ``max_sample_s``."""
    once = {name: _clock(fn, sync, clock) for name, fn in fns.items()}
    fastest, slowest = min(once, key=once.__getitem__), max(once.values())
    calls = 1
    while calls * slowest < max_sample_s:
        if calls * _clock(fns[fastest], sync, clock, calls) >= min_sample_s:
            break
        calls *= 2
    return max(1, min(calls, int(max_sample_s / max(slowest, 1e-9))))


def interleaved(fns: Dict[str, Callable[[], object]], *, runs: int = 5, warmup: int = 1,
                device: torch.device = torch.device("cpu"),
                budget_s: Optional[float] = None, clock: str = "wall",
                min_sample_s: Optional[float] = None) -> Dict[str, Timing]:
    """Time every function in ``fns`` ``runs`` times, interleaved, after ``warmup`` calls each.

    Args:
      fns: implementation name -> zero-argument callable.
      runs: timed calls per implementation (at least 1; the harness uses >= 5).
      warmup: untimed calls per implementation before the timed rounds; the first
        one's time is kept as ``first_s``.
      device: where the work runs (CUDA is synchronised around each call).
      budget_s: stop adding rounds once this much time was spent, but never
        before 5 rounds (or ``runs`` if smaller).
      clock: ``"wall"`` (default) or ``"cpu"`` (process CPU time; see :data:`CLOCKS`).
      min_sample_s: when given, a sample is a block of calls (:func:`block_size`, the same for every
        function) lasting at least this long; None: one call per sample.

    Returns:
      implementation name -> :class:`Timing`.
    """
    sync = synchronizer(device)
    tick = CLOCKS[clock]
    first: Dict[str, float] = {}
    for name, fn in fns.items():
        for i in range(max(1, warmup)):
            t = _clock(fn, sync, tick)
            if i == 0:
                first[name] = t
    calls = 1 if min_sample_s is None else block_size(fns, min_sample_s, sync, tick)
    times: Dict[str, List[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    for r in range(runs):
        for name, fn in fns.items():
            times[name].append(_clock(fn, sync, tick, calls))
        if budget_s is not None and r + 1 >= min(5, runs) and time.perf_counter() - start > budget_s:
            break
    return {name: Timing(times[name], first[name], calls) for name in fns}


def cuda_peak_mb(fn: Callable[[], object], device: torch.device) -> Optional[float]:
    """Peak CUDA memory allocated during one call, in MiB (None off CUDA)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2 ** 20
