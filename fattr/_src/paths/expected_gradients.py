"""Expected gradients (Erion et al., 2021): integrated gradients averaged over a reference distribution."""
from __future__ import annotations

from typing import Optional

import torch

from ..base import ArgsLike, BaselinesLike, InputsLike, KwargsLike, ModelLike, TargetLike, WithDelta
from ..gradient_shap import gradient_shap


def expected_gradients(f: ModelLike, inputs: InputsLike, baselines: BaselinesLike, n_samples: int = 50, *,
                       target: TargetLike = None, args: ArgsLike = (), kwargs: KwargsLike = None,
                       generator: Optional[torch.Generator] = None, return_delta: bool = False) -> WithDelta:
    """Expected gradients (Erion et al., 2021): the reference-distribution integrated gradients.

    ``attr_i = E_{b ~ D, a ~ U[0, 1]} [(x_i - b_i) * d f(b + a (x - b)) / d x_i]``, estimated with
    ``n_samples`` draws of a baseline row ``b`` (uniform over ``baselines``) and of ``a`` per
    example. Its expectation is the mean over the reference rows of their integrated gradients, so
    the attributions sum to ``f(x) - E_b f(b)`` in expectation. This is GradientSHAP without input
    noise (:func:`fattr.gradient_shap` with ``stdevs=0``): one batched forward and backward pass over
    all ``n_samples * B`` points, every draw from ``generator``.

    Args:
      f, inputs: as in :func:`fattr.integrated_gradients`.
      baselines: the reference distribution: rows ``(M, ...)`` (a tuple for tuple inputs) or a
        callable returning them from the inputs.
      n_samples: draws per example.
      target, args, kwargs: as in :func:`fattr.integrated_gradients`.
      generator: a ``torch.Generator``; the same seed gives the same attributions.
      return_delta: also return each (example, draw) pair's delta, shape ``(B * n_samples,)``.

    Returns:
      Attributions shaped like ``inputs``; with ``return_delta``, ``(attributions, delta)``.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Linear(3, 2)
      >>> x, references = torch.randn(4, 3), torch.randn(100, 3)
      >>> attr = fattr.expected_gradients(model, x, references, n_samples=16, target=0,
      ...                                 generator=torch.Generator().manual_seed(0))
      >>> attr.shape
      torch.Size([4, 3])

    References:
      Erion, Janizek, Sturmfels, Lundberg, Lee. "Improving performance of deep learning models with
      axiomatic attribution priors and expected gradients". Nature Machine Intelligence, 2021.
    """
    return gradient_shap(f, inputs, baselines, n_samples, 0.0, target=target, args=args, kwargs=kwargs,
                         generator=generator, multiply_by_inputs=True, return_delta=return_delta)
