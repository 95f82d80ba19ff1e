"""Guided IG and Blur IG against PAIR's ``saliency``, and the metrics against ``captum.metrics``.

``python -m benchmarks.research [--quick]``: on the ``cnn`` case (batch 8, 3x32x32, float32 on CPU),
each pair computes the same numbers with the same number of model evaluations (checked before
timing), then both are timed interleaved (median of a few runs). PAIR's methods take one example
at a time through a ``call_model_function`` built from the same torch model; Blur IG is also timed
with PAIR's ``batch_size=n_steps`` (all of one example's steps in one call). Captum's
``infidelity`` and ``sensitivity_max`` get the same perturbation function as fattr.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch

import fattr
import fattr.metrics

from . import cases


def _timed(fns: Dict[str, Callable[[], Any]], runs: int) -> Dict[str, float]:
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _pair_model_function(model: torch.nn.Module, target: int, channels_last: bool):
    from saliency.core.base import INPUT_OUTPUT_GRADIENTS

    def fn(x_batch, call_model_args=None, expected_keys=None):
        x = torch.as_tensor(np.asarray(x_batch), dtype=torch.float32)
        if channels_last:
            x = x.permute(0, 3, 1, 2)
        with torch.enable_grad():
            x.requires_grad_(True)
            (g,) = torch.autograd.grad(model(x)[:, target].sum(), x)
        if channels_last:
            g = g.permute(0, 2, 3, 1)
        return {INPUT_OUTPUT_GRADIENTS: g.numpy()}
    return fn


def _shim_quantile() -> None:
    """saliency 0.2.1 calls ``np.quantile(..., interpolation=)``, removed from numpy 2."""
    original = np.quantile

    def quantile(a, q, *args, interpolation=None, **kwargs):
        if interpolation is not None:
            kwargs["method"] = interpolation
        return original(a, q, *args, **kwargs)
    np.quantile = quantile  # type: ignore[assignment]


def pair_rows(case: cases.Case, n_guided: int, n_blur: int, runs: int) -> List[Tuple[str, float, float, str]]:
    from saliency.core import BlurIG, GuidedIG

    _shim_quantile()
    model, x = case.model, case.inputs
    targets = case.target.tolist()
    rows = []

    def ours_guided():
        return fattr.guided_integrated_gradients(model, x, None, n_guided, target=case.target)

    def theirs_guided():
        return np.stack([GuidedIG().GetMask(x[i].numpy(), _pair_model_function(model, t, False), x_steps=n_guided)
                         for i, t in enumerate(targets)])

    with torch.no_grad():
        err = float((ours_guided() - torch.from_numpy(theirs_guided())).abs().max() / ours_guided().abs().max())
    t = _timed({"fattr": ours_guided, "pair": theirs_guided}, runs)
    rows.append((f"guided_integrated_gradients (n_steps={n_guided})", t["fattr"], t["pair"], f"max rel. diff {err:.1e}"))

    for batch in (1, n_blur):
        def ours_blur():
            return fattr.blur_integrated_gradients(model, x, n_steps=n_blur, target=case.target)

        def theirs_blur(batch: int = batch):
            return np.stack([BlurIG().GetMask(x[i].permute(1, 2, 0).numpy(), _pair_model_function(model, t, True),
                                              steps=n_blur, batch_size=batch) for i, t in enumerate(targets)])

        ref = torch.from_numpy(theirs_blur()).permute(0, 3, 1, 2)
        with torch.no_grad():
            err = float((ours_blur() - ref).abs().max() / ref.abs().max())
        t = _timed({"fattr": ours_blur, "pair": theirs_blur}, runs)
        rows.append((f"blur_integrated_gradients (n_steps={n_blur}, PAIR batch_size={batch})", t["fattr"],
                     t["pair"], f"max rel. diff {err:.1e}"))
    return rows


class _Noise:
    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)

    def __call__(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        noise = 0.05 * torch.randn(inputs.shape, generator=self.g)
        return noise, inputs - noise


class _Ball:
    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)

    def __call__(self, inputs: torch.Tensor, radius: float) -> torch.Tensor:
        return inputs + (2 * torch.rand(inputs.shape, generator=self.g) - 1) * radius


def metric_rows(case: cases.Case, n_samples: int, runs: int) -> List[Tuple[str, float, float, str]]:
    import captum.metrics
    from captum.attr import Saliency

    model, x, target = case.model, case.inputs, case.target
    attr = fattr.integrated_gradients(model, x, target=target, n_steps=16).detach()
    rows = []

    def ours_inf():
        with torch.no_grad():
            return fattr.metrics.infidelity(model, _Noise(0), x, attr, target=target, n_perturb_samples=n_samples)

    def theirs_inf():
        return captum.metrics.infidelity(model, _Noise(0), x, attr, target=target, n_perturb_samples=n_samples)

    err = float(((ours_inf() - theirs_inf()).abs() / theirs_inf().abs()).max())
    t = _timed({"fattr": ours_inf, "captum": theirs_inf}, runs)
    rows.append((f"infidelity (n_perturb_samples={n_samples})", t["fattr"], t["captum"], f"max rel. diff {err:.1e}"))

    saliency = Saliency(model)

    def explain(inputs, target):
        return fattr.saliency(model, inputs, target=target)

    def ours_sens():
        with torch.no_grad():
            return fattr.metrics.sensitivity_max(explain, x, _Ball(1), n_perturb_samples=n_samples, target=target)

    def theirs_sens():
        return captum.metrics.sensitivity_max(saliency.attribute, x, _Ball(1), n_perturb_samples=n_samples,
                                              target=target)

    err = float(((ours_sens() - theirs_sens()).abs() / theirs_sens().abs()).max())
    t = _timed({"fattr": ours_sens, "captum": theirs_sens}, runs)
    rows.append((f"sensitivity_max (saliency, n_perturb_samples={n_samples})", t["fattr"], t["captum"],
                 f"max rel. diff {err:.1e}"))
    return rows


def main(argv: List[str] = ()) -> int:  # type: ignore[assignment]
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps and runs (seconds)")
    parser.add_argument("--runs", type=int, default=None)
    ns = parser.parse_args(list(argv))
    case = cases.build("cnn", smoke=ns.quick)
    runs = ns.runs or (1 if ns.quick else 5)
    n_guided, n_blur, n_samples = (20, 10, 4) if ns.quick else (200, 100, 10)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads); case cnn: {case.description}")
    print()
    print("| method | fattr ms | reference ms | fattr / reference | agreement |")
    print("|---|---|---|---|---|")
    for label, ours, theirs, note in pair_rows(case, n_guided, n_blur, runs) + metric_rows(case, n_samples, runs):
        ref = "PAIR" if "integrated" in label else "Captum"
        print(f"| {label} vs {ref} | {ours * 1e3:.1f} | {theirs * 1e3:.1f} | {ours / theirs:.2f} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
