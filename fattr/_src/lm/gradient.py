"""Gradient methods on the prompt's embeddings, every output token from one forward per point.

The model is split at its embedding layer (:class:`..layer.view.LayerFunction`): the head
gives the embedding of prompt + target, the tail runs the rest of the model from it. A path
point (or sample) varies the embedding at the prompt's token positions only; the target's
embeddings and the pads stay at their values (Captum's ``LLMGradientAttribution``: its layer
hook replaces the embedding of ``prompt + target[:i]`` and the baseline run keeps the target
tokens). Each point is one teacher-forced forward of the tail over the whole sequence, whose
``T_out`` step values are differentiated together (:func:`..cotangents.output_gradients`);
the gradients are contracted at once with the embedding difference and summed over the
embedding dimension, so memory holds one cotangent chunk of full gradients.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch
from torch import Tensor

from ..arguments import tile_args
from ..cotangents import output_gradients
from ..errors import fail
from ..layer import locking
from ..layer.resolve import resolve
from ..layer.view import LayerFunction
from ..quadrature import quadrature
from ..randomness import normal, uniform
from ..structure import fold
from .causal import Prompts, causal_lm

Select = Callable[[Tensor, Tensor], Tensor]  # (logits, target rows) -> (N, T_out)


class Embedded:
    """The split at the embedding layer, evaluated at the prompts (and at baseline prompts)."""

    def __init__(self, model: Any, layer: Any, prompts: Prompts) -> None:
        self.prompts = prompts
        with locking.reading():  # a module of the model (or its dotted name): the split below sees a function
            (layer,), _ = resolve(model, layer, "layer", allow_list=False)
        self.lf = LayerFunction(causal_lm(model, prompts.keep), layer, False, name="layer")
        (self.emb,), self.rest = self.lf.head((prompts.full_ids,), prompts.model_args())
        b, t = prompts.full_ids.shape
        if self.emb.dim() != 3 or self.emb.shape[1] != t:
            fail("layer", f"the input-embedding layer: output of shape ({b}, {t}, E), one vector per token",
                 self.emb, "Pass the module that maps token ids to embeddings (get_input_embeddings()).")
        self.f = self.lf.function()
        # 1 at the prompt's tokens (not its pads, not the target)
        where = torch.cat([prompts.mask, torch.zeros_like(prompts.target, dtype=prompts.mask.dtype)], dim=1)
        self.where = where.to(self.emb.dtype)[..., None]

    def baseline(self, baselines: Any) -> Tensor:
        """The embedding at the baseline: the baseline prompt's tokens, or zeros (``None``)."""
        if baselines is None:
            return self.emb * (1 - self.where)
        p = self.prompts
        ids = baselines if isinstance(baselines, Tensor) else torch.full_like(p.ids, int(baselines))
        full = torch.cat([torch.where(p.mask.bool(), ids, p.ids), p.target], dim=1)
        (emb,), _ = self.lf.head((full,), p.model_args())
        return emb

    def gradients(self, points: Tensor, k: int, select: Select, operands: Tuple[Tensor, ...],
                  contract: Callable[..., Tensor], cotangent_chunk: Optional[int]) -> Tuple[Tensor, Tensor]:
        """Step values ``(k*B, T_out)`` and ``contract(grads, *operands)`` ``(T_out, ...)`` at ``k`` points."""
        rest = tile_args(tuple(self.rest), self.emb.shape[0], k)
        target = self.prompts.target.repeat(k, 1)
        values, (reduced,) = output_gradients(
            self.f, (points,), lambda logits: select(logits, target), rest, cotangent_chunk=cotangent_chunk,
            reduce=lambda grads, cols, *ops: (contract(grads[0], *ops),), operands=operands)
        return values, reduced


def _prompt_part(per_position: Tensor, n_in: int) -> Tensor:
    """``(T_out, B, T) -> (B, T_out, T_in)``."""
    return per_position[..., :n_in].permute(1, 0, 2)


def _weighted(e: Embedded, points: Tensor, diff: Tensor, w: Tensor, select: Select,
              cotangent_chunk: Optional[int]) -> Tensor:
    """``sum_j w_j grad(points_j) . diff_j`` over the ``k = len(w)`` points of each prompt (``points`` and
    ``diff`` folded step-major), summed over the embedding dimension: ``(T_out, B, T)``."""
    k, b = w.shape[0], e.emb.shape[0]

    def contract(grads: Tensor, diff: Tensor, w: Tensor) -> Tensor:  # (m, k*B, T, E) -> (m, B, T)
        per = (grads * diff).sum(-1)
        return (per.reshape(per.shape[0], k, b, -1) * w[None, :, None, None]).sum(1)

    return e.gradients(points, k, select, (diff, w), contract, cotangent_chunk)[1]


def integrated_gradients(e: Embedded, baselines: Any, n_steps: int, method: Any, chunk_size: Optional[int],
                         select: Select, cotangent_chunk: Optional[int]) -> Tensor:
    emb = e.emb
    delta = (emb - e.baseline(baselines)) * e.where
    alphas, weights = quadrature(method, n_steps, dtype=emb.dtype, device=emb.device)
    step = chunk_size or n_steps
    total: Any = 0  # the sum of the chunks' parts
    for a, w in zip(torch.split(alphas, step), torch.split(weights, step)):
        points = fold(emb[None] - (1 - a)[:, None, None, None] * delta[None])
        total = total + _weighted(e, points, delta.repeat(a.shape[0], 1, 1), w, select, cotangent_chunk)
    return _prompt_part(total, e.prompts.n_in)


def gradient_x_activation(e: Embedded, select: Select, cotangent_chunk: Optional[int]) -> Tuple[Tensor, Tensor]:
    """``(attributions, step values at the prompts)``: the values come with the gradients' forward."""
    act = e.emb * e.where

    def contract(grads: Tensor, act: Tensor) -> Tensor:
        return (grads * act).sum(-1)

    values, attr = e.gradients(e.emb, 1, select, (act,), contract, cotangent_chunk)
    return _prompt_part(attr, e.prompts.n_in), values


def gradient_shap(e: Embedded, baselines: Any, n_samples: int, stdevs: float, chunk_size: Optional[int],
                  generator: torch.Generator, select: Select, cotangent_chunk: Optional[int]) -> Tensor:
    """Mean over samples of ``grad(base + alpha (x + noise - base)) . (x + noise - base)``; alphas
    ``U(0, 1)`` ``(n_samples, B)`` drawn first, then the noise ``N(0, stdevs^2)`` on the prompt's
    embeddings ``(n_samples, B, T, E)`` (Captum's GradientShap, in embedding space)."""
    emb = e.emb
    base = e.baseline(baselines) * e.where + emb * (1 - e.where)
    alphas = uniform(generator, (n_samples, emb.shape[0]), dtype=emb.dtype, device=emb.device)
    noise = (normal(generator, (n_samples,) + tuple(emb.shape), dtype=emb.dtype, device=emb.device) * stdevs
             if stdevs > 0 else torch.zeros((n_samples,) + tuple(emb.shape), dtype=emb.dtype, device=emb.device))
    step = chunk_size or n_samples
    total: Any = 0  # the sum of the chunks' parts
    for a, z in zip(torch.split(alphas, step), torch.split(noise, step)):
        ends = emb[None] + z * e.where[None]  # noisy inputs, (k, B, T, E)
        points = fold(base[None] + a[..., None, None] * (ends - base[None]))
        w = a.new_full((a.shape[0],), 1 / n_samples)  # the mean over the samples
        total = total + _weighted(e, points, fold(ends - base[None]), w, select, cotangent_chunk)
    return _prompt_part(total, e.prompts.n_in)
