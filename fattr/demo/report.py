"""``report.md``: what the demo measured, per method and for the attribution prior."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

import fattr

from .attribute import Outcome
from .captum_ref import Comparison
from .prior import PriorResult


def _number(value: Optional[float], fmt: str = "{:.2e}") -> str:
    return "–" if value is None else fmt.format(value)


def _verdict(o: Outcome, c: Comparison) -> str:
    """A note when fattr and Captum differ and Captum's own completeness delta shows it is Captum that is off."""
    if (c.delta is not None and o.delta is not None and c.max_abs_diff is not None and c.max_abs
            and c.max_abs_diff > 1e-3 * c.max_abs and c.delta > 100 * max(o.delta, 1e-12)):
        return "**differs from Captum, whose own completeness delta is far larger: Captum's error here**"
    return ""


def method_table(outcomes: Sequence[Outcome], comparisons: Dict[str, Comparison], layer: str,
                 captum: bool = True) -> str:
    """One row per method; the Captum columns only when Captum ran."""
    header = ["method", "attributes to", "time (ms)", "mean abs completeness delta"]
    align = ["---", "---", "---:", "---:"]
    if captum:
        header += ["Captum class", "max abs diff from Captum", "largest abs attribution", "Captum time (ms)",
                   "Captum's delta"]
        align += ["---", "---:", "---:", "---:", "---:"]
    lines = ["| " + " | ".join(header + ["notes"]) + " |", "|" + "|".join(align + ["---"]) + "|"]
    for o in outcomes:
        c = comparisons.get(o.name, Comparison())
        cells = [f"`{o.name}`", f"layer `{layer}`" if o.spec.layer else "input pixels",
                 "–" if o.error else f"{o.seconds * 1e3:.1f}", _number(o.delta)]
        if captum:
            cells += [c.captum_class or "–", _number(c.max_abs_diff), _number(c.max_abs, "{:.3g}"),
                      _number(None if c.seconds is None else c.seconds * 1e3, "{:.1f}"), _number(c.delta)]
        notes = "; ".join(n for n in (f"**failed**: {o.error}" if o.error else o.note,
                                      c.note if captum else "", _verdict(o, c)) if n)
        cells.append(notes.replace("|", "/").replace("\n", " "))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _metrics_section(table: str) -> str:
    if not table:
        return ""
    return f"""
## Metrics
How faithful each input-space method's ranking of the pixels is (`fattr.metrics`, each one batched call
over the digits): **deletion** and **insertion** are the areas under the logit of the true class as the
highest-ranked pixels are set to 0, or restored from 0, 4 pixels at a time; **infidelity** is the mean
squared error of `attributions . I` as a prediction of the logit's change under Gaussian noise `I`
(standard deviation 0.1, 64 draws per digit), after the best rescaling of the attributions (`normalize=True`).

{table}
"""


def write(path: Path, *, quick: bool, seed: int, accuracy: float, train_seconds: float, epochs: int,
          n_digits: int, outcomes: Sequence[Outcome], comparisons: Dict[str, Comparison], captum: bool,
          layer: str, prior: PriorResult, prior_epochs: int, total_seconds: float, repeats: int,
          metrics: str = "") -> None:
    captum_line = ("Captum is installed: each deterministic method is compared with its Captum class on "
                   "a copy of the model, with the same options; differences are absolute, to be read against "
                   "the largest attribution next to them." if captum else
                   "Captum is not installed (`pip install captum`), so there are no comparison columns.")
    text = f"""# fattr demo report

{'Quick run (`--quick`: short training, for tests).' if quick else 'Full run.'} Seed {seed};
torch {torch.__version__}, {torch.get_num_threads()} thread(s), Python {platform.python_version()},
fattr {fattr.__version__}. Total time {total_seconds:.1f} s.

## Classifier
A small CNN (3 convolutions, 2 linear layers) trained on scikit-learn's 8x8 digits for {epochs} epochs
in {train_seconds:.1f} s: **held-out accuracy {accuracy:.1%}**.

## Attribution methods
Every method in `fattr.methods()` ({len(outcomes)}), each one function call on {n_digits} held-out digits
for their true class; layer methods at `{layer}`. Times are the best of {repeats} identical call(s) (wall
clock; calls over 0.5 s run once).
The completeness delta is `sum(attributions) - (f(x) - f(baseline))` per example, from `return_delta=True`
where the method offers it; for the SHAP methods it is per example and baseline sample (for GradientSHAP a
one-point estimate per sample, so large by nature: only its mean over samples is an attribution). {captum_line}

{method_table(outcomes, comparisons, layer, captum)}
{_metrics_section(metrics)}
## Attribution prior
A second copy of the model (same initial weights, same batches) trained for {prior_epochs} epochs with
`loss = cross_entropy + mean over the batch of sum |IG| over the border pixels`, where IG is
`fattr.integrated_gradients(model, x, n_steps={prior.train_steps}, target=y)` inside the training loop (the
loss backpropagates through it; a few Gauss-Legendre steps are enough for a penalty). Border: the outermost
row and column on each side (28 of 64 pixels). Shares are measured with {prior.eval_steps} steps.

| model | held-out accuracy | share of abs IG on the border (held-out set) |
|---|---:|---:|
| plain | {prior.plain_accuracy:.1%} | {prior.plain_share:.1%} |
| with prior | {prior.prior_accuracy:.1%} | {prior.prior_share:.1%} |

Training with the prior took {prior.seconds:.1f} s.

## Pictures
- `attributions.png`: rows are digits, columns the image and one heat map per method (green positive,
  red negative, white zero; each cell scaled to its own maximum with the top 2% of mass clipped).
- `prior.png`: integrated gradients of the plain model and of the model trained with the prior; the dashed
  square is the central region the prior leaves free.
"""
    path.write_text(text)
