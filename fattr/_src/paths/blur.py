"""Blur Integrated Gradients (Xu et al., CVPR 2020): the path from a blurred image to the image.

The Gaussian blur is scipy's (``scipy.ndimage.gaussian_filter``, zero padding, the kernel
truncated at ``int(4 sigma + 0.5)`` and normalised over its taps), written as one ``(L, L)`` matrix
per sigma and spatial axis so that all the path's images come from two batched products.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch

from .. import structure
from ..arguments import boundary
from ..base import ArgsLike, InputsLike, KwargsLike, ModelLike, TargetLike, Tensors, WithDelta
from ..delta import delta_at
from ..errors import check_bool, check_choice, check_number, check_optional_positive_int, check_positive_int, fail
from ..path import weighted_gradient_sum

TRUNCATE = 4.0  # scipy's default: taps up to int(4 sigma + 0.5) from the centre


def radius(sigma: float) -> int:
    """scipy's kernel radius for ``sigma`` (0 for no blur)."""
    return int(TRUNCATE * sigma + 0.5) if sigma > 0 else 0


def blur_matrices(sigmas: List[float], size: int, *, fixed_radius: Optional[int] = None,
                  dtype: torch.dtype = torch.float64,
                  device: Optional[torch.device] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(M, dM/dsigma)``, each ``(S, size, size)``: ``M[s] @ v`` blurs ``v`` along one axis like
    ``scipy.ndimage.gaussian_filter1d(v, sigmas[s], mode="constant")`` (sigma 0: the identity).

    scipy's radius is a step function of sigma: where it grows, the blur jumps (by the new taps'
    weight, about ``exp(-8)`` of a tap). With ``fixed_radius`` every sigma uses that radius
    instead, and the blur is smooth in sigma; ``dM/dsigma`` is the kernel's analytic derivative
    at the radius used.
    """
    radii = [radius(s) if fixed_radius is None or s == 0 else fixed_radius for s in sigmas]
    reach = max(radii)
    sig = torch.tensor([s if s > 0 else 1.0 for s in sigmas], dtype=torch.float64)[:, None]
    taps = torch.arange(-reach, reach + 1, dtype=torch.float64)[None, :]
    inside = taps.abs() <= torch.tensor(radii, dtype=torch.float64)[:, None]
    phi = torch.where(inside, torch.exp(-0.5 / (sig * sig) * taps ** 2), torch.zeros(()))  # scipy's order of ops
    dphi = phi * taps ** 2 / sig ** 3
    norm, dnorm = phi.sum(1, keepdim=True), dphi.sum(1, keepdim=True)
    kernel = phi / norm
    dkernel = dphi / norm - kernel * dnorm / norm
    pos = torch.arange(size)
    offset = (pos[None, :] - pos[:, None]).clamp(-reach, reach) + reach  # column q minus row p
    valid = (pos[None, :] - pos[:, None]).abs() <= reach
    m = torch.where(valid, kernel[:, offset], torch.zeros(()))
    dm = torch.where(valid, dkernel[:, offset], torch.zeros(()))
    return m.to(dtype=dtype, device=device), dm.to(dtype=dtype, device=device)


def _blur(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``(S, H, H), (B, ..., H, W), (S, W, W) -> (S, B, ..., H, W)``: every sigma's blur of ``x``."""
    return torch.einsum("shp,...pq,swq->s...hw", rows, x, cols)


def blur_integrated_gradients(f: ModelLike, inputs: InputsLike, *, max_sigma: float = 50, n_steps: int = 100,
                              grad_step: float = 0.01, sqrt: bool = False, velocity: str = "difference",
                              target: TargetLike = None, args: ArgsLike = (), kwargs: KwargsLike = None,
                              chunk_size: Optional[int] = None, return_delta: bool = False) -> WithDelta:
    """Blur Integrated Gradients (Xu et al., CVPR 2020), PAIR ``saliency``'s definition.

    The path runs through Gaussian blurs ``x(s)`` of the image over its last two (spatial) axes,
    from ``x(max_sigma)`` to ``x(0) = x``. With ``s_k = k * max_sigma / n_steps`` (``sqrt=True``:
    ``sqrt(k * max_sigma / n_steps)``), the attribution is the left Riemann sum from ``s = 0``::

        attr = - sum_{k < n_steps} (s_{k+1} - s_k) * grad f(x(s_k)) * dx/ds(s_k)

    with ``dx/ds`` by PAIR's forward difference ``(x(s + grad_step) - x(s)) / grad_step``
    (``velocity="difference"``, the default; PAIR and fattr then agree to rounding), or the
    exact derivative of the blur (``velocity="exact"``), with which the attributions sum to
    ``f(x) - f(x(max_sigma))`` up to quadrature error. (scipy's kernel radius grows in steps
    with sigma, so its blur jumps a little there; the exact path keeps ``max_sigma``'s radius
    for every sigma, a blur that differs from scipy's by less than ``exp(-8)`` of a tap and is
    smooth in sigma.) All ``n_steps`` images of all examples
    go through one batched forward and backward pass (``chunk_size`` steps at a time).

    Args:
      f, target, args, kwargs: as in :func:`fattr.integrated_gradients`.
      inputs: images ``(B, C, H, W)`` (any tensor with at least 3 dims: the last two are blurred),
        or a tuple of them (each blurred with the same sigma).
      max_sigma: the largest blur (the path's start), in pixels.
      n_steps: number of Riemann steps.
      grad_step: the sigma step of the forward difference (``velocity="difference"``).
      sqrt: space the sigmas as square roots (PAIR's option).
      velocity: ``"difference"`` (PAIR) or ``"exact"``.
      chunk_size: evaluate at most this many steps (each a batch of B images) at once.
      return_delta: also return ``sum(attr) - (f(x) - f(x(max_sigma)))`` per example.

    Returns:
      Attributions shaped like ``inputs``; with ``return_delta``, ``(attributions, delta)``.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Tanh(), torch.nn.Flatten(),
      ...                             torch.nn.Linear(4 * 6 * 6, 3)).double()
      >>> img = torch.randn(2, 1, 8, 8, dtype=torch.float64)
      >>> attr, delta = fattr.blur_integrated_gradients(model, img, max_sigma=4, n_steps=200, target=0,
      ...                                               velocity="exact", return_delta=True)
      >>> attr.shape, bool(delta.abs().max() < 1e-2)
      (torch.Size([2, 1, 8, 8]), True)

    References:
      Xu, Venugopalan, Sundararajan. "Attribution in Scale and Space". CVPR 2020.
    """
    xs, was_tuple, tgt, args = boundary(f, inputs, target, args, kwargs)
    check_bool("return_delta", return_delta)
    for i, x in enumerate(xs):
        if x.dim() < 3:
            fail(f"inputs[{i}]" if was_tuple else "inputs", "images (B, C, H, W): at least 3 dims, the last two "
                 "spatial", x)
    max_sigma = check_number("max_sigma", max_sigma, "a positive number", lambda v: v <= 0)
    grad_step = check_number("grad_step", grad_step, "a positive number", lambda v: v <= 0)
    n_steps = check_positive_int("n_steps", n_steps)
    check_bool("sqrt", sqrt)
    velocity = check_choice("velocity", velocity, ("difference", "exact"))
    chunk_size = check_optional_positive_int("chunk_size", chunk_size)
    n, device = xs[0].shape[0], xs[0].device
    if n == 0:  # checked like any batch, then nothing to compute
        return structure.empty_result(xs, was_tuple, return_delta)
    sigmas = [float(i) * max_sigma / float(n_steps) for i in range(n_steps + 1)]
    sigmas = [math.sqrt(s) for s in sigmas] if sqrt else sigmas
    nodes = sigmas[:n_steps]
    weights = torch.tensor([-(sigmas[i + 1] - sigmas[i]) for i in range(n_steps)], dtype=torch.float64)
    fixed = radius(max_sigma) if velocity == "exact" else None
    mats = {}
    for size in {d for x in xs for d in x.shape[-2:]}:
        m, dm = blur_matrices(nodes, size, fixed_radius=fixed, device=device)  # dm, or the blur a step ahead:
        mats[size] = (m, dm if velocity == "exact" else blur_matrices([s + grad_step for s in nodes], size,
                                                                        device=device)[0])

    def points(k: slice, images: Tensors) -> Tuple[Tensors, Tensors]:
        pts, vel = [], []
        for x in images:
            (rows, rows2), (cols, cols2) = mats[x.shape[-2]], mats[x.shape[-1]]
            rows, rows2, cols, cols2 = (t[k].to(x.dtype) for t in (rows, rows2, cols, cols2))
            pts.append(_blur(x, rows, cols))
            vel.append((_blur(x, rows2, cols2) - pts[-1]) / grad_step if velocity == "difference" else
                       _blur(x, rows2, cols) + _blur(x, rows, cols2))
        return tuple(map(structure.fold, pts)), tuple(map(structure.fold, vel))

    attr = weighted_gradient_sum(f, points, xs, n_steps, weights, target=tgt, args=args, n_examples=n,
                                 chunk_size=chunk_size)
    attr = tuple(a.to(x.dtype) for a, x in zip(attr, xs))
    result = structure.restore(attr, was_tuple)
    if not return_delta:
        return result
    start = tuple(_blur(x, *(blur_matrices([sigmas[-1]], size, fixed_radius=fixed, device=device)[0].to(x.dtype)
                             for size in x.shape[-2:]))[0] for x in xs)  # the path's first images
    return result, delta_at(f, xs, start, attr, tgt, args)
