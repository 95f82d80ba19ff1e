"""Integrated Hessians (Janizek et al., JMLR 2021): integrated gradients applied to integrated
gradients, giving pairwise feature interactions that sum to the IG attributions."""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch

from .. import structure
from ..arguments import boundary, tile_args
from ..base import ArgsLike, BaselinesLike, FeatureMaskLike, InputsLike, KwargsLike, ModelLike, TargetLike, WithDelta
from ..baselines import format_baselines
from ..calling import call
from ..compiled import marked
from ..errors import check_bool, check_optional_positive_int, fail
from ..perturbation.features import features_of
from ..path import accumulation_dtype
from ..quadrature import Method, quadrature
from ..targets import Target
from ..delta import delta_at
from ..twice import twice_differentiable


def _hessian_products(f: Callable[..., Any], rows: torch.Tensor, tangents: torch.Tensor, target: Target,
                      args: Tuple[Any, ...]) -> Tuple[torch.Tensor, torch.Tensor]:
    """The per-row gradient ``g`` of the selected output, and ``H v`` for each ``v`` in ``tangents`` (M, R, ...).

    Reverse over reverse (``vjp`` of ``grad``, vmapped over the tangents; the Hessian is symmetric):
    unlike ``jvp`` it keeps no process-global forward-AD state, so calls in threads stay independent.
    """
    n_rows = rows.shape[0]

    def total(r: torch.Tensor) -> torch.Tensor:
        return target.select(call(f, marked((r,)), args), n_rows).sum()

    with twice_differentiable():  # (second derivatives: attention as composite operations)
        g, pullback = torch.func.vjp(torch.func.grad(total), rows)[:2]
        (hv,) = torch.func.vmap(pullback)(tangents)
    return g, hv


def integrated_hessians(f: ModelLike, inputs: InputsLike, baselines: BaselinesLike = None, n_steps: int = 16,
                        method: Method = "gausslegendre", *, feature_mask: FeatureMaskLike = None,
                        target: TargetLike = None, args: ArgsLike = (), kwargs: KwargsLike = None,
                        chunk_size: Optional[int] = None, return_delta: bool = False) -> WithDelta:
    """Integrated Hessians (Janizek, Sturmfels & Lee, JMLR 2021): pairwise feature interactions.

    Integrated gradients of the integrated gradients: with ``d = x - b`` and ``H`` the Hessian of
    the selected output,::

        G_ij = d_i d_j  int_0^1 int_0^1 a c H_ij(b + a c d) da dc
               + [i == j] d_i int_0^1 int_0^1 df/dx_i(b + a c d) da dc

    ``sum_j G_ij`` is the IG attribution of feature ``i`` and ``sum_ij G_ij = f(x) - f(b)`` (up to
    quadrature error); ``G`` is symmetric. Both integrals use the tensor product of the 1-D rule
    ``method`` with itself (``n_steps ** 2`` points). Hessian-vector products come from
    ``torch.func`` (``vjp`` of ``grad``, vmapped over one direction per feature or group), for all
    points of all examples in one batched pass (``chunk_size`` points at a time).

    Args:
      f: callable ``f(x, *args)`` returning a tensor with examples along dim 0; twice differentiable
        (with ReLU networks the Hessian term vanishes almost everywhere: use a smooth activation).
      inputs: one tensor ``(B, *S)`` (tuples of inputs are not supported).
      baselines: as in :func:`fattr.integrated_gradients` (None: zeros).
      n_steps: nodes of the 1-D rule (>= 1).
      method: quadrature rule, as in :func:`fattr.integrated_gradients`.
      feature_mask: None (every element its own feature), or an integer tensor broadcastable to the
        input (batch 1 or B) giving each element a group id: interactions between the ``M``
        groups, in increasing id order (the same ids for every example).
      target, args, kwargs: as in :func:`fattr.integrated_gradients`.
      chunk_size: evaluate at most this many points (each a batch of B rows) at once.
      return_delta: also return ``sum(G) - (f(x) - f(b))`` per example.

    Returns:
      Interactions of shape ``(B, *S, *S)``, or ``(B, M, M)`` with a ``feature_mask``; with
      ``return_delta``, ``(interactions, delta)``.

    Example:
      >>> import torch, fattr
      >>> f = lambda x: x[:, 0] * x[:, 1] + x[:, 2]
      >>> x = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
      >>> gamma = fattr.integrated_hessians(f, x, n_steps=4)
      >>> gamma[0]               # x0 * x1 = 2: half main effects, half their interaction
      tensor([[0.5000, 0.5000, 0.0000],
              [0.5000, 0.5000, 0.0000],
              [0.0000, 0.0000, 3.0000]], dtype=torch.float64)
      >>> [round(v, 12) for v in gamma[0].sum(1).tolist()]  # rows sum to IG, the whole to f(x) - f(0)
      [1.0, 1.0, 3.0]

    References:
      Janizek, Sturmfels, Lee. "Explaining Explanations: Axiomatic Feature Interactions for Deep
      Networks". JMLR 22(104), 2021.
    """
    if isinstance(inputs, tuple):
        fail("inputs", "one tensor (integrated_hessians does not take tuples of inputs)", inputs, kind=TypeError)
    (x,), _, tgt, args = boundary(f, inputs, target, args, kwargs)
    check_bool("return_delta", return_delta)
    chunk_size = check_optional_positive_int("chunk_size", chunk_size)
    (base,) = format_baselines(baselines, (x,))
    n, device, shape = x.shape[0], x.device, tuple(x.shape[1:])
    a, w = quadrature(method, n_steps, device=device)
    t, wt = (a[:, None] * a[None, :]).reshape(-1), (w[:, None] * w[None, :]).reshape(-1)
    d = x - base
    acc = accumulation_dtype(x.dtype)
    n_feat = structure.example_size(x)
    if feature_mask is None:
        groups = torch.eye(n_feat, dtype=x.dtype, device=device).reshape((n_feat, 1) + shape)
    else:  # (M, 1 or B, *S): an indicator per group of the mask, in increasing id order
        features = features_of(feature_mask, (x,))
        (groups,) = features.selected(0, features.n)
        groups = groups.expand(groups.shape[:2] + shape).to(x.dtype)
    tangents = groups * d  # (M, B, *S): the direction d restricted to each feature or group
    m = tangents.shape[0]
    if n == 0:  # no examples: no interactions
        empty = x.new_zeros((0,) + (shape + shape if feature_mask is None else (m, m)))
        return (empty, torch.zeros(0, dtype=torch.float64, device=device)) if return_delta else empty

    grad_sum: Any = 0  # sums over the chunks
    hess_sum: Any = 0
    step = t.shape[0] if chunk_size is None else chunk_size
    for tk, wk in zip(torch.split(t, step), torch.split(wt, step)):
        k = tk.shape[0]
        rows = structure.fold(torch.addcmul(base, tk.to(x.dtype).reshape((-1,) + (1,) * x.dim()), d))
        tiled = tangents.unsqueeze(1).expand((m, k, n) + shape).reshape((m, k * n) + shape)
        g, hv = _hessian_products(f, rows, tiled, tgt.tile(k), tile_args(args, n, k))
        g = torch.tensordot(wk.to(device=device, dtype=acc), structure.unfold(g.to(acc), k), dims=1)
        hv = torch.tensordot((wk * tk).to(device=device, dtype=acc), hv.to(acc).reshape((m, k, n) + shape),
                             dims=([0], [1]))
        grad_sum, hess_sum = grad_sum + g, hess_sum + hv
    dd = d.to(acc).reshape(n, n_feat)
    main = (dd * grad_sum.reshape(n, n_feat))  # (B, D): d_i * int int df/dx_i
    pairs = dd.unsqueeze(-1) * hess_sum.reshape(m, n, n_feat).permute(1, 2, 0)  # (B, D, M): d_i (H v_m)_i
    if feature_mask is None:
        gamma = (pairs + torch.diag_embed(main)).reshape((n,) + shape + shape)
    else:
        member = groups.to(acc).reshape(m, -1, n_feat).expand(m, n, n_feat)  # (M, B, D)
        gamma = torch.einsum("gbi,bih->bgh", member, pairs) + torch.diag_embed(torch.einsum("gbi,bi->bg", member, main))
    gamma = gamma.to(x.dtype)
    return (gamma, delta_at(f, (x,), (base,), (gamma,), tgt, args)) if return_delta else gamma
