"""Greedy decoding of the continuation to explain, when ``target_ids`` is not given."""
from __future__ import annotations

from typing import Any, Tuple

import torch
from torch import Tensor

from .causal import call_model, check_logits, positions_from


def greedy(model: Any, ids: Tensor, mask: Tensor, max_new_tokens: int, eos: Tuple[int, ...], pad_id: int,
           with_positions: bool, with_keep: bool) -> Tuple[Tensor, Tensor]:
    """``(target_ids, target_mask)``, each ``(B, T_out)``, ``T_out <= max_new_tokens``.

    ``ids`` and ``mask`` are left-padded. Every step is one forward of the whole batch over the
    sequence so far (no cache), the argmax of the last position's logits. A row that emitted an
    end-of-sequence id keeps it and is padded with ``pad_id`` afterwards (mask 0); decoding stops
    when every row has ended. No sampling; the model is run without a graph.
    """
    b = ids.shape[0]
    out = ids.new_zeros((b, 0))
    done = torch.zeros(b, dtype=torch.bool, device=ids.device)
    live = torch.ones((b, 0), dtype=torch.bool, device=ids.device)
    eos_t = torch.tensor(eos, dtype=ids.dtype, device=ids.device)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            seq = torch.cat([ids, out], dim=1)
            seq_mask = torch.cat([mask, torch.ones_like(out, dtype=mask.dtype)], dim=1)
            positions = positions_from(seq_mask) if with_positions and bool((mask == 0).any()) else None
            logits = call_model(model, seq, seq_mask, positions, 1 if with_keep else None)
            check_logits(logits, b, 1 if with_keep else seq.shape[1], with_keep)
            nxt = logits[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            live = torch.cat([live, (~done)[:, None]], dim=1)
            out = torch.cat([out, nxt[:, None]], dim=1)
            done = done | torch.isin(nxt, eos_t)
            if bool(done.all()):
                break
    return out, live
