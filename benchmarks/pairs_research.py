"""Benchmark pairs of the research path methods (hooked into :data:`benchmarks.pairs.PAIRS`).

* ``idgi``: fattr against the floor (Captum has no IDGI): one batched gradient pass over the left
  nodes, one forward pass over the partition, the projection.
* ``expected_gradients``: Captum's ``GradientShap`` with ``stdevs=0`` (the same estimator) and the
  floor, checked statistically like ``gradient_shap``.
* ``integrated_hessians``: fattr against the floor (double backward, ``is_grads_batched`` over the
  feature directions); only on ``mlp_tiny``: the full ``D x D`` matrix of a 784- or 3072-feature
  input is not what the method is for (use ``feature_mask``).

Guided IG and Blur IG are timed against PAIR's ``saliency`` in ``benchmarks/research.py`` (PAIR's
one-example-at-a-time interface does not fit a Pair), as are the metrics against ``captum.metrics``.
"""
from __future__ import annotations

from typing import List

import torch

from .cases import Case
from .pairs import TOKENS, Fn, Pair, Settings, _generator, _grad, _path, _selected

IH_STEPS = 16  # integrated Hessians: nodes per axis of the 2-D rule (IH_STEPS ** 2 points)
FULL_MATRIX = "the full D x D interaction matrix of this input is not what the method is for (use feature_mask)"


def _floor_idgi(c: Case, s: Settings) -> Fn:
    n = s.n_steps
    nodes = torch.arange(n, dtype=torch.float32, device=c.inputs.device) / n
    cuts = torch.arange(n + 1, dtype=torch.float32, device=c.inputs.device) / n

    def run(x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        g = _grad(c.model, _path(x, c.baselines, nodes), c.target.repeat(n)).reshape((n,) + tuple(x.shape))
        with torch.no_grad():
            out = c.model(_path(x, c.baselines, cuts)).gather(1, c.target.repeat(n + 1).reshape(-1, 1))
            change = out.reshape(n + 1, b).diff(dim=0)
            sq = g * g
            norm = sq.reshape(n, b, -1).sum(-1)
            scale = change / torch.where(norm > 0, norm, torch.ones_like(norm))
            return (sq * scale.reshape((n, b) + (1,) * (x.dim() - 1))).sum(0)
    return run


def _floor_expected_gradients(c: Case, s: Settings) -> Fn:
    def run(x: torch.Tensor) -> torch.Tensor:
        g = _generator(x, s.seed)
        k, n = s.n_samples, x.shape[0]
        starts = c.distribution[torch.randint(0, c.distribution.shape[0], (k, n), generator=g, device=x.device)]
        a = torch.rand((k, n) + (1,) * (x.dim() - 1), generator=g, device=x.device)
        rows = (starts + a * (x - starts)).reshape((k * n,) + tuple(x.shape[1:]))
        grads = _grad(c.model, rows, c.target.repeat(k)).reshape(starts.shape)
        return (grads * (x - starts)).mean(0)
    return run


def _floor_integrated_hessians(c: Case, s: Settings) -> Fn:
    x0 = c.inputs
    nodes, weights = (torch.tensor(v, dtype=torch.float32, device=x0.device)
                      for v in __import__("numpy").polynomial.legendre.leggauss(IH_STEPS))
    a, w = (nodes + 1) / 2, weights / 2
    t, wt = (a[:, None] * a[None, :]).reshape(-1), (w[:, None] * w[None, :]).reshape(-1)
    k = t.shape[0]

    def run(x: torch.Tensor) -> torch.Tensor:
        b, d = x.shape[0], x[0].numel()
        diff = (x - c.baselines).reshape(b, d)
        with torch.enable_grad():
            rows = _path(x, c.baselines, t).detach().requires_grad_(True)
            (g,) = torch.autograd.grad(_selected(c.model(rows), c.target.repeat(k)), rows, create_graph=True)
            tangents = torch.eye(d, device=x.device).reshape(d, 1, 1, d) * diff.reshape(1, 1, b, d)
            tangents = tangents.expand(d, k, b, d).reshape((d, k * b) + tuple(x.shape[1:]))
            if g.requires_grad:
                (hv,) = torch.autograd.grad(g, rows, tangents, is_grads_batched=True)
            else:  # piecewise-linear model: the Hessian is zero
                hv = torch.zeros_like(tangents)
        grad_sum = torch.tensordot(wt, g.detach().reshape(k, b, d), dims=1)
        hess = torch.tensordot(wt * t, hv.reshape(d, k, b, d), dims=([0], [1]))  # (d, b, d)
        return diff.unsqueeze(-1) * hess.permute(1, 2, 0) + torch.diag_embed(diff * grad_sum)
    return run


_NO_TOKENS = (("transformer", TOKENS),)

RESEARCH_PAIRS: List[Pair] = [
    Pair("idgi", "idgi", _floor_idgi, not_for=_NO_TOKENS),
    Pair("expected_gradients", "expected_gradients", _floor_expected_gradients, not_for=_NO_TOKENS, stochastic=True,
         statistical=True),
    Pair("integrated_hessians", "integrated_hessians", _floor_integrated_hessians,
         options=lambda c, s: {"n_steps": IH_STEPS},
         not_for=tuple((name, FULL_MATRIX) for name in ("mlp", "cnn", "resnet")) + _NO_TOKENS),
]
