"""Per-call overhead: each row's benchmark call against its floor, interleaved in one process (issue 11).

``python -m benchmarks.overhead ROW[,ROW...] [SORT [N]] [--case NAME] [--against REV]``: for each row (a
``benchmarks.pairs`` row name) on the case (default ``mlp_tiny``), 15 rounds of 40 calls of fattr then 40 of
the floor, CPU clock, medians; with ``SORT`` (a ``pstats`` key such as ``tottime`` or ``cumtime``) also a
cProfile of 200 fattr calls, its ``N`` (default 50) top entries.

``--against REV``, an A/B in one process: REV's ``fattr/`` (``git archive``) is imported from a temporary folder
as ``fattr_against`` (every whole-word ``fattr`` in its sources renamed; checked: it imports no module of this
tree's), each row's call bound by ``pairs.build_fattr`` on its registry; 24 rounds of blocks of 20 calls of
this tree's call, REV's and the floor (order rotated per round), CPU clock: lower quartiles in us, ratios to
the floor, and new/REV as the median of the rounds' ratios (paired in time: load drift cancels).
"""
from __future__ import annotations

import argparse
import atexit
import cProfile
import importlib
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, List, Sequence

import torch

import fattr

from . import cases, pairs


def interleaved(fns: Sequence[Callable[[Any], Any]], x: Any, rounds: int, calls: int,
                rotate: bool = False) -> List[List[float]]:
    """Seconds per call of each of ``fns`` in each round, timed in turn by blocks of ``calls`` calls; ``rotate``:
    each round starts one further along (a round's first block runs a few percent slower: positions even out)."""
    times: List[List[float]] = [[] for _ in fns]
    for i in range(rounds):
        for j in range(len(fns)):
            k = (i + j) % len(fns) if rotate else j
            t0 = time.process_time()
            for _ in range(calls):
                fns[k](x)
            times[k].append((time.process_time() - t0) / calls)
    return times


def against(rev: str) -> ModuleType:
    """``fattr`` at git revision ``rev``, imported as the package ``fattr_against`` from a temporary folder."""
    repo, root = Path(__file__).resolve().parent.parent, Path(tempfile.mkdtemp(prefix="fattr_against_"))
    atexit.register(shutil.rmtree, root, True)
    archive = subprocess.run(["git", "archive", rev, "fattr"], cwd=repo, capture_output=True)
    if archive.returncode:
        raise SystemExit(f"--against {rev}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    (root / "fattr").rename(root / "fattr_against")
    for path in (root / "fattr_against").rglob("*.py"):  # imports, import_module(f"fattr.{name}"), messages
        path.write_text(re.sub(r"\bfattr\b", "fattr_against", path.read_text()))
    sys.path.insert(0, str(root))
    return isolated(lambda: importlib.import_module("fattr_against"), root)


def isolated(run: Callable[[], Any], root: Path) -> Any:
    """``run()``, checking that every module it imported of either package is the copy's, under ``root``."""
    before = set(sys.modules)
    out = run()
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None) or ""
        top = name.split(".")[0]
        if top == "fattr" or (top == "fattr_against" and root not in Path(file).parents):
            raise RuntimeError(f"the copy of fattr imported {name} from {file or '?'}")
    return out


def build(pair: pairs.Pair, case: cases.Case, settings: pairs.Settings, package: ModuleType) -> Callable[[Any], Any]:
    """``pairs.build_fattr`` with ``package`` in place of ``fattr`` (its registry, its SmoothGrad tunnel)."""
    pairs.fattr = package
    try:
        return pairs.build_fattr(pair, case, settings)
    finally:
        pairs.fattr = fattr


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead")
    parser.add_argument("rows", help="ROW[,ROW...]: benchmarks.pairs row names")
    parser.add_argument("sort", nargs="?", help="a pstats key: also profile 200 calls")
    parser.add_argument("n", nargs="?", type=int, default=50, help="profile entries shown")
    parser.add_argument("--case", default="mlp_tiny")
    parser.add_argument("--against", metavar="REV", help="also time fattr at this git revision")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    settings, case = pairs.Settings(), cases.CASES[args.case]()
    old, x = against(args.against) if args.against else None, case.inputs
    root = Path(old.__file__).parent.parent if old is not None else Path()  # (the copy's folder)
    for row in args.rows.split(","):
        pair = {p.name: p for p in pairs.PAIRS}[row]
        fns = [pairs.build_fattr(pair, case, settings)]
        if old is not None:
            fns.append(isolated(lambda: build(pair, case, settings, old), root))
            isolated(lambda: interleaved(fns[1:], x, 1, 30), root)  # (its lazy imports too)
        fns.append(pair.floor(case, settings))
        interleaved(fns, x, 1, 30)
        if old is None:
            a, b = [sorted(t)[7] for t in interleaved(fns, x, 15, 40)]
            print(f"{row:40s} fattr {a * 1e6:7.1f} us  floor {b * 1e6:7.1f} us  ratio {a / b:.2f}", flush=True)
        else:
            times = interleaved(fns, x, 24, 20, rotate=True)
            a, r, b = [sorted(t)[6] for t in times]
            paired = sorted([u / v for u, v in zip(times[0], times[1])])[12]
            print(f"{row:40s} new {a * 1e6:7.1f} us  {args.against} {r * 1e6:7.1f} us  floor {b * 1e6:7.1f} us  "
                  f"ratio {a / b:.2f} vs {r / b:.2f}  new/{args.against} {paired:.3f}", flush=True)
        if args.sort:
            with cProfile.Profile() as profile:
                for _ in range(200):
                    fns[0](x)
            pstats.Stats(profile).sort_stats(args.sort).print_stats(args.n)


if __name__ == "__main__":
    main(sys.argv[1:])
