"""Token attributions as self-contained HTML: :func:`text` (no matplotlib needed)."""
from __future__ import annotations

import html
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import Shown, check_number, fail
from .arrays import to_numpy

_STYLE = "font-family: sans-serif; line-height: 2.2; color: black;"
_TOKEN = "background-color: {color}; padding: 0.1em 0.25em; border-radius: 0.25em;"


def color(value: float) -> str:
    """CSS colour of a scaled attribution in ``[-1, 1]``: green (positive), white (0), red (negative)."""
    value = max(-1.0, min(1.0, float(value)))
    if value >= 0:
        return f"hsl(120, 75%, {100 - round(50 * value)}%)"
    return f"hsl(0, 75%, {100 - round(40 * -value)}%)"


def full_colour(values: np.ndarray, scale: Optional[float]) -> float:
    """The attribution drawn at full colour: ``scale``, checked, or the largest ``|value|`` (1 for zeros)."""
    if scale is not None:
        return check_number("scale", scale, "None or a positive number", lambda v: not v > 0)
    top = float(np.abs(values).max()) if values.size else 0.0
    return top if top > 0 else 1.0


def text(tokens: Sequence[str], attributions: Any, *, scale: Optional[float] = None) -> str:
    """Tokens with their attributions as background colours: an HTML snippet.

    Positive attributions are green, negative red, the stronger the darker
    (Captum's ``visualize_text`` colours); the value shows as a tooltip. The HTML
    is self-contained (inline styles, no scripts): write it to a file or show it
    with ``IPython.display.HTML``.

    Args:
      tokens: the tokens, as strings (escaped in the HTML).
      attributions: one number per token: a 1-D tensor, array or list (sum a
        ``(T, D)`` embedding attribution over ``D`` first).
      scale: the attribution shown at full colour; None uses the largest
        ``|attribution|``. Values beyond it are clipped.

    Returns:
      A ``<div>`` with one ``<span>`` per token.

    Example:
      >>> import fattr.viz
      >>> snippet = fattr.viz.text(["a", "good", "film"], [0.0, 0.9, -0.2])
      >>> "hsl(120, 75%, 50%)" in snippet  # "good" at full green
      True
    """
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        fail("tokens", "a list of strings", tokens, kind=TypeError)
    for i, token in enumerate(tokens):
        if not isinstance(token, str):
            fail(f"tokens[{i}]", "a string", token, kind=TypeError)
    values = to_numpy(attributions, "attributions")
    if values.ndim != 1 or values.shape[0] != len(tokens):
        fail("attributions", f"one number per token: shape ({len(tokens)},)", Shown(f"shape {values.shape}"),
             "Sum embedding attributions over their last dim first." if values.ndim == 2 else "")
    if not np.isfinite(values).all():
        fail("attributions", "finite values", Shown("NaN or infinite entries"))
    top = full_colour(values, scale)
    spans = [f'<span style="{_TOKEN.format(color=color(value / top))}" title="{value:+.4g}">{html.escape(token)}</span>'
             for token, value in zip(tokens, values)]
    return f'<div class="fattr-text" style="{_STYLE}">' + " ".join(spans) + "</div>"
