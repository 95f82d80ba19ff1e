"""A language model's token attributions as an output x input matrix: :func:`token_matrix` (a
matplotlib picture) and :func:`token_html` (HTML, no matplotlib)."""
from __future__ import annotations

import html
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ..errors import Shown, fail
from . import mpl
from .arrays import to_numpy
from .text import color, full_colour


def _matrix(result: Any, tokens_in: Sequence[str], tokens_out: Sequence[str], example: int) -> np.ndarray:
    values = to_numpy(getattr(result, "token_attr", result), "result")
    if values.ndim == 3:
        if isinstance(example, bool) or not isinstance(example, int) or not 0 <= example < values.shape[0]:
            fail("example", f"an index into the batch of {values.shape[0]}", example)
        values = values[example]
    if values.ndim != 2:
        fail("result", "a TokenAttribution, or token attributions (T_out, T_in) / (B, T_out, T_in)",
             Shown(f"shape {values.shape}"))
    for name, tokens, n in (("tokens_in", tokens_in, values.shape[1]), ("tokens_out", tokens_out, values.shape[0])):
        if isinstance(tokens, str) or not isinstance(tokens, Sequence) or not all(isinstance(t, str) for t in tokens):
            fail(name, "a list of strings", tokens, kind=TypeError)
        if len(tokens) != n:
            fail(name, f"{n} tokens (the attributions have {n} along this axis)", Shown(f"{len(tokens)} tokens"))
    return values


def token_matrix(result: Any, tokens_in: Sequence[str], tokens_out: Sequence[str], ax: Any = None, *,
                 example: int = 0, scale: Optional[float] = None, cmap: Any = None,
                 figsize: Optional[Tuple[float, float]] = None) -> Any:
    """Draw which prompt tokens (columns) made the model say each output token (rows).

    A heat map of ``token_attr``: diverging colours centred at 0 (negative red, zero white,
    positive green), ``scale`` at full colour (None: the largest ``|attribution|``).

    Args:
      result: a :class:`fattr.TokenAttribution`, or its ``token_attr`` ``(B, T_out, T_in)`` /
        ``(T_out, T_in)``.
      tokens_in: the prompt's ``T_in`` tokens as strings (column labels).
      tokens_out: the ``T_out`` output tokens (row labels).
      ax: matplotlib Axes to draw on; None draws on a new Figure (no pyplot).
      example: which row of the batch.
      scale: the attribution at full colour.
      cmap: a colormap (default red-white-green).
      figsize: of the new Figure, when ``ax`` is None.

    Returns:
      The matplotlib Axes (``ax.figure.savefig(path)`` writes the picture).

    Example:
      >>> import torch, fattr
      >>> attr = torch.tensor([[[0.5, -0.2, 0.0], [0.1, 0.9, -0.4]]])   # (B, T_out, T_in)
      >>> ax = fattr.viz.token_matrix(attr, ["the", "cat", "sat"], ["on", "mat"])
      >>> [t.get_text() for t in ax.get_xticklabels()]
      ['the', 'cat', 'sat']
    """
    values = _matrix(result, tokens_in, tokens_out, example)
    top = full_colour(values, scale)
    size = figsize or (max(3.0, 0.45 * len(tokens_in) + 1.5), max(2.0, 0.4 * len(tokens_out) + 1.2))
    ax = mpl.new_axes(size) if ax is None else mpl.check_axes(ax)
    image = ax.imshow(values, cmap=mpl.colormap(cmap, "all"), vmin=-top, vmax=top, aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(range(len(tokens_in)), list(tokens_in), rotation=90)
    ax.set_yticks(range(len(tokens_out)), list(tokens_out))
    ax.set_xlabel("prompt token")
    ax.set_ylabel("output token")
    ax.figure.colorbar(image, ax=ax, fraction=0.04)
    return ax


def token_html(result: Any, tokens_in: Sequence[str], tokens_out: Sequence[str], *, example: int = 0,
               scale: Optional[float] = None) -> str:
    """The output x input table as self-contained HTML (inline styles, no scripts); each cell's
    value as a tooltip, colours as :func:`fattr.viz.text`'s."""
    values = _matrix(result, tokens_in, tokens_out, example)
    top = full_colour(values, scale)
    head = "".join(f"<th>{html.escape(t)}</th>" for t in tokens_in)
    rows = []
    for token, row in zip(tokens_out, values):
        cells = "".join(f'<td style="background-color: {color(v / top)}; padding: 0.2em 0.4em;" '
                        f'title="{v:+.4g}">{v:+.2f}</td>' for v in row)
        rows.append(f"<tr><th>{html.escape(token)}</th>{cells}</tr>")
    return (f'<table class="fattr-token-matrix" style="border-collapse: collapse; font-family: sans-serif;">'
            f"<tr><th></th>{head}</tr>" + "".join(rows) + "</table>")
