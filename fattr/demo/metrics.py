"""The demo's metrics table: deletion and insertion AUC and infidelity of every input-space method."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

import fattr.metrics

from .attribute import Outcome

N_STEPS = 16          # deletion / insertion points after the first (4 of the 64 pixels at a time)
N_PERTURB = 64        # infidelity's perturbations per digit
NOISE = 0.1           # their standard deviation (pixels lie in [0, 1])


def table(model: nn.Module, x: torch.Tensor, target: torch.Tensor, outcomes: Sequence[Outcome],
          seed: int) -> str:
    """One row per method whose attributions are shaped like the digits (layer maps and pairwise
    interactions are not pixel rankings), each metric one batched call."""
    def perturb(inputs: torch.Tensor, generator: torch.Generator) -> tuple:
        noise = NOISE * torch.randn(inputs.shape, generator=generator, dtype=inputs.dtype)
        return noise, inputs - noise

    lines = ["| method | deletion AUC (lower is better) | insertion AUC (higher is better) | "
             "infidelity, normalised (lower is better) |", "|---|---:|---:|---:|"]
    for o in outcomes:
        attr = o.attributions
        if o.error is not None or not isinstance(attr, torch.Tensor) or attr.shape != x.shape:
            continue
        attr = attr.detach()
        with torch.no_grad():
            deletion = fattr.metrics.deletion(model, x, attr, target=target, n_steps=N_STEPS)[1].mean()
            insertion = fattr.metrics.insertion(model, x, attr, target=target, n_steps=N_STEPS)[1].mean()
            infidelity = fattr.metrics.infidelity(model, perturb, x, attr, target=target, n_perturb_samples=N_PERTURB,
                                                  normalize=True, generator=torch.Generator().manual_seed(seed))
        lines.append(f"| `{o.name}` | {float(deletion):.2f} | {float(insertion):.2f} | "
                     f"{float(infidelity.mean()):.4f} |")
    return "\n".join(lines)
