"""A causal language model seen by the engine: prompt + target teacher-forced in one forward.

:func:`prepare` moves the prompts to left padding (a stable sort of every row by its attention mask: pads
first, tokens in order; right, left or mixed padding all end up left-padded) and, when the model's
``forward`` takes them, counts position ids from the mask (as Hugging Face's ``generate`` does), so a
padded prompt sees the positions it would see alone.
"""
from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..arguments import as_args
from ..calling import call
from ..errors import Shown, fail
from ..layer import locking

Step = Union[str, Callable[[Tensor, Tensor], Tensor]]
STEPS = ("log_prob", "prob", "logit", "contrast")


def logits_of(out: Any) -> Tensor:
    """The logits of a model's output: a tensor, or an object / dict with ``logits``."""
    if isinstance(out, Tensor):
        return out
    found = out.get("logits") if isinstance(out, dict) else getattr(out, "logits", None)
    if not isinstance(found, Tensor):
        fail("model", "to return logits (B, T, V), or an object with a .logits tensor", out, kind=TypeError)
    return found


def takes(model: Any, name: str) -> bool:
    """Whether ``model``'s forward accepts the keyword argument ``name``."""
    try:
        params = inspect.signature(model.forward if isinstance(model, nn.Module) else model).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def call_model(model: Any, ids: Tensor, mask: Tensor, positions: Optional[Tensor], keep: Optional[int] = None,
               *, lock: bool = True) -> Tensor:
    """``model(ids, attention_mask=mask[, position_ids=positions][, logits_to_keep=keep])``'s logits
    (buffers left untouched). ``keep``: only the last ``keep`` positions' logits (Hugging Face's
    ``logits_to_keep``: the read-out, ``(T, E) x (E, V)``, then runs on those positions only).
    ``lock``: run under the reader side of the tracing lock (False inside a split, which holds it
    already, or traces this very call)."""
    optional = {"position_ids": positions, "logits_to_keep": keep}
    keywords = {"attention_mask": mask, **{k: v for k, v in optional.items() if v is not None}}
    with locking.reading() if lock else contextlib.nullcontext():  # not while another thread traces (fx)
        return logits_of(call(model, (ids,), as_args((), keywords)))


def causal_lm(model: nn.Module, keep: Optional[int] = None) -> Callable[..., Tensor]:
    """``(ids, mask[, positions]) -> logits``: a causal LM with positional arguments, for the split. A
    function of the model (not a wrapper module), so the split's plan is the model's: made anew per call,
    it shares the plan captured by the first (plans are keyed on a function's code and closure values)."""

    def logits(ids: Tensor, mask: Tensor, positions: Optional[Tensor] = None) -> Tensor:
        return call_model(model, ids, mask, positions, keep, lock=False)

    return logits


def positions_from(mask: Tensor) -> Tensor:
    """Position ids counted over the unmasked tokens (Hugging Face ``generate``'s rule)."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)


@dataclass(frozen=True)
class Prompts:
    """Prompts in left padding with their targets appended.

    Attributes:
      ids: ``(B, T_in)`` prompt ids, left-padded.
      mask: ``(B, T_in)`` 1 at tokens, 0 at pads (left-padded).
      order: ``(B, T_in)``: ``ids[b, j] = input_ids[b, order[b, j]]``.
      target: ``(B, T_out)`` target ids.
      full_ids, full_mask: ``(B, T_in + T_out)``: prompt then target.
      positions: ``(B, T_in + T_out)`` position ids, or None (no padding, or a model that takes none).
      keep: ``T_out + 1`` when the model takes ``logits_to_keep`` (only the positions that predict a
        target token, and the last, get logits), else None.
    """

    ids: Tensor
    mask: Tensor
    order: Tensor
    target: Tensor
    full_ids: Tensor
    full_mask: Tensor
    positions: Optional[Tensor]
    keep: Optional[int]

    @property
    def n_logits(self) -> int:
        """Positions the model returns logits for."""
        return self.keep if self.keep is not None else self.full_ids.shape[1]

    @property
    def n_in(self) -> int:
        return self.ids.shape[1]

    def model_args(self) -> Tuple[Tensor, ...]:
        """What :func:`causal_lm` takes after the ids."""
        return (self.full_mask,) if self.positions is None else (self.full_mask, self.positions)

    def left(self, x: Tensor) -> Tensor:
        """A ``(B, T_in, ...)`` tensor in the caller's order, permuted like the prompts."""
        return x.gather(1, self.order.reshape(self.order.shape + (1,) * (x.dim() - 2)).expand_as(x))

    def back(self, attr: Tensor) -> Tensor:
        """``(B, T_out, T_in)`` attributions in left-padded order, back in the caller's order."""
        return attr.gather(2, torch.argsort(self.order, dim=1)[:, None, :].expand_as(attr))


def prepare(input_ids: Tensor, attention_mask: Tensor, target_ids: Tensor, with_positions: bool,
            with_keep: bool) -> Prompts:
    order = torch.argsort(attention_mask.to(torch.int8), dim=1, stable=True)
    ids, mask = input_ids.gather(1, order), attention_mask.gather(1, order)
    full_ids = torch.cat([ids, target_ids], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(target_ids, dtype=mask.dtype)], dim=1)
    positions = positions_from(full_mask) if bool((mask == 0).any()) and with_positions else None
    keep = target_ids.shape[1] + 1 if with_keep else None
    return Prompts(ids, mask, order, target_ids, full_ids, full_mask, positions, keep)


def check_logits(logits: Tensor, n_rows: int, n_total: int, kept: bool = False) -> None:
    if logits.dim() != 3 or logits.shape[0] != n_rows or logits.shape[1] != n_total:
        where = (f"the last {n_total} positions (logits_to_keep={n_total})" if kept else
                 "one row per position of prompt + target")
        fail("model", f"a causal LM returning logits of shape ({n_rows}, {n_total}, V): {where}", logits,
             "token_attribution teacher-forces the target after the prompt and reads each output token's "
             "logits at the position before it.")


def step_values(logits: Tensor, target: Tensor, n_logits: int, kept: bool, step: Step, foil: Optional[Tensor]
                ) -> Tensor:
    """``(N, T_out)``: the step value of every output token, from the logits of the last ``n_logits``
    positions of prompt + target (all of them unless ``kept``)."""
    check_logits(logits, target.shape[0], n_logits, kept)
    scores = logits[:, n_logits - target.shape[1] - 1:n_logits - 1]
    if callable(step):
        got = step(scores, target)
        if not isinstance(got, Tensor) or got.shape != target.shape:
            fail("step", f"a callable returning one value per output token, shape {tuple(target.shape)}", got)
        return got
    if step == "logit":
        return scores.gather(-1, target[..., None])[..., 0]
    log_probs = torch.log_softmax(scores, dim=-1)
    chosen = log_probs.gather(-1, target[..., None])[..., 0]
    if step == "log_prob":
        return chosen
    if step == "prob":
        return chosen.exp()
    assert foil is not None  # checked at the boundary
    return chosen - log_probs.gather(-1, foil[..., None])[..., 0]


def check_vocabulary(vocab: int, **ids: Optional[Tensor]) -> None:
    """Every id below the vocabulary size (read once, after the first forward pass)."""
    for name, t in ids.items():
        if t is not None and t.numel() and int(t.max()) >= vocab:
            fail(name, f"token ids in [0, {vocab}) (the model's vocabulary: its logits have {vocab} entries)",
                 Shown(f"an id {int(t.max())}"))


def eos_ids(model: Any) -> Tuple[int, ...]:
    """End-of-sequence ids from ``model.config.eos_token_id`` (an int or a list), if any."""
    eos = getattr(getattr(model, "config", None), "eos_token_id", None)
    return () if eos is None else tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))


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
