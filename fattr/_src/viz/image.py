"""One attribution map as a picture: :func:`image`."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import mpl
from .arrays import as_hwc, check_style, display_image, normalize


def image(attributions: Any, original: Any = None, *, method: str = "blended_heat_map", sign: str = "all",
          outlier_perc: float = 2, cmap: Any = None, alpha: float = 0.5, ax: Any = None,
          title: Optional[str] = None) -> Any:
    """Draw the attributions of one image (Captum's ``visualize_image_attr`` conventions).

    Attributions are summed over channels, filtered by ``sign``, scaled so that
    the largest values holding ``outlier_perc`` percent of the absolute
    attribution mass are clipped, and drawn with colours centred at zero: for
    ``sign="all"`` negative is red, zero white and positive green.

    Args:
      attributions: one example's attributions: ``(H, W)``, ``(C, H, W)`` (a torch
        tensor's usual layout), ``(H, W, C)``, or either with a leading batch of
        one. A tensor, numpy array or nested list.
      original: the image, same height and width, any of the same layouts, 1 or 3
        channels; values in ``[0, 1]``, in ``[0, 255]``, or anything else (then
        rescaled from its min and max). Needed by every method but ``"heat_map"``.
      method: ``"heat_map"`` (attributions only), ``"blended_heat_map"`` (heat map
        with opacity ``alpha`` over the greyscale image), ``"masked_image"`` (image
        times the scaled attributions) or ``"alpha_scaling"`` (image with the
        scaled attributions as its opacity).
      sign: ``"all"``, ``"positive"``, ``"negative"`` or ``"absolute_value"``.
        ``"masked_image"`` and ``"alpha_scaling"`` show one sign, not ``"all"``.
      outlier_perc: percent of the attribution mass treated as outliers, in ``[0, 100)``.
      cmap: a colormap name or Colormap for the heat maps; None picks the default
        for ``sign`` (red-white-green, Greens, Reds, Blues).
      alpha: opacity of the heat map in ``"blended_heat_map"``, in ``[0, 1]``.
      ax: matplotlib Axes to draw on; None draws on a new Figure (no pyplot).
      title: title of the Axes.

    Returns:
      The matplotlib Axes; ``ax.figure.savefig(path)`` writes the picture.

    Example:
      >>> import torch, fattr, fattr.viz
      >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(),
      ...                             torch.nn.Linear(4 * 8 * 8, 10))
      >>> x = torch.rand(2, 3, 8, 8)
      >>> attr = fattr.integrated_gradients(model, x, target=0)
      >>> ax = fattr.viz.image(attr[0], x[0], title="IG, class 0")
      >>> import os, tempfile
      >>> with tempfile.TemporaryDirectory() as out:   # any folder: a temporary one here
      ...     ax.figure.savefig(os.path.join(out, "ig.png"))
    """
    outlier_perc, alpha = check_style(method, sign, original, outlier_perc, alpha)
    attr = as_hwc(attributions, "attributions")
    picture = None if original is None else display_image(original, "original", attr.shape[:2])
    colors = mpl.colormap(cmap, sign) if method in ("heat_map", "blended_heat_map") else None
    ax = mpl.new_axes() if ax is None else mpl.check_axes(ax)
    scaled = normalize(attr, sign, outlier_perc)
    low = -1.0 if sign == "all" else 0.0
    if method == "heat_map":
        ax.imshow(scaled, cmap=colors, vmin=low, vmax=1.0, interpolation="nearest")
    elif method == "blended_heat_map":
        assert picture is not None
        ax.imshow(picture.mean(axis=2), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.imshow(scaled, cmap=colors, vmin=low, vmax=1.0, alpha=alpha, interpolation="nearest")
    elif method == "masked_image":
        assert picture is not None
        ax.imshow(picture * scaled[:, :, None], vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        assert picture is not None
        ax.imshow(np.concatenate([picture, scaled[:, :, None]], axis=2), interpolation="nearest")
    ax.set(xticks=[], yticks=[])
    if title is not None:
        ax.set_title(title)
    return ax
