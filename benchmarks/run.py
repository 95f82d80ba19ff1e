"""Run the benchmarks: ``python -m benchmarks.run [--quick] [--device cpu|cuda] [--cases ...]
[--methods ...] [--compile none|goals|all] [--no-memory] [--json PATH]``.

For every case x method (:func:`evaluate`): build the fattr call, its Captum
counterpart and the floor; check that they agree; compile the fattr call (as
called and under ``torch.no_grad()``) and the floor when asked; time them interleaved. The floor's
compiled/eager says what compiling can gain on the computation itself: where it is above 1.0, so is the
limit for fattr's compiled call (torch's fixed cost per compiled call, or kernels Inductor cannot improve). Prints a
markdown table on stdout (progress goes to stderr) and optionally writes JSON
records ``{"case", "method", "impl", "median_s", "min_s", "max_s", "peak_mem_mb", "calls_per_sample"}``
(compiled ones add ``compile_s`` and ``compiled_over_eager``). Times are per call; a row of fast calls times
blocks of calls (the same number for each implementation, see ``--min-sample-ms``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch._dynamo

from . import cases as cases_mod
from . import memory, pairs, timing
from .pairs import Pair, Settings

IMPLS = ("fattr", "fattr_compiled", "fattr_no_grad", "fattr_compiled_no_grad", "captum", "floor", "floor_compiled")
GOAL_COMPILE = {("cnn", "integrated_gradients")}


@dataclass(frozen=True)
class Mode:
    cases: List[str]
    methods: Optional[List[str]]
    settings: Settings
    runs: int
    warmup: int
    compile: str                # "none", "goals" (only where a goal needs it) or "all"
    memory_cases: List[str]
    memory_k: int
    smoke: bool = False
    budget_s: Optional[float] = None  # per row: stop adding runs past this (never below 5 runs)
    clock: str = "wall"
    min_sample_s: Optional[float] = 0.02  # a sample is a block of calls this long (timing.block_size); None: 1 call


FULL = Mode(cases=list(cases_mod.CASES), methods=None, settings=Settings(), runs=7, warmup=2, compile="all",
            memory_cases=["cnn", "resnet"], memory_k=5, budget_s=30.0)
QUICK = Mode(cases=["mlp_tiny", "mlp", "cnn"],
             methods=["saliency", "integrated_gradients", "smoothgrad", "layer_integrated_gradients[late]",
                      "layer_feature_ablation", "deeplift"],
             settings=Settings(), runs=5, warmup=1, compile="none", memory_cases=["cnn"], memory_k=5,
             budget_s=5.0)
SMOKE = Mode(cases=["mlp_tiny", "cnn", "transformer"], methods=None,
             settings=Settings(n_steps=8, n_samples=4, perturbations_per_eval=8, mc_samples=256),
             runs=1, warmup=1, compile="none", memory_cases=["cnn"], memory_k=2, smoke=True, min_sample_s=None)


@dataclass
class Row:
    """One case x method: agreement status, timings per implementation, notes."""

    case: str
    method: str
    status: str = "ok"          # ok | skipped | n/a | mismatch | error
    detail: str = ""
    agreement: Dict[str, float] = field(default_factory=dict)
    timings: Dict[str, timing.Timing] = field(default_factory=dict)
    peak_mb: Dict[str, Optional[float]] = field(default_factory=dict)
    compile_s: Dict[str, float] = field(default_factory=dict)  # first call of each compiled mode
    notes: List[str] = field(default_factory=list)


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg[:120]}"


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


# What a call may raise that the harness reports in the table: fattr's own errors (a bad argument, a torch
# error inside it), Captum's (it asserts on its inputs), a floor that does not apply (NotImplementedError).
CALL_ERRORS = (ValueError, TypeError, RuntimeError, NotImplementedError, IndexError, AssertionError)
# torch.compile failing on a call (Dynamo's own errors, or the call's errors while tracing)
COMPILE_ERRORS = (torch._dynamo.exc.TorchDynamoException,) + CALL_ERRORS
STATISTICAL_TOL = 0.1
DELTA_TOL = 1e-5  # summation-to-delta residual relative to max |f(x)[target]|: float32 rounding level


def _no_grad(f: pairs.Fn) -> pairs.Fn:
    def call(x: torch.Tensor) -> Any:
        with torch.no_grad():
            return f(x)
    return call


# ------------------------------------------------------------------ stages: build, check, compile, time

def build(pair: Pair, case: cases_mod.Case, s: Settings, row: Row) -> Optional[Dict[str, pairs.Fn]]:
    """Every implementation of ``pair`` on ``case``; None (and the row an error) when fattr's cannot be built."""
    fns: Dict[str, pairs.Fn] = {}
    for impl, builder in pairs.builders(pair).items():
        if builder is None:
            continue
        try:
            fn = builder(case, s)
        except CALL_ERRORS + (ImportError,) as e:
            if impl == "fattr":
                row.status, row.detail = "error", f"fattr: {_short(e)}"
                return None
            row.notes.append(f"{impl} n/a: {_short(e)}")
            continue
        if fn is not None:
            fns[impl] = fn
    return fns


def _check_statistical(pair: Pair, case: cases_mod.Case, s: Settings, row: Row, fns: Dict[str, pairs.Fn]) -> bool:
    """The Monte-Carlo check (see :mod:`benchmarks.pairs`): False when fattr's estimate is off."""
    small, ss = pairs.statistical_settings(case, s)
    ref = pairs.expectation(pair, small, ss)
    for impl, builder in pairs.builders(pair).items():
        if impl not in fns or builder is None:
            continue
        _seed(s.seed)
        try:
            row.agreement[impl] = pairs.rel_l2(builder(small, ss)(small.inputs), ref)  # type: ignore[misc]
        except CALL_ERRORS as e:
            if impl == "fattr":
                raise
            row.notes.append(f"{impl} failed: {_short(e)}")
            fns.pop(impl)
    if row.agreement["fattr"] > STATISTICAL_TOL:
        row.status = "mismatch"
        row.detail = (f"fattr's Monte-Carlo estimate is {row.agreement['fattr']:.3f} (rel. L2) from the expectation "
                      f"(tolerance {STATISTICAL_TOL})")
        return False
    for impl in ("captum", "floor"):
        if impl in fns and row.agreement[impl] > STATISTICAL_TOL:
            row.notes.append(f"{impl} dropped: {row.agreement[impl]:.3f} from the expectation")
            fns.pop(impl)
    row.detail = f"MC check, rel. L2 to expectation <= {STATISTICAL_TOL}"
    return True


def _check_deltas(pair: Pair, case: cases_mod.Case, s: Settings, row: Row) -> Tuple[bool, str]:
    """When Captum's DeepLift differs: accept fattr's if its summation-to-delta holds (and say so)."""
    if pair.deltas is None:
        return False, ""
    scale = pairs.output_scale(case)
    fattr_delta, captum_delta = (float(b(case, s)(case.inputs).abs().max()) / scale for b in pair.deltas(pair))
    residuals = f"summation-to-delta residual / max|f|: fattr {fattr_delta:.0e}, Captum {captum_delta:.0e}"
    if fattr_delta > DELTA_TOL:
        return False, residuals
    return True, f"Captum differs by {row.agreement['captum']:.1e}; accepted on {residuals}"


def _check_direct(pair: Pair, case: cases_mod.Case, s: Settings, row: Row, fns: Dict[str, pairs.Fn]) -> bool:
    """Every implementation with deterministic settings against Captum's (else the floor's) result."""
    cs = pairs.check_settings(pair, s)
    outs: Dict[str, Any] = {}
    for impl, builder in pairs.builders(pair).items():
        if impl not in fns or builder is None:
            continue
        _seed(s.seed)
        try:
            outs[impl] = builder(case, cs)(case.inputs)  # type: ignore[misc]
        except CALL_ERRORS as e:
            if impl == "fattr":
                raise
            row.notes.append(f"{impl} failed: {_short(e)}")
            fns.pop(impl)
    for impl in ("captum", "floor"):
        if impl in outs:
            row.agreement[impl] = pairs.max_error(outs["fattr"], outs[impl])
    reference = "captum" if "captum" in outs else "floor" if "floor" in outs else None
    if reference is None:
        row.status, row.detail = "n/a", "no reference to check against: " + "; ".join(row.notes)
        return False
    accepted, why = False, ""
    if row.agreement[reference] > pair.rtol:
        if reference == "captum":
            accepted, why = _check_deltas(pair, case, s, row)
        if not accepted:
            row.status = "mismatch"
            row.detail = (f"fattr vs {reference}: max|diff|/max|ref| = {row.agreement[reference]:.2e} "
                          f"> {pair.rtol:.0e}" + (f"; {why}" if why else ""))
            return False
    row.detail = why or (("stdevs=0 for the check; " if cs != s else "")
                         + f"max rel. err vs {reference} {row.agreement[reference]:.0e}")
    if reference == "captum" and "floor" in outs and row.agreement["floor"] > pair.rtol:
        row.notes.append(f"floor dropped (differs by {row.agreement['floor']:.1e})")
        fns.pop("floor")
    return True


def check(pair: Pair, case: cases_mod.Case, s: Settings, row: Row, fns: Dict[str, pairs.Fn],
          log: Callable[[str], None]) -> bool:
    """Agreement before timing; drops the references that disagree. False: the row is not timed."""
    try:
        if pair.statistical:
            return _check_statistical(pair, case, s, row, fns)
        return _check_direct(pair, case, s, row, fns)
    except CALL_ERRORS as e:  # a fattr call raised
        row.status, row.detail = "error", f"fattr: {_short(e)}"
        log(traceback.format_exc())
        return False


def compile_fattr(pair: Pair, case: cases_mod.Case, s: Settings, device: torch.device, row: Row,
                  eager: pairs.Fn, floor: Optional[pairs.Fn] = None) -> Dict[str, pairs.Fn]:
    """``torch.compile`` of the fattr call, as called and under ``no_grad`` (each its own compiled function,
    the first call's time in ``row.compile_s``), with the eager call under ``no_grad`` to compare with; a
    mode whose compiled result differs from eager's is left out with a note. The floor (when the pair has one)
    is compiled too, under the grad mode it sets itself."""
    x, expected = case.inputs, eager(case.inputs)
    sync = timing.synchronizer(device)
    torch._dynamo.reset()
    out: Dict[str, pairs.Fn] = {}
    for impl, wrap in (("fattr_compiled", lambda f: f), ("fattr_compiled_no_grad", _no_grad)):
        mode = "compiled" if impl == "fattr_compiled" else "compiled under no_grad"
        try:
            compiled = wrap(torch.compile(pairs.build_fattr(pair, case, s)))
            sync()
            t0 = time.perf_counter()
            result = compiled(x)
            sync()
            row.compile_s[impl] = time.perf_counter() - t0
        except COMPILE_ERRORS as e:
            row.notes.append(f"{mode} n/a: {_short(e)}")
            continue
        err = pairs.max_error(result, expected)
        if err > pair.rtol:
            row.notes.append(f"{mode} n/a: differs from eager by {err:.1e}")
        else:
            out[impl] = compiled
    if "fattr_compiled_no_grad" in out:
        out["fattr_no_grad"] = _no_grad(eager)
    if floor is not None:
        try:
            compiled = torch.compile(floor)
            sync()
            t0 = time.perf_counter()
            result = compiled(x)
            sync()
            row.compile_s["floor_compiled"] = time.perf_counter() - t0
            err = pairs.max_error(result, floor(x))
        except COMPILE_ERRORS as e:
            row.notes.append(f"floor compiled n/a: {_short(e)}")
        else:
            if err > pair.rtol:
                row.notes.append(f"floor compiled n/a: differs from eager by {err:.1e}")
            else:
                out["floor_compiled"] = compiled
    return out


def time_all(row: Row, fns: Dict[str, pairs.Fn], x: torch.Tensor, mode: Mode, device: torch.device) -> None:
    """Time the implementations interleaved (and their CUDA peak memory)."""
    order = [impl for impl in IMPLS if impl in fns]
    calls = {impl: (lambda f=fns[impl]: f(x)) for impl in order}
    row.timings = timing.interleaved(calls, runs=mode.runs, warmup=mode.warmup, device=device,
                                     budget_s=mode.budget_s, clock=mode.clock, min_sample_s=mode.min_sample_s)
    block = max((t.calls for t in row.timings.values()), default=1)
    if block > 1:
        row.notes.append(f"{block} calls per sample")
    if device.type == "cuda":
        row.peak_mb = {impl: timing.cuda_peak_mb(calls[impl], device) for impl in order}


def evaluate(pair: Pair, case: cases_mod.Case, mode: Mode, device: torch.device,
             log: Callable[[str], None]) -> Row:
    """One row: build, check agreement, compile (when ``mode`` says so), time."""
    row = Row(case.name, pair.name)
    reason = pair.reason_not_applicable(case)
    if pair.method not in pairs.registry():
        row.status, row.detail = "skipped", "not in fattr.methods() yet"
    elif reason:
        row.status, row.detail = "n/a", reason
    if row.status != "ok":
        return row
    if pair.one_target:
        case = dataclasses.replace(case, target=torch.full_like(case.target, int(case.target[0])))
    fns = build(pair, case, mode.settings, row)
    if fns is None or not check(pair, case, mode.settings, row, fns, log):
        return row
    if mode.compile == "all" or (mode.compile == "goals" and (case.name, pair.method) in GOAL_COMPILE):
        fns.update(compile_fattr(pair, case, mode.settings, device, row, fns["fattr"], fns.get("floor")))
    time_all(row, fns, case.inputs, mode, device)
    return row


# ------------------------------------------------------------------ output

def _ms(t: Optional[timing.Timing]) -> str:
    if t is None:
        return "-"
    v = t.median * 1e3
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _ratio(a: Optional[timing.Timing], b: Optional[timing.Timing]) -> str:
    if a is None or b is None:
        return "-"
    return f"{a.median / b.median:.2f}"


# compiled implementation -> the eager one it is compared with
EAGER = {"fattr_compiled": "fattr", "fattr_compiled_no_grad": "fattr_no_grad", "floor_compiled": "floor"}


def table(rows: List[Row]) -> str:
    head = ("| case | method | fattr ms | compiled ms | captum ms | floor ms | fattr/captum | fattr/floor | "
            "compiled/eager | compiled/eager no_grad | floor compiled/eager | compile s | check / notes |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        t = r.timings
        if r.status == "ok":
            note = "; ".join([r.detail] + r.notes)
        else:
            note = f"**{r.status}**: {r.detail}" + ("; " + "; ".join(r.notes) if r.notes else "")
        compile_s = f"{r.compile_s['fattr_compiled']:.1f}" if "fattr_compiled" in t else "-"
        ratios = " | ".join(_ratio(t.get(c), t.get(e)) for c, e in EAGER.items())
        lines.append(f"| {r.case} | {r.method} | {_ms(t.get('fattr'))} | {_ms(t.get('fattr_compiled'))} | "
                     f"{_ms(t.get('captum'))} | {_ms(t.get('floor'))} | "
                     f"{_ratio(t.get('fattr'), t.get('captum'))} | {_ratio(t.get('fattr'), t.get('floor'))} | "
                     f"{ratios} | {compile_s} | {note} |")
    return "\n".join(lines)


def memory_table(mem: List[Tuple[memory.Config, Optional[float]]]) -> str:
    """Peak memory per configuration; chunked rows also show the ratio to a plain run of ``chunk_size`` steps."""
    plain = {(c.case, c.impl, c.n_steps): peak for c, peak in mem if c.chunk_size is None}
    lines = ["| case | configuration | impl | peak MiB | / plain run of chunk_size steps |", "|---|---|---|---|---|"]
    for c, peak in mem:
        v = "-" if peak is None else f"{peak:.1f}"
        ref = plain.get((c.case, c.impl, c.chunk_size)) if c.chunk_size is not None else None
        ratio = f"{peak / ref:.2f}" if peak is not None and ref else "-"
        lines.append(f"| {c.case} | {c.label} | {c.impl} | {v} | {ratio} |")
    return "\n".join(lines)


def memory_records(mem: List[Tuple[memory.Config, Optional[float]]]) -> List[Dict[str, Any]]:
    return [{"case": c.case, "method": c.label, "impl": c.impl, "median_s": None, "min_s": None, "max_s": None,
             "peak_mem_mb": peak} for c, peak in mem]


def records(rows: List[Row]) -> List[Dict[str, Any]]:
    out = []
    for r in rows:
        for impl, t in r.timings.items():
            rec: Dict[str, Any] = {"case": r.case, "method": r.method, "impl": impl, "median_s": t.median,
                                   "min_s": t.min, "max_s": t.max, "peak_mem_mb": r.peak_mb.get(impl),
                                   "calls_per_sample": t.calls}
            if impl in EAGER:  # a compiled call: its first call, and its median over the eager one's
                rec["compile_s"] = r.compile_s.get(impl)
                rec["compiled_over_eager"] = t.median / r.timings[EAGER[impl]].median
            out.append(rec)
    return out


def machine(device: torch.device) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import captum
    desc = (f"{cpu}; nproc {os.cpu_count()}; torch {torch.__version__} ({torch.get_num_threads()} threads); "
            f"captum {captum.__version__}; Python {platform.python_version()}")
    if device.type == "cuda":
        desc += f"; GPU {torch.cuda.get_device_name(device)}"
    return desc


# ------------------------------------------------------------------ main

def parse(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[1])
    p.add_argument("--quick", action="store_true", help="a subset that runs in under 2 minutes on 2 CPU cores")
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tiny models, 1 run: the test suite
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--cases", nargs="+", choices=list(cases_mod.CASES), help="default: all (quick: 3)")
    p.add_argument("--methods", nargs="+", help="row names or fattr method names; default: all (quick: 6)")
    p.add_argument("--runs", type=int, help="timed runs per implementation (>= 5 for real numbers)")
    p.add_argument("--compile", choices=["none", "goals", "all"],
                   help="torch.compile the fattr call: nowhere, only cnn IG (the goal), or everywhere")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall time (default) or process CPU time (CPU only; steadier on a shared machine)")
    p.add_argument("--min-sample-ms", type=float,
                   help="time blocks of calls lasting at least this long per sample, the same number of calls for "
                        "every implementation of a row (default 20; 0: one call per sample)")
    p.add_argument("--no-memory", action="store_true", help="skip the chunk_size memory measurement")
    p.add_argument("--json", metavar="PATH", help="write the records as JSON here")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    a = parse(argv)
    mode = SMOKE if a.smoke else QUICK if a.quick else FULL
    if a.cases:
        mode = dataclasses.replace(mode, cases=a.cases)
    if a.methods:
        mode = dataclasses.replace(mode, methods=a.methods)
    if a.runs:
        mode = dataclasses.replace(mode, runs=a.runs)
    if a.compile:
        mode = dataclasses.replace(mode, compile=a.compile)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    if a.device == "cuda" and a.clock == "cpu":
        raise SystemExit("--clock cpu measures host CPU time; use the wall clock with --device cuda")
    mode = dataclasses.replace(mode, clock=a.clock)
    if a.min_sample_ms is not None:
        mode = dataclasses.replace(mode, min_sample_s=a.min_sample_ms / 1e3 if a.min_sample_ms > 0 else None)
    device = torch.device(a.device)
    label = "smoke" if a.smoke else "quick" if a.quick else "full"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum warns about hooks and requires_grad on every call
        return run(mode, device, json_path=a.json, memory_too=not a.no_memory, label=label)


def _write(path: str, recs: List[Dict[str, Any]]) -> None:
    with open(path, "w") as fh:
        json.dump(recs, fh, indent=1)


def run(mode: Mode, device: torch.device, *, json_path: Optional[str] = None, memory_too: bool = True,
        label: str = "") -> int:
    """Run ``mode`` on ``device``, print the tables; exit status 1 if a fattr call raised."""
    selected = pairs.select(mode.methods)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    start = time.perf_counter()
    rows: List[Row] = []
    for name in mode.cases:
        case = cases_mod.build(name, smoke=mode.smoke, device=device.type)
        for pair in selected:
            t0 = time.perf_counter()
            row = evaluate(pair, case, mode, device, log)
            rows.append(row)
            log(f"[{time.perf_counter() - start:6.1f}s] {name:12s} {pair.name:36s} {row.status:9s} "
                f"{time.perf_counter() - t0:5.1f}s {row.detail[:60]}")
            if json_path:  # the rows so far, so that a long run stopped early keeps what it measured
                _write(json_path, records(rows))

    mem: List[Tuple[memory.Config, Optional[float]]] = []
    if memory_too:
        for name in mode.memory_cases:
            if name not in mode.cases:
                continue
            for cfg in memory.configs(name, mode.settings.n_steps, mode.memory_k, smoke=mode.smoke,
                                      device=device.type, captum=not mode.smoke):
                peak = memory.measure(cfg)
                mem.append((cfg, peak))
                log(f"[{time.perf_counter() - start:6.1f}s] memory {name} {cfg.impl} {cfg.label}: {peak}")

    print(f"Machine: {machine(device)}\n")
    print(f"Mode: {label}; n_steps={mode.settings.n_steps}, "
          f"n_samples={mode.settings.n_samples}, stdevs={mode.settings.stdevs}, "
          f"perturbations_per_eval={mode.settings.perturbations_per_eval}; median of {mode.runs} interleaved "
          f"runs after {mode.warmup} warm-up; {mode.clock} clock; times in ms"
          + (f" per call, a sample >= {mode.min_sample_s * 1e3:g} ms of calls (calls per sample in the notes)"
             if mode.min_sample_s else "") + ".\n")
    print(table(rows))
    unpaired = pairs.unpaired_methods()
    if unpaired:
        print(f"\nRegistered fattr methods without a benchmark pair: {', '.join(unpaired)}")
        # language models: the lm case has its own harness (prompt and target ids, Captum's LLM classes)
        lm = [n for n in unpaired if pairs.registry()[n].inputs == "token_ids"]
        if lm:
            print(f"({', '.join(lm)}: the `lm` case, `python -m benchmarks.lm`, benchmarks/README.md)")
    if mem:
        print(f"\nPeak memory of integrated_gradients (above the pre-call level; "
              f"{'CUDA max_memory_allocated' if device.type == 'cuda' else 'CPU peak RSS of a subprocess'}):\n")
        print(memory_table(mem))
    print(f"\nTotal {time.perf_counter() - start:.0f} s.")
    if json_path:
        _write(json_path, records(rows) + memory_records(mem))
    return 1 if any(r.status == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
