"""Attributions and images as numpy arrays: layout, value range, sign and outlier scaling (:func:`normalize`,
what :func:`fattr.viz.image` draws, Captum's ``visualize_image_attr`` conventions). Pure numpy, no matplotlib."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import torch

from ..errors import Shown, check_choice, check_number, fail

METHODS = ("heat_map", "blended_heat_map", "masked_image", "alpha_scaling")
SIGNS = ("all", "positive", "negative", "absolute_value")
NEEDS_ORIGINAL = ("blended_heat_map", "masked_image", "alpha_scaling")
ONE_SIGNED = ("masked_image", "alpha_scaling")  # cannot show both signs at once
_CHANNEL_COUNTS = (1, 3, 4)


def to_numpy(value: Any, name: str) -> np.ndarray:
    """A float64 numpy copy of a tensor, an array or a (nested) list of numbers."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64).numpy()
    try:
        if isinstance(value, (np.ndarray, list, tuple)) or np.isscalar(value):
            return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        pass
    fail(name, "a tensor, a numpy array or a list of numbers", value, kind=TypeError)


def as_hwc(value: Any, name: str) -> np.ndarray:
    """One image as an ``(H, W, C)`` float64 array.

    Accepts ``(H, W)``; ``(C, H, W)`` or ``(H, W, C)``; and either with a leading
    batch of one. A 3-D value is channels-first when only its first dim has 1, 3
    or 4 entries, channels-last when only its last one has; otherwise a torch
    tensor is read channels-first (PyTorch's layout) and a numpy array
    channels-last (matplotlib's and Captum's).
    """
    array = to_numpy(value, name)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim == 3:
        first, last = array.shape[0] in _CHANNEL_COUNTS, array.shape[-1] in _CHANNEL_COUNTS
        if first if first != last else isinstance(value, torch.Tensor):
            array = np.moveaxis(array, 0, -1)
    else:
        hint = "Pass one example (index the batch), or use fattr.viz.image_grid for a batch."
        kind = "a tensor" if isinstance(value, torch.Tensor) else "an array"
        fail(name, "one image: (H, W), (C, H, W) or (H, W, C)", Shown(f"{kind} of shape {array.shape}"), hint)
    if array.shape[0] < 1 or array.shape[1] < 1:
        fail(name, "an image with at least one pixel", Shown(f"shape {array.shape}"))
    if not np.isfinite(array).all():
        fail(name, "finite values", Shown("NaN or infinite entries"))
    return array


def display_image(value: Any, name: str, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """An image to draw: ``(H, W, 3)`` floats in ``[0, 1]``, ``(H, W) == size`` unless size is None.

    Values already in ``[0, 1]`` are kept, values in ``[0, 255]`` are divided by
    255, anything else (standardised images) is rescaled from its min and max.
    """
    image = as_hwc(value, name)
    if size is not None and image.shape[:2] != tuple(size):
        fail(name, f"an image of height x width {size[0]} x {size[1]} like the attributions",
             Shown(f"{image.shape[0]} x {image.shape[1]}"))
    channels = image.shape[2]
    if channels == 4:
        image, channels = image[:, :, :3], 3
    if channels not in (1, 3):
        fail(name, "an image with 1 or 3 channels", Shown(f"{channels} channels"))
    low, high = float(image.min()), float(image.max())
    if low < 0.0 or high > 255.0:
        image = (image - low) / (high - low)
    elif high > 1.0:
        image = image / 255.0
    return np.repeat(image, 3, axis=2) if channels == 1 else image


def threshold(magnitudes: np.ndarray, percentile: float) -> float:
    """The smallest value ``t`` such that values ``<= t`` hold ``percentile`` % of the total mass."""
    ordered = np.sort(magnitudes.ravel())
    sums = np.cumsum(ordered)
    if sums[-1] <= 0:
        return 0.0
    index = int(np.searchsorted(sums, sums[-1] * percentile / 100.0, side="left"))
    return float(ordered[min(index, ordered.size - 1)])


def normalize(attributions: np.ndarray, sign: str, outlier_perc: float) -> np.ndarray:
    """Channel-summed ``(H, W)`` attributions scaled to ``[-1, 1]`` (``[0, 1]`` unless ``sign="all"``): divided by
    the value below which ``100 - outlier_perc`` percent of the absolute attribution mass lies and clipped, so a
    few extreme pixels cannot wash out the rest.

    ``sign="negative"`` keeps the negative part and returns its magnitude.
    All-zero attributions (after the sign filter) give zeros.
    """
    attr = attributions.sum(axis=2) if attributions.ndim == 3 else attributions
    if sign == "positive":
        attr = np.maximum(attr, 0.0)
    elif sign == "negative":
        attr = -np.minimum(attr, 0.0)
    elif sign == "absolute_value":
        attr = np.abs(attr)
    scale = threshold(np.abs(attr), 100.0 - outlier_perc)
    if scale <= 0.0:
        return np.zeros_like(attr)
    return np.clip(attr / scale, -1.0, 1.0)


def check_style(method: Any, sign: Any, original: Optional[Any], outlier_perc: Any, alpha: Any) -> Tuple[float, float]:
    """Valid names, an original where the method draws one, one sign where the method needs it; returns
    ``(outlier_perc, alpha)``, checked."""
    check_choice("method", method, METHODS)
    check_choice("sign", sign, SIGNS)
    if method in NEEDS_ORIGINAL and original is None:
        fail("original", f"an image for method={method!r}", Shown("None"),
             "Pass original=..., or use method='heat_map'.")
    if method in ONE_SIGNED and sign == "all":
        fail("sign", f"'positive', 'negative' or 'absolute_value' for method={method!r}", sign,
             "It cannot show both signs at once.")
    return (check_number("outlier_perc", outlier_perc, "a number in [0, 100)", lambda v: not 0.0 <= v < 100.0),
            check_number("alpha", alpha, "a number in [0, 1]", lambda v: not 0.0 <= v <= 1.0))
