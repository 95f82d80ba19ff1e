"""Benchmark pairs of the perturbation family: fattr, Captum and (where short) the floor.

Every pair runs at the same ``perturbations_per_eval`` on the same features: image cases
use a 4x4 grid of spatial blocks shared by the channels (16 features; 2x2 = 4 for exact
Shapley values, which Captum computes from all ``n!`` orders), the MLPs contiguous groups
of their input.

The random methods are compared draw for draw: Captum's sampler is replaced by one that
replays what fattr draws from the same seeded generator (permutation orders for Shapley
value sampling, interpretable samples for LIME / KernelSHAP, shuffles for feature
permutation), so the check is exact and the timings cover the same work.

Floors (plain torch, no library): the perturbed copies are precomputed and evaluated in
``perturbations_per_eval`` chunks under ``torch.no_grad()``, then combined with one matrix
product: the cost of the model's forward passes and little else.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Tuple

import torch

from .cases import Case

if TYPE_CHECKING:  # benchmarks.pairs imports this module at its end: import from it only when called
    from .pairs import Fn, Pair, Settings

FEATURES_PER_SIDE = 4      # 4 x 4 = 16 features
SURROGATE_SAMPLES = 50     # LIME / KernelSHAP samples per example
# LIME: fattr's lasso is the exact minimiser (optimality conditions checked); Captum's scikit-learn Lasso stops
# at its tolerance (1e-4 duality gap, float32 data). Its objective was never below fattr's on the mlp case, and
# the coefficients differ by up to ~1% of the largest
LASSO_RTOL = 2e-2


def feature_mask(c: Case, per_side: int = FEATURES_PER_SIDE) -> torch.Tensor:
    """``per_side**2`` features: spatial blocks shared by the channels, or contiguous groups of a flat input."""
    x = c.inputs
    if x.dim() == 4:
        h, w = x.shape[-2:]
        rows = torch.arange(h, device=x.device) * per_side // h
        cols = torch.arange(w, device=x.device) * per_side // w
        grid = (rows.unsqueeze(1) * per_side + cols).reshape(1, 1, h, w)
        return grid.expand(1, x.shape[1], h, w).contiguous()  # Captum's Shapley classes view it
    d = x.shape[-1]
    return (torch.arange(d, device=x.device) * per_side ** 2 // d).reshape(1, d)


def _n_features(mask: torch.Tensor) -> int:
    return int(mask.max()) + 1


def _masked(mask: torch.Tensor) -> Dict[str, Any]:
    """The mask and its feature count: ``n_features`` (fattr only: Captum's classes do not take it) makes
    the number of model calls static, so the compiled rows are one graph."""
    return {"feature_mask": mask, "n_features": _n_features(mask)}


def _generator(c: Case, s: Settings) -> torch.Generator:
    return torch.Generator().manual_seed(s.seed)


def window(c: Case) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Occlusion: overlapping windows, a quarter of each spatial side, moved by an eighth (7 x 7 windows)."""
    shape = tuple(c.inputs.shape[1:])
    if len(shape) == 3:
        ch, h, w = shape
        return (ch, h // 4, w // 4), (ch, max(1, h // 8), max(1, w // 8))
    return (max(1, shape[0] // 4),), (max(1, shape[0] // 8),)


# ------------------------------------------------------------------ floors

def _select(out: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    return out.gather(1, target.repeat(k).reshape(-1, 1)).reshape(k, -1)


def _chunked(c: Case, s: Settings, masks: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
    """``f`` on the inputs with ``masks`` ``(P, 1, ...)`` (True: take ``bases``, ``(1, ...)`` or one per
    perturbation ``(P, B, ...)``) applied, ``ppe`` per call: ``(P, B)``."""
    x, outs = c.inputs, []
    for start in range(0, masks.shape[0], s.perturbations_per_eval):
        m = masks[start:start + s.perturbations_per_eval]
        b = bases.unsqueeze(0) if bases.dim() == x.dim() else bases[start:start + s.perturbations_per_eval]
        rows = torch.where(m, b, x.unsqueeze(0))
        rows = rows.expand((m.shape[0],) + tuple(x.shape)).reshape((-1,) + tuple(x.shape[1:]))
        outs.append(_select(c.model(rows), c.target, m.shape[0]))
    return torch.cat(outs)


def _feature_masks(mask: torch.Tensor) -> torch.Tensor:
    ids = torch.arange(_n_features(mask), device=mask.device)
    return mask.unsqueeze(0) == ids.reshape((-1,) + (1,) * mask.dim())  # (F, 1, ...)


def _floor_feature_ablation(c: Case, s: Settings) -> Fn:
    mask = feature_mask(c)
    masks = _feature_masks(mask)
    flat = masks.reshape(masks.shape[0], -1).to(c.inputs.dtype)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ref = c.model(x).gather(1, c.target.reshape(-1, 1)).reshape(-1)
            drops = ref.unsqueeze(0) - _chunked(c, s, masks, torch.zeros_like(x[:1]))
            return (drops.t() @ flat).reshape(x.shape)
    return run


def _boxes(c: Case) -> torch.Tensor:
    """Every occlusion window as a mask ``(P, 1, ...)``, dim 0 fastest."""
    win, step = window(c)
    dims = tuple(c.inputs.shape[1:])
    starts = [[k * st for k in range(-(-(d - w) // st) + 1)] for d, w, st in zip(dims, win, step)]  # cropped
    grids = torch.cartesian_prod(*[torch.tensor(v) for v in starts]).reshape(-1, len(dims))
    boxes = []
    for corner in grids.tolist():
        box = torch.zeros(dims, dtype=torch.bool)
        box[tuple(slice(a, a + w) for a, w in zip(corner, win))] = True
        boxes.append(box)
    return torch.stack(boxes).unsqueeze(1).to(c.inputs.device)


def _floor_occlusion(c: Case, s: Settings) -> Fn:
    masks = _boxes(c)
    flat = masks.reshape(masks.shape[0], -1).to(c.inputs.dtype)
    count = flat.sum(0)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ref = c.model(x).gather(1, c.target.reshape(-1, 1)).reshape(-1)
            drops = ref.unsqueeze(0) - _chunked(c, s, masks, torch.zeros_like(x[:1]))
            return ((drops.t() @ flat) / count).reshape(x.shape)
    return run


def _orders(c: Case, s: Settings, n_features: int) -> torch.Tensor:
    from fattr._src.perturbation.shapley import permutations
    return permutations(_generator(c, s), s.n_samples, n_features)


def _floor_shapley_sampling(c: Case, s: Settings) -> Fn:
    mask = feature_mask(c)
    n = _n_features(mask)
    orders = _orders(c, s, n)
    rank = orders.argsort(1)
    keep = (rank.unsqueeze(1) <= torch.arange(n - 1).reshape(1, -1, 1)).reshape(-1, n)  # (S * (n-1), n)
    ablate = (~keep)[:, mask.reshape(-1)].reshape((keep.shape[0], 1) + tuple(mask.shape[1:]))
    flat = _feature_masks(mask).reshape(n, -1).to(c.inputs.dtype)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            base = torch.zeros_like(x[:1])
            ref = c.model(x).gather(1, c.target.reshape(-1, 1)).reshape(-1)
            empty = c.model(base.expand_as(x)).gather(1, c.target.reshape(-1, 1)).reshape(-1)
            mid = _chunked(c, s, ablate, base).reshape(s.n_samples, n - 1, -1)
            chain = torch.cat([empty.expand(s.n_samples, 1, -1), mid, ref.expand(s.n_samples, 1, -1)], 1)
            gains = (chain[:, 1:] - chain[:, :-1]).permute(2, 0, 1).reshape(x.shape[0], -1)
            per = torch.zeros(x.shape[0], n, dtype=gains.dtype).index_add(1, orders.reshape(-1), gains) / s.n_samples
            return (per @ flat).reshape(x.shape)
    return run


# ------------------------------------------------------------------ Captum replaying fattr's draws

def _replay_orders(a: Any, c: Case, s: Settings) -> None:
    orders = _orders(c, s, _n_features(feature_mask(c))).tolist()
    a.permutation_generator = lambda n_features, n_samples: iter(orders)  # fattr's draws


def _replay(z: torch.Tensor) -> Callable[..., Any]:
    """A Captum perturb_func replaying fattr's samples ``(B, S, F)``, example after example."""
    state = {"example": 0}

    def samples(original_inp: Any, **kwargs: Any) -> Any:
        b = state["example"] % z.shape[0]
        state["example"] += 1
        for row in z[b]:
            yield row.long().reshape(1, -1)
    return samples


def _replay_samples(kernel: bool) -> Callable[[Any, Case, Settings], None]:
    def setup(a: Any, c: Case, s: Settings) -> None:
        from fattr._src.perturbation.lime import bernoulli_samples, kernel_shap_samples
        z = (kernel_shap_samples if kernel else bernoulli_samples)(_generator(c, s), c.inputs.shape[0],
                                                                      SURROGATE_SAMPLES, _n_features(feature_mask(c)))
        a.perturb_func = _replay(z)
    return setup


def _captum_feature_permutation(c: Case, s: Settings) -> Fn:
    from captum.attr import FeaturePermutation
    from fattr._src.perturbation.permutation import shuffles
    mask = feature_mask(c)
    perms = shuffles(_generator(c, s), _n_features(mask), c.inputs.shape[0])

    def run(x: torch.Tensor) -> Any:
        replay = iter(perms)

        def perm_func(t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            return torch.where(m, t[next(replay)], t)
        return FeaturePermutation(c.model, perm_func=perm_func).attribute(
            x, target=c.target, feature_mask=mask, perturbations_per_eval=s.perturbations_per_eval)
    return run


def _floor_feature_permutation(c: Case, s: Settings) -> Fn:
    from fattr._src.perturbation.permutation import shuffles
    mask = feature_mask(c)
    masks = _feature_masks(mask)
    perms = shuffles(_generator(c, s), masks.shape[0], c.inputs.shape[0])
    flat = masks.reshape(masks.shape[0], -1).to(c.inputs.dtype)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ref = c.model(x).gather(1, c.target.reshape(-1, 1)).reshape(-1)
            drops = ref.unsqueeze(0) - _chunked(c, s, masks, x[perms])
            return (drops.t() @ flat).reshape(x.shape)
    return run


# ------------------------------------------------------------------ layer feature permutation

def _layer_groups(c: Case) -> Tuple[torch.Tensor, int]:
    """The groups of the ``layer`` activation (``c.layer_mask``, or one per neuron), ``(1, ...)``, and their
    number: fattr numbers them in this order (sorted ids), so group ``i`` gets fattr's ``i``-th shuffle."""
    from .pairs import head_tail
    with torch.no_grad():
        shape = tuple(head_tail(c.model, c.layer)[0](c.inputs[:1]).shape[1:])
    size = int(torch.tensor(shape).prod())
    mask = (torch.arange(size, device=c.inputs.device).reshape((1,) + shape) if c.layer_mask is None
            else c.layer_mask.expand((1,) + shape))
    return mask, int(mask.max()) + 1


def _layer_shuffles(c: Case, s: Settings) -> torch.Tensor:
    from fattr._src.perturbation.permutation import shuffles
    return shuffles(_generator(c, s), _layer_groups(c)[1], c.inputs.shape[0])


def _layer_options(c: Case, s: Settings) -> Dict[str, Any]:
    if c.layer_mask is None:
        return {"layer_mask": None}
    return {"layer_mask": c.layer_mask, "n_features": int(c.layer_mask.max()) + 1}


def _captum_layer_feature_permutation(c: Case, s: Settings) -> Fn:
    """Captum's LayerFeaturePermutation replaying fattr's shuffles (its ``attributor`` given a ``perm_func``).
    Captum 0.9 selects ``target`` twice (it fails unless None): it gets the model with the target selected."""
    import functools

    from captum.attr import FeaturePermutation, LayerFeaturePermutation
    perms = _layer_shuffles(c, s)
    n = c.inputs.shape[0]

    def f(x: torch.Tensor) -> torch.Tensor:
        out = c.model(x)
        return out.gather(1, c.target.repeat(out.shape[0] // n).reshape(-1, 1)).reshape(-1)

    def run(x: torch.Tensor) -> Any:
        replay = iter(perms)

        def perm_func(t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            return torch.where(m, t[next(replay)], t)

        class Replaying(LayerFeaturePermutation):  # type: ignore[misc]
            @property
            def attributor(self) -> Any:
                return functools.partial(FeaturePermutation, perm_func=perm_func)
        return Replaying(f, c.module(c.layer)).attribute(x, layer_mask=c.layer_mask,
                                                         perturbations_per_eval=s.perturbations_per_eval)
    return run


def _floor_layer_feature_permutation(c: Case, s: Settings) -> Fn:
    """The head once, then the tail on ``perturbations_per_eval`` shuffled copies per call (no grad)."""
    from .pairs import head_tail
    head, tail = head_tail(c.model, c.layer)
    mask, n_groups = _layer_groups(c)
    perms = _layer_shuffles(c, s)

    def run(x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        with torch.no_grad():
            act = head(x)
            shape, ones = tuple(act.shape[1:]), (1,) * (act.dim() - 1)
            base = tail(act).gather(1, c.target.reshape(-1, 1)).reshape(n)
            attr = torch.zeros_like(act)
            for start in range(0, n_groups, s.perturbations_per_eval):
                gs = torch.arange(start, min(start + s.perturbations_per_eval, n_groups), device=x.device)
                hit = (mask == gs.reshape((-1,) + ones)).unsqueeze(1)  # (k, 1, ...)
                rows = torch.where(hit, act[perms[gs]], act.unsqueeze(0)).reshape((-1,) + shape)
                out = tail(rows).gather(1, c.target.repeat(len(gs)).reshape(-1, 1)).reshape(len(gs), n)
                attr = attr + ((base.unsqueeze(0) - out).reshape((len(gs), n) + ones) * hit).sum(0)
        return attr
    return run


def perturbation_pairs() -> List[Pair]:
    from .pairs import TOKENS, Pair
    no_tokens = (("transformer", TOKENS),)
    mask = lambda c, s: _masked(feature_mask(c))  # noqa: E731
    surrogate = lambda c, s: dict(_masked(feature_mask(c)), n_samples=SURROGATE_SAMPLES)  # noqa: E731
    return [
        Pair("feature_ablation", "feature_ablation", _floor_feature_ablation, options=mask, not_for=no_tokens),
        Pair("occlusion", "occlusion", _floor_occlusion, not_for=no_tokens, options=lambda c, s: {
            "sliding_window_shapes": window(c)[0], "strides": window(c)[1], "baselines": 0.0}),
        Pair("shapley_value_sampling", "shapley_value_sampling", _floor_shapley_sampling, options=mask,
             captum_setup=_replay_orders, cpu_generator=True, not_for=no_tokens),
        Pair("shapley_values", "shapley_values", options=lambda c, s: _masked(feature_mask(c, 2)),
             not_for=no_tokens),
        Pair("lime", "lime", options=surrogate, captum_setup=_replay_samples(False), cpu_generator=True, not_for=no_tokens,
             rtol=LASSO_RTOL),
        Pair("kernel_shap", "kernel_shap", options=surrogate, captum_setup=_replay_samples(True), cpu_generator=True,
             not_for=no_tokens),
        Pair("feature_permutation", "feature_permutation", _floor_feature_permutation, options=mask,
             captum=_captum_feature_permutation, cpu_generator=True,
             not_for=no_tokens + (("mlp_tiny", "one example: nothing to shuffle across"),)),
        Pair("layer_feature_permutation", "layer_feature_permutation", _floor_layer_feature_permutation,
             options=_layer_options, captum=_captum_layer_feature_permutation, cpu_generator=True,
             not_for=(("mlp_tiny", "one example: nothing to shuffle across"),
                      ("transformer", "not built: the Captum builder here wraps a model of one float input"))),
    ]
