"""A table of attribution pictures, methods x examples: :func:`image_grid`."""
from __future__ import annotations

import textwrap
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from ..errors import Shown, check_bool, check_number, fail
from . import mpl
from .arrays import check_style, display_image
from .image import image


def _rows(value: Any, name: str) -> int:
    if not isinstance(value, (torch.Tensor, np.ndarray)):
        fail(name, "a tensor or numpy array with examples along dim 0", value, kind=TypeError)
    if value.ndim < 3:
        fail(name, "a batch of images, (B, H, W) or (B, C, H, W)", Shown(f"shape {tuple(value.shape)}"),
             "For one image use fattr.viz.image.")
    return int(value.shape[0])


def _label(name: str, width: int = 14) -> str:
    return textwrap.fill(name.replace("_", " "), width)


def image_grid(attributions: Any, originals: Any = None, *, method: str = "heat_map", sign: str = "all",
               outlier_perc: float = 2, cmap: Any = None, alpha: float = 0.5, show_original: bool = True,
               row_titles: Optional[Sequence[str]] = None, transpose: bool = False, cell_size: float = 1.0,
               colorbar: bool = True, title: Optional[str] = None) -> Any:
    """A table of attribution pictures: one row per example, one column per method.

    Every cell is drawn by :func:`image` and scaled on its own (its own outliers,
    its own maximum), so the colours compare where each method puts its mass,
    not magnitudes across methods.

    Args:
      attributions: ``{name: batch}`` with every batch ``(B, H, W)``, ``(B, C, H, W)``
        or ``(B, H, W, C)`` (see :func:`image` for layouts) and the same ``B``; a
        single batch is one column named ``"attributions"``.
      originals: the images ``(B, ...)``; drawn as the first column when
        ``show_original``, and needed by every method but ``"heat_map"``.
      method, sign, outlier_perc, cmap, alpha: as in :func:`image`, for every cell.
      show_original: start every row with the image (needs ``originals``).
      row_titles: one label per example, written left of its row.
      transpose: one row per method and one column per example instead.
      cell_size: size of one cell in inches.
      colorbar: draw the colour scale once, under the table.
      title: title of the figure.

    Returns:
      A matplotlib Figure (no pyplot); ``fig.savefig(path)`` writes it.

    Example:
      >>> import torch, fattr, fattr.viz
      >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
      >>> x = torch.rand(3, 1, 8, 8)
      >>> attrs = {"saliency": fattr.saliency(model, x, target=0, abs=False),
      ...          "integrated_gradients": fattr.integrated_gradients(model, x, target=0)}
      >>> fig = fattr.viz.image_grid(attrs, x, row_titles=["a", "b", "c"])
      >>> import os, tempfile
      >>> with tempfile.TemporaryDirectory() as out:   # any folder: a temporary one here
      ...     fig.savefig(os.path.join(out, "grid.png"))
    """
    if isinstance(attributions, (torch.Tensor, np.ndarray)):
        attributions = {"attributions": attributions}
    if not isinstance(attributions, Mapping) or not attributions:
        fail("attributions", "a non-empty {name: batch} mapping or one batch tensor", attributions, kind=TypeError)
    outlier_perc, alpha = check_style(method, sign, originals if method != "heat_map" else None, outlier_perc, alpha)
    for name, flag in (("show_original", show_original), ("transpose", transpose), ("colorbar", colorbar)):
        check_bool(name, flag)
    check_number("cell_size", cell_size, "a positive number of inches", lambda v: v <= 0)
    names = list(attributions)
    n = _rows(attributions[names[0]], f"attributions[{names[0]!r}]")
    for name in names[1:]:
        if _rows(attributions[name], f"attributions[{name!r}]") != n:
            fail(f"attributions[{name!r}]", f"{n} examples like attributions[{names[0]!r}]",
                 Shown(f"{attributions[name].shape[0]} examples"))
    if show_original and originals is None:
        fail("originals", "the images when show_original=True", Shown("None"),
             "Pass originals=... or show_original=False.")
    if originals is not None and _rows(originals, "originals") != n:
        fail("originals", f"{n} images, one per example", Shown(f"{originals.shape[0]} images"))
    if row_titles is not None and (isinstance(row_titles, str) or len(row_titles) != n):
        fail("row_titles", f"a sequence of {n} labels", row_titles)

    mpl.matplotlib()
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    columns = (["image"] if show_original else []) + names
    shape = (len(columns), n) if transpose else (n, len(columns))
    # a fixed layout in inches (constrained layout costs seconds for large tables)
    gap, left = 0.08 * cell_size, 0.6 if (transpose or row_titles is not None) else 0.1
    width = left + shape[1] * cell_size + (shape[1] - 1) * gap + 0.1
    headers = ([str(t) for t in row_titles] if row_titles is not None else [""] * n) if transpose else columns
    header_lines = max(_label(h).count("\n") + 1 if h else 0 for h in headers)
    if title is not None:  # wrapped to the figure's width (about 12 characters per inch at 10 pt)
        title = "\n".join(textwrap.fill(line, max(20, int(width * 12))) for line in str(title).split("\n"))
    title_lines = title.count("\n") + 1 if title is not None else 0
    top = 0.1 + (0.14 * header_lines + 0.06 if header_lines else 0.0) + 0.2 * title_lines
    bottom = 0.55 if colorbar else 0.1
    height = top + shape[0] * cell_size + (shape[0] - 1) * gap + bottom
    fig = Figure(figsize=(width, height))
    axes = np.asarray(fig.subplots(*shape, squeeze=False, gridspec_kw=dict(
        left=left / width, right=1 - 0.1 / width, bottom=bottom / height, top=1 - top / height,
        wspace=gap / cell_size, hspace=gap / cell_size)))
    for i in range(n):
        for j, column in enumerate(columns):
            ax = axes[j, i] if transpose else axes[i, j]
            if column == "image":
                ax.imshow(display_image(originals[i], f"originals[{i}]"), vmin=0.0, vmax=1.0, interpolation="nearest")
                ax.set(xticks=[], yticks=[])
            else:
                original = None if method == "heat_map" else originals[i]
                image(attributions[column][i], original, method=method, sign=sign, outlier_perc=outlier_perc,
                      cmap=cmap, alpha=alpha, ax=ax)
            row, col = (j, i) if transpose else (i, j)
            if row == 0 and headers[col]:
                ax.set_title(_label(headers[col]), fontsize=8)
            if col == 0:
                label = column if transpose else (row_titles[i] if row_titles is not None else "")
                ax.set_ylabel(_label(str(label)), fontsize=8)
    if colorbar and method in ("heat_map", "blended_heat_map"):
        low = -1.0 if sign == "all" else 0.0
        span = min(width - left - 0.1, 4.0)
        cax = fig.add_axes((left / width + (width - left - 0.1 - span) / 2 / width, 0.28 / height,
                            span / width, 0.12 / height))
        bar = fig.colorbar(ScalarMappable(Normalize(low, 1.0), mpl.colormap(cmap, sign)), cax=cax,
                           orientation="horizontal")
        ticks = {"all": ["negative", "0", "positive"], "positive": ["0", "", "max"],
                 "negative": ["0", "", "max |negative|"], "absolute_value": ["0", "", "max |value|"]}[sign]
        bar.set_ticks([low, (low + 1.0) / 2, 1.0], labels=ticks)
        bar.ax.tick_params(labelsize=7)
    if title is not None:
        fig.suptitle(title, fontsize=10, y=1 - 0.08 / height, va="top")
    return fig
