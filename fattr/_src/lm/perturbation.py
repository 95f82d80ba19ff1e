"""Perturbation methods over prompt tokens: every ablation batched, every output token at once.

A feature is a prompt token (or a group of them, ``feature_mask``); ablating it replaces its
tokens by the baseline ids. Each perturbed prompt is one teacher-forced forward over
prompt + target that gives all ``T_out`` step values; perturbed copies are folded into the
batch, ``perturbations_per_eval`` copies of the batch per call of the model.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from ..structure import fold

Values = Callable[[Tensor], Tensor]  # prompts (k*B, T_in) -> step values (k*B, T_out)


def _batched(values: Values, prompts: Tensor, per_eval: Optional[int]) -> Tensor:
    """``(K, B, T_in) -> (K, B, T_out)``, ``per_eval`` copies of the batch per call."""
    k = prompts.shape[0]
    step = per_eval or k
    return torch.cat([values(fold(prompts[s:s + step])) for s in range(0, k, step)]).reshape(k, prompts.shape[1], -1)


def to_tokens(per_feature: Tensor, groups: Tensor) -> Tensor:
    """``(B, T_out, F)`` feature attributions -> ``(B, T_out, T_in)``; 0 where ``groups`` is -1 (pads)."""
    out = per_feature.gather(2, groups.clamp(min=0)[:, None, :].expand(-1, per_feature.shape[1], -1))
    return out * (groups >= 0)[:, None, :].to(out.dtype)


def feature_ablation(values: Values, original: Tensor, ids: Tensor, base: Tensor, groups: Tensor, n_features: int,
                     per_eval: Optional[int]) -> Tensor:
    """``f(x) - f(x with feature j at the baseline)`` for every feature j: ``(B, T_out, T_in)``; ``original``
    is ``f(x)`` ``(B, T_out)``."""
    feats = torch.arange(n_features, device=ids.device)
    prompts = torch.where(groups[None] == feats[:, None, None], base[None], ids[None])  # (F, B, T_in)
    ablated = _batched(values, prompts, per_eval)  # (F, B, T_out)
    return to_tokens((original[None] - ablated).permute(1, 2, 0), groups)


def shapley_value_sampling(values: Values, ids: Tensor, base: Tensor, groups: Tensor, n_features: int,
                           n_samples: int, per_eval: Optional[int], generator: torch.Generator) -> Tensor:
    """Shapley values by sampling ``n_samples`` feature orders (one ``torch.randperm`` per sample from
    ``generator``, shared by the batch): from the all-baseline prompt, features are restored one by
    one in that order, and each is credited with the change it makes; averaged over the orders."""
    perms = torch.stack([torch.randperm(n_features, generator=generator, device=generator.device)
                         for _ in range(n_samples)]).to(ids.device)  # (S, F)
    ranks = torch.argsort(perms, dim=1)  # rank of each feature in its order
    k = torch.arange(n_features + 1, device=ids.device)
    present = ranks[:, None, :] < k[None, :, None]  # (S, F+1, F): state k has the first k features
    keep = present[:, :, groups.clamp(min=0)] | (groups < 0)[None, None]  # (S, F+1, B, T_in)
    prompts = torch.where(keep, ids[None, None], base[None, None])
    states = _batched(values, prompts.reshape((-1,) + tuple(ids.shape)), per_eval)
    states = states.reshape(n_samples, n_features + 1, ids.shape[0], -1)  # (S, F+1, B, T_out)
    gains = states[:, 1:] - states[:, :-1]  # (S, F, B, T_out): gain of the feature at each rank
    per_feature = torch.zeros_like(gains[0]).index_add(0, perms.reshape(-1), gains.flatten(0, 1))  # in sample order
    return to_tokens((per_feature / n_samples).permute(1, 2, 0), groups)
