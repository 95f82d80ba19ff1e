"""matplotlib, imported on first use (``import fattr`` never imports it)."""
from __future__ import annotations

from typing import Any, Tuple

from ..errors import fail

DIVERGING = "fattr_red_white_green"


def matplotlib() -> Any:
    """The matplotlib module, or an ImportError saying how to install it."""
    try:
        import matplotlib as mpl
    except ImportError as e:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("fattr.viz needs matplotlib: pip install 'fattr[viz]'") from e
    return mpl


def colormap(cmap: Any, sign: str) -> Any:
    """``cmap`` resolved to a Colormap; None gives the default for ``sign``.

    Defaults (Captum's): red-white-green for ``"all"`` (negative red, zero white,
    positive green), ``"Greens"`` for positive, ``"Reds"`` for negative and
    ``"Blues"`` for absolute values.
    """
    mpl = matplotlib()
    from matplotlib.colors import Colormap, LinearSegmentedColormap

    if cmap is None:
        if sign == "all":
            return LinearSegmentedColormap.from_list(DIVERGING, ["red", "white", "green"])
        cmap = {"positive": "Greens", "negative": "Reds", "absolute_value": "Blues"}[sign]
    if isinstance(cmap, Colormap):
        return cmap
    if not isinstance(cmap, str):
        fail("cmap", "None, a colormap name or a matplotlib Colormap", cmap, kind=TypeError)
    try:
        return mpl.colormaps[cmap]
    except KeyError:
        fail("cmap", "a matplotlib colormap name such as 'RdYlGn' or 'viridis'", cmap)


def new_axes(figsize: Tuple[float, float] = (3.0, 3.0)) -> Any:
    """Axes on a new pyplot-free Figure (no GUI backend, nothing global)."""
    matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=figsize).add_subplot()


def check_axes(ax: Any) -> Any:
    matplotlib()
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        fail("ax", "None or a matplotlib Axes", ax, kind=TypeError)
    return ax
