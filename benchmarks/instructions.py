"""Instructions per call under valgrind's callgrind: a per-call cost that the machine's load does not move.

On a shared 2-core machine the time of a 50-500 us call moves 10-20% between runs (and 2x under load), so
a few-percent change in fattr's per-call overhead (issue 11) cannot be seen in timings. The number of
instructions executed per call is deterministic to ~0.1% and, for Python-bound calls, tracks their time
(the time ratio to the floor has been 1.1-1.2x the instruction ratio on ``mlp_tiny``).

``python -m benchmarks.instructions ROW[,ROW...] [--case NAME] [--calls N] [--no-grad]``: for each row
(a ``benchmarks.pairs`` row name), the fattr call and its floor, each counted in a fresh process under
``valgrind --tool=callgrind`` with instrumentation on only around ``N`` calls (after 20 warm-up calls),
then their ratio. Needs valgrind and its ``callgrind.h`` (Debian: ``apt install valgrind``) and a C
compiler; about a minute per count (importing torch under valgrind). Not part of the test suite.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
from typing import List

_SHIM = """#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void stop(void) { CALLGRIND_DUMP_STATS_AT("measured"); CALLGRIND_STOP_INSTRUMENTATION; }
"""


def _count(shim: str, row: str, which: str, case: str, calls: int, grad: bool, out: str) -> int:
    """Instructions per call of ``which`` ("fattr" or "floor"), counted in a child process."""
    subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                    sys.executable, "-m", "benchmarks.instructions", "--child", shim, row, which, case, str(calls),
                    str(int(grad))], check=True, capture_output=True)
    dumps = sorted(f for f in os.listdir(os.path.dirname(out)) if f.startswith(os.path.basename(out) + "."))
    with open(os.path.join(os.path.dirname(out), dumps[-1])) as f:
        total = next(int(line.split()[1]) for line in f if line.startswith(("summary:", "totals:")))
    return total // calls


def _child(shim: str, row: str, which: str, case_name: str, calls: int, grad: bool) -> None:
    import torch
    from . import cases, pairs
    torch.set_num_threads(1)
    lib = ctypes.CDLL(shim)
    case, settings = cases.CASES[case_name](), pairs.Settings()
    pair = {p.name: p for p in pairs.PAIRS}[row]
    fn = pairs.build_fattr(pair, case, settings) if which == "fattr" else pair.floor(case, settings)
    x = case.inputs
    torch.set_grad_enabled(grad)
    for _ in range(20):
        fn(x)
    lib.start()
    for _ in range(calls):
        fn(x)
    lib.stop()


def main(argv: List[str]) -> None:
    if argv and argv[0] == "--child":
        _child(argv[1], argv[2], argv[3], argv[4], int(argv[5]), bool(int(argv[6])))
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__.split("\n")[0])
    parser.add_argument("rows")
    parser.add_argument("--case", default="mlp_tiny")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--no-grad", action="store_true", help="call under torch.no_grad() (both)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        shim = os.path.join(tmp, "shim.so")
        source = os.path.join(tmp, "shim.c")
        with open(source, "w") as f:
            f.write(_SHIM)
        subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", shim, source], check=True)
        for row in args.rows.split(","):
            counts = [_count(shim, row, which, args.case, args.calls, not args.no_grad, os.path.join(tmp, which))
                      for which in ("fattr", "floor")]
            print(f"{row:36s} fattr {counts[0]:9d} floor {counts[1]:9d} instructions/call  ratio "
                  f"{counts[0] / counts[1]:.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
