"""Per-call overhead on ``mlp_tiny``: each row's benchmark call against its floor, interleaved (issue 11).

``python -m benchmarks.overhead ROW[,ROW...] [SORT [N]]``: for each row (a ``benchmarks.pairs`` row name),
15 rounds of 40 calls of fattr then 40 of the floor, CPU clock, medians; with ``SORT`` (a ``pstats`` key such
as ``tottime`` or ``cumtime``) also a cProfile of 200 fattr calls, its ``N`` (default 50) top entries.
"""
from __future__ import annotations

import cProfile
import pstats
import sys
import time
from typing import List

import torch

from . import cases, pairs


def main(argv: List[str]) -> None:
    torch.set_num_threads(1)
    settings, case = pairs.Settings(), cases.CASES["mlp_tiny"]()
    table = {p.name: p for p in pairs.PAIRS}
    for row in argv[0].split(","):
        pair = table[row]
        fattr_fn, floor = pairs.build_fattr(pair, case, settings), pair.floor(case, settings)
        x = case.inputs
        for _ in range(30):
            fattr_fn(x), floor(x)
        ours: List[float] = []
        theirs: List[float] = []
        for _ in range(15):
            t0 = time.process_time()
            for _ in range(40):
                fattr_fn(x)
            t1 = time.process_time()
            for _ in range(40):
                floor(x)
            ours.append((t1 - t0) / 40)
            theirs.append((time.process_time() - t1) / 40)
        a, b = sorted(ours)[7], sorted(theirs)[7]
        print(f"{row:40s} fattr {a * 1e6:7.1f} us  floor {b * 1e6:7.1f} us  ratio {a / b:.2f}", flush=True)
        if len(argv) > 1:
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(200):
                fattr_fn(x)
            profile.disable()
            pstats.Stats(profile).sort_stats(argv[1]).print_stats(int(argv[2]) if len(argv) > 2 else 50)


if __name__ == "__main__":
    main(sys.argv[1:])
