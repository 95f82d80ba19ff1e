"""Throughput of ``fattr.attribute_dataset``: IG on the ``cnn`` case over a synthetic dataset, 1 vs N processes.

    python -m benchmarks.dataset_throughput                 # 2 000 examples, 1 and 2 processes, 1 thread each
    python -m benchmarks.dataset_throughput --nproc 1 2 4 --examples 4000 --repeats 3 --loops --json out.json

Each configuration launches ``torchrun --standalone --nproc_per_node=K -m benchmarks.dataset_throughput
--worker`` with ``OMP_NUM_THREADS=1`` and writes a fresh store; rank 0 times the ``attribute_dataset`` call
(process group set-up, model fingerprint, store creation and the final barrier included; interpreter start-up
and imports not), and the launch is timed as a whole too. ``--loops`` also times, in this process on one
thread, the plain loop a user would write without a runner (no store): fattr's IG and Captum's IG batch by
batch, to show what the runner itself costs. Configurations alternate over ``--repeats`` rounds, so a busy
machine slows them alike; the best round of each is reported. Not part of the smoke run (minutes).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

import torch
from torch.utils.data import DataLoader, TensorDataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(examples: int) -> Any:
    """The ``cnn`` case's model (eval, float32) and ``examples`` random 3x32x32 images with labels."""
    from . import cases
    model = cases.cnn().model
    g = torch.Generator().manual_seed(0)
    x = torch.randn(examples, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (examples,), generator=g)
    return model, TensorDataset(x, y)


def worker(args: argparse.Namespace) -> None:
    import fattr
    model, data = build(args.examples)
    start, cpu = time.perf_counter(), time.process_time()
    fattr.attribute_dataset(fattr.integrated_gradients, model, data, args.out, batch_size=args.batch_size,
                            target="label", n_steps=args.n_steps, progress=False, device=args.device)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print("RESULT " + json.dumps({"rank": int(os.environ.get("RANK", "0")), "seconds": seconds, "cpu_s": cpu}),
          flush=True)


def launch(nproc: int, args: argparse.Namespace) -> Dict[str, float]:
    out = tempfile.mkdtemp(prefix="fattr-bench-")
    try:
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   "-m", "benchmarks.dataset_throughput", "--worker", "--out", os.path.join(out, "store"),
                   "--examples", str(args.examples), "--batch-size", str(args.batch_size),
                   "--n-steps", str(args.n_steps), "--device", args.device]
        start = time.perf_counter()
        run = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - start
        if run.returncode != 0:
            raise SystemExit(f"torchrun with {nproc} process(es) failed:\n{run.stderr[-4000:]}")
        ranks = [json.loads(x[7:]) for x in run.stdout.splitlines() if x.startswith("RESULT ")]
        rank0 = next(r for r in ranks if r["rank"] == 0)
        return {"job_s": rank0["seconds"], "launch_s": wall, "max_rank_cpu_s": max(r["cpu_s"] for r in ranks),
                "total_cpu_s": sum(r["cpu_s"] for r in ranks)}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def loop(impl: str, args: argparse.Namespace) -> Dict[str, float]:
    """The same work as a plain loop over a DataLoader in this process (no store, no runner)."""
    import fattr
    model, data = build(args.examples)
    torch.set_num_threads(args.threads)
    if impl == "captum":
        from captum.attr import IntegratedGradients
        ig = IntegratedGradients(model)

        def attribute(x: torch.Tensor, y: torch.Tensor) -> Any:
            return ig.attribute(x, target=y, n_steps=args.n_steps)
    else:
        def attribute(x: torch.Tensor, y: torch.Tensor) -> Any:
            return fattr.integrated_gradients(model, x, target=y, n_steps=args.n_steps)
    start, cpu = time.perf_counter(), time.process_time()
    for x, y in DataLoader(data, batch_size=args.batch_size):
        attribute(x, y).detach().numpy()
    cpu = time.process_time() - cpu
    return {"job_s": time.perf_counter() - start, "max_rank_cpu_s": cpu, "total_cpu_s": cpu}


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n-steps", type=int, default=50)
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (OMP_NUM_THREADS)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--loops", action="store_true", help="also time plain loops (fattr, Captum) in one process")
    p.add_argument("--json", default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    configs = [f"attribute_dataset, {k} process{'es' if k > 1 else ''}" for k in args.nproc]
    if args.loops:
        configs += ["plain loop, fattr IG", "plain loop, Captum IG"]
    results: Dict[str, List[Dict[str, float]]] = {c: [] for c in configs}
    for r in range(args.repeats):
        for k, config in zip(args.nproc, configs):
            results[config].append(launch(k, args))
            print(f"round {r + 1}: {config}: {results[config][-1]}", file=sys.stderr, flush=True)
        if args.loops:
            for impl, config in (("fattr", configs[-2]), ("captum", configs[-1])):
                results[config].append(loop(impl, args))
                print(f"round {r + 1}: {config}: {results[config][-1]}", file=sys.stderr, flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"IG (n_steps={args.n_steps}, Gauss-Legendre) on the cnn case, {args.examples} examples, batch "
          f"{args.batch_size}, {args.threads} thread(s) per process, device {args.device}, best of {args.repeats}; "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at the end\n")
    print("| configuration | job s | examples/s | speed-up vs 1 process | launch s (with start-up) "
          "| CPU s, busiest rank | CPU s, all ranks | CPU speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    base = min(x["job_s"] for x in results[configs[0]])
    base_cpu = min(x["max_rank_cpu_s"] for x in results[configs[0]])
    for config in configs:
        best = min(results[config], key=lambda x: x["job_s"])
        busiest = min(x["max_rank_cpu_s"] for x in results[config])
        launch_s = f"{best['launch_s']:.1f}" if "launch_s" in best else "-"
        print(f"| {config} | {best['job_s']:.1f} | {args.examples / best['job_s']:.1f} | "
              f"{base / best['job_s']:.2f}x | {launch_s} | {busiest:.1f} | {best['total_cpu_s']:.1f} | "
              f"{base_cpu / busiest:.2f}x |")
    print("\nCPU speed-up: CPU seconds of the 1-process job over those of the busiest rank, the wall-clock "
          "speed-up an otherwise idle machine with a core per process would give (idle waits excluded).")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": vars(args), "load_average": load, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
