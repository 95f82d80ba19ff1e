"""The demo's two pictures, drawn with :mod:`fattr.viz`."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

import fattr.viz

from .attribute import Outcome
from .prior import PriorResult


def attributions_png(path: Path, x: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor,
                     outcomes: Sequence[Outcome], layer: str) -> None:
    """Rows: digits; columns: the image, then one heat map per method (red negative, green positive)."""
    columns = {o.name: o.picture for o in outcomes if o.picture is not None}
    rows = [f"label {int(t)}\npredicted {int(p)}" for t, p in zip(labels, predictions)]
    layers = any(getattr(o.spec, "layer", False) for o in outcomes if o.picture is not None)
    where = f" (layer methods at {layer}: summed over channels, upsampled to the image)" if layers else ""
    fig = fattr.viz.image_grid(columns, x, method="heat_map", sign="all", row_titles=rows, cell_size=0.85,
                               title=f"Every registered fattr method on held-out digits, one call each{where}\n"
                                     "green positive, red negative, white zero; each cell scaled to its own max")
    fig.savefig(path, dpi=80)


def prior_png(path: Path, x: torch.Tensor, plain_attr: torch.Tensor, prior_attr: torch.Tensor,
              result: PriorResult, margin: int = 1) -> None:
    """Rows: the digits, IG of the plain model, IG of the model trained with the prior."""
    from matplotlib.patches import Rectangle

    columns = {"integrated gradients, plain model": plain_attr, "integrated gradients, with prior": prior_attr}
    fig = fattr.viz.image_grid(columns, x, method="heat_map", sign="all", transpose=True, cell_size=0.9,
                               row_titles=[""] * x.shape[0],
                               title=("Attribution prior: a penalty on |IG| outside the dashed square, "
                                      "backpropagated through fattr.integrated_gradients\n"
                                      f"share of |IG| on the border {result.plain_share:.1%} \u2192 "
                                      f"{result.prior_share:.1%}, held-out accuracy "
                                      f"{result.plain_accuracy:.1%} \u2192 {result.prior_accuracy:.1%}"))
    size = x.shape[-1]
    n = x.shape[0]
    for ax in fig.axes[n:3 * n]:  # heat-map rows: outline the central (unpenalised) region
        ax.add_patch(Rectangle((margin - 0.5, margin - 0.5), size - 2 * margin, size - 2 * margin,
                               fill=False, edgecolor="black", linestyle="--", linewidth=0.8))
    fig.savefig(path, dpi=80)
