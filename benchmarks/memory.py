"""Peak memory of integrated_gradients with and without ``chunk_size``.

The claim measured: memory follows ``chunk_size``, not ``n_steps``. For each
case it measures three fattr configurations, ``n_steps=N`` unchunked, ``n_steps=N``
with ``chunk_size=k`` and a plain ``n_steps=k`` run, both as called by default
(grad mode on, the model's parameters requiring grad: fattr's result is then
differentiable with respect to the parameters, so the graph of every chunk stays
alive with it) and under ``torch.no_grad()`` (impl ``fattr_no_grad``), plus
Captum's IG in the same three configurations (``internal_batch_size=k*B`` is its chunk knob).

* CUDA: ``torch.cuda.max_memory_allocated`` during the call, above what was
  allocated before it, in this process.
* CPU: every configuration runs in its own subprocess (``python -m
  benchmarks.memory --child ...``), which resets the kernel's peak-RSS counter
  (``/proc/self/clear_refs``) after building the model and a warm-up call, runs the
  configuration once and reports ``VmHWM - VmRSS`` measured before the call: the
  call's own peak, without the interpreter, torch and the model.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch

from . import cases


@dataclass(frozen=True)
class Config:
    case: str
    impl: str                   # "fattr", "fattr_no_grad" (called under torch.no_grad()) or "captum"
    n_steps: int
    chunk_size: Optional[int]   # steps per chunk (Captum: internal_batch_size = chunk_size * B)
    smoke: bool = False
    device: str = "cpu"

    @property
    def label(self) -> str:
        chunk = "" if self.chunk_size is None else f",chunk_size={self.chunk_size}"
        return f"integrated_gradients[n_steps={self.n_steps}{chunk}]"


def configs(case: str, n_steps: int, k: int, *, smoke: bool, device: str, captum: bool = True) -> List[Config]:
    """fattr with ``n_steps``, with ``n_steps`` in chunks of ``k``, and with ``k`` steps (by default and,
    unless ``smoke``, under no_grad); then Captum's three."""
    impls = ["fattr"] if smoke else ["fattr", "fattr_no_grad"]
    out = [Config(case, impl, steps, chunk, smoke, device)
           for impl in impls for steps, chunk in ((n_steps, None), (n_steps, k), (k, None))]
    if captum:
        out += [Config(case, "captum", steps, chunk, smoke, device)
                for steps, chunk in ((n_steps, None), (n_steps, k), (k, None))]
    return out


def _call(cfg: Config, c: cases.Case):
    if cfg.impl in ("fattr", "fattr_no_grad"):
        import fattr

        def run():
            with torch.set_grad_enabled(cfg.impl == "fattr"):
                return fattr.integrated_gradients(c.model, c.inputs, c.baselines, n_steps=cfg.n_steps,
                                                  target=c.target, chunk_size=cfg.chunk_size)
        return run
    from captum.attr import IntegratedGradients
    ig = IntegratedGradients(c.model)
    batch = None if cfg.chunk_size is None else cfg.chunk_size * c.inputs.shape[0]
    return lambda: ig.attribute(c.inputs, c.baselines, target=c.target, n_steps=cfg.n_steps,
                                internal_batch_size=batch)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _child(cfg: Config) -> Dict[str, float]:
    """Runs in the subprocess: the call's peak RSS above the RSS before it, in MiB."""
    torch.set_num_threads(1)
    c = cases.build(cfg.case, smoke=cfg.smoke)
    warm = Config(cfg.case, cfg.impl, 1, None, cfg.smoke)
    _call(warm, c)()  # lazy initialisation, kernels, allocator pools
    call = _call(cfg, c)
    before = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM (peak RSS) to the current RSS
    call()
    peak = _status_kb("VmHWM")
    return {"peak_mb": (peak - before) / 1024, "rss_before_mb": before / 1024}


def measure(cfg: Config) -> Optional[float]:
    """Peak memory of one configuration in MiB (None when it could not be measured)."""
    if cfg.device.startswith("cuda"):
        device = torch.device(cfg.device)
        c = cases.build(cfg.case, smoke=cfg.smoke, device=cfg.device)
        _call(Config(cfg.case, cfg.impl, 1, None, cfg.smoke, cfg.device), c)()
        call = _call(cfg, c)
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        call()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2 ** 20
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--child", json.dumps(cfg.__dict__)],
                          capture_output=True, text=True, env=env, cwd=root, timeout=600)
    if proc.returncode != 0:
        sys.stderr.write(f"memory child {cfg} failed:\n{proc.stderr[-2000:]}\n")
        return None
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"])


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", required=True, help="a Config as JSON (internal)")
    cfg = Config(**json.loads(parser.parse_args(argv).child))
    print(json.dumps(_child(cfg)))


if __name__ == "__main__":
    main()
