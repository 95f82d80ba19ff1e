"""``TokenAttribution``: what :func:`fattr.token_attribution` returns."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from torch import Tensor


@dataclass(frozen=True)
class TokenAttribution:
    """Attributions of each generated token to each prompt token.

    Attributes:
      token_attr: ``(B, T_out, T_in)``: row ``i`` attributes output token ``i``'s step value
        to the prompt tokens (0 at pads, and for output tokens after an end of sequence).
      seq_attr: ``(B, T_in)``: attribution of the sum of the step values over the output
        tokens; every method here is linear in the attributed function, so it equals
        ``token_attr.sum(1)``.
      values: ``(B, T_out)``: the step values (log-probabilities by default) of the target
        tokens given the prompt (0 after an end of sequence).
      input_ids: ``(B, T_in)``, as given.
      target_ids: ``(B, T_out)``: the explained continuation (given, or greedily decoded).
      target_mask: ``(B, T_out)`` bool: False for the padding after an end-of-sequence id.
    """

    token_attr: Tensor
    seq_attr: Tensor
    values: Tensor
    input_ids: Tensor
    target_ids: Tensor
    target_mask: Tensor

    def to_html(self, tokens_in: Sequence[str], tokens_out: Sequence[str], *, example: int = 0,
                scale: Optional[float] = None) -> str:
        """The ``example``'s output x input table as self-contained HTML (cells coloured by attribution:
        green positive, red negative; the value as a tooltip). See :func:`fattr.viz.token_matrix`."""
        from ..viz.token_matrix import token_html
        return token_html(self, tokens_in, tokens_out, example=example, scale=scale)
