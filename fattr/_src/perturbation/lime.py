"""LIME and KernelSHAP: a weighted linear surrogate of ``f`` on random coalitions of features (as the
docstrings of :func:`lime` and :func:`kernel_shap` define it), fitted for all examples in one batched solve
(:mod:`.linear`)."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from .. import randomness, structure
from ..base import (ArgsLike, Attributions, BaselinesLike, FeatureMaskLike, InputsLike, KwargsLike, ModelLike, Result,
                    TargetLike)
from ..baselines import format_baselines
from ..errors import Shown, check_bool, check_callable, check_positive_int, fail
from ..structure import Tensors, flat
from .evaluate import Evaluator, differentiable, in_chunks, prepare, reference, replace
from .features import features_of
from .linear import lasso, weighted_least_squares
from .progress import Progress

LASSO_ALPHA = 0.01          # Captum's default surrogate: SkLearnLasso(alpha=0.01)
KERNEL_WIDTH = 1.0          # Captum's default similarity: exp kernel on the cosine distance
KERNEL_SHAP_INF_WEIGHT = 1e6  # Captum's weight of the empty and the full coalition


def bernoulli_samples(generator: torch.Generator, n_rows: int, n_samples: int, n_features: int) -> torch.Tensor:
    """LIME's default samples: every feature kept with probability 1/2, ``(n_rows, n_samples, n_features)``."""
    return randomness.uniform(generator, (n_rows, n_samples, n_features), dtype=torch.float64,
                              device=generator.device) < 0.5


def kernel_shap_samples(generator: torch.Generator, n_rows: int, n_samples: int, n_features: int) -> torch.Tensor:
    """KernelSHAP's samples (Captum's order): all features, none, then coalitions whose size ``k`` is drawn
    with probability proportional to ``(n - 1) / (k (n - k))``, ``k`` features chosen uniformly."""
    first = torch.ones((n_rows, 1, n_features), dtype=torch.bool)
    ends = torch.cat([first, ~first], dim=1)[:, :n_samples]
    m = n_samples - ends.shape[1]
    if m <= 0:
        return ends
    k = torch.arange(n_features, dtype=torch.float64)
    probs = (n_features - 1) / (k * (n_features - k))
    probs[0] = 0.0
    if n_features > 1:
        sizes = torch.multinomial(probs.expand(n_rows, -1), m, replacement=True, generator=generator)
    else:
        sizes = torch.zeros((n_rows, m), dtype=torch.long)
    scores = randomness.uniform(generator, (n_rows, m, n_features), dtype=torch.float64, device=generator.device)
    return torch.cat([ends, scores.argsort(-1).argsort(-1) < sizes.unsqueeze(2)], dim=1)


def _example(xs: Tensors, b: int, was_tuple: bool) -> Any:
    return structure.restore(tuple(x[b:b + 1] for x in xs), was_tuple)


def _user_samples(perturb_func: Callable[..., Any], xs: Tensors, n_features: int, rows: int, n_samples: int,
                  was_tuple: bool, extra: Dict[str, Any]) -> torch.Tensor:
    """Samples from a Captum-style ``perturb_func(original_inp, **extra) -> (1, n_features)`` (or a generator
    function of such samples), called per example and sample as in Captum."""
    out = []
    for b in range(rows):
        original = _example(xs, b, was_tuple) if rows == xs[0].shape[0] else structure.restore(xs, was_tuple)
        it = perturb_func(original, **extra) if inspect.isgeneratorfunction(perturb_func) else None
        draws = [perturb_func(original, **extra) if it is None else next(it) for _ in range(n_samples)]
        for d in draws:
            if not isinstance(d, torch.Tensor) or d.numel() != n_features:
                fail("perturb_func", f"to return a binary tensor of {n_features} interpretable features", d)
        out.append(torch.stack([d.reshape(-1).to(device="cpu") != 0 for d in draws]))
    return torch.stack(out)


def _cosine_similarity(xs: Tensors, rows: Tensors, aggregate: bool) -> torch.Tensor:
    """``exp(-d^2 / (2 width^2))`` of the cosine distance between each perturbed copy and the input
    (inputs flattened and concatenated per example; the whole batch in aggregate mode): ``(p, R)``."""
    lead = 0 if aggregate else 1
    original = torch.cat([flat(x, lead) for x in xs], dim=-1).unsqueeze(0)
    perturbed = torch.cat([flat(r, lead + 1) for r in rows], dim=-1)
    distance = 1 - torch.nn.functional.cosine_similarity(original, perturbed, dim=-1)  # (p,), or (p, B)
    similarity = torch.exp(-(distance ** 2) / (2 * KERNEL_WIDTH ** 2))
    return similarity.unsqueeze(1) if aggregate else similarity


def _user_similarity(similarity_func: Callable[..., Any], xs: Tensors, rows: Tensors, z: torch.Tensor,
                     extra: Dict[str, Any], was_tuple: bool, aggregate: bool) -> torch.Tensor:
    """Captum's ``similarity_func(original_inp, perturbed_inp, interpretable_sample, **kwargs)`` per example
    and sample: ``(p, R)``. ``z``: ``(p, R, n_features)``."""
    p, r = z.shape[:2]
    out = torch.empty((p, r), dtype=torch.float64)
    for i in range(p):
        for b in range(r):
            original = structure.restore(xs, was_tuple) if aggregate else _example(xs, b, was_tuple)
            perturbed = (structure.restore(tuple(t[i] for t in rows), was_tuple) if aggregate else
                         structure.restore(tuple(t[i, b:b + 1] for t in rows), was_tuple))
            value = similarity_func(original, perturbed, z[i, b].reshape(1, -1).long(), **extra)
            out[i, b] = float(value.reshape(-1)[0]) if isinstance(value, torch.Tensor) else float(value)
    return out


def _fit_user_model(model: Any, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A Captum ``Model`` (``fit(DataLoader)``, ``representation()``) or a scikit-learn-style estimator
    (``fit(X, y, sample_weight)``, ``coef_``), fitted per example: coefficients ``(R, n_features)``."""
    coefs = []
    for b in range(x.shape[0]):
        if hasattr(model, "representation"):
            from torch.utils.data import DataLoader, TensorDataset
            data = TensorDataset(x[b].detach().float(), y[b].detach().float(), w[b].detach().float())
            model.fit(DataLoader(data, batch_size=x.shape[1]))
            coef = torch.as_tensor(model.representation())
        else:
            model.fit(x[b].detach().cpu().numpy(), y[b].detach().cpu().numpy(),
                      sample_weight=w[b].detach().cpu().numpy())
            coef = torch.as_tensor(np.asarray(model.coef_))
        coefs.append(coef.detach().reshape(-1).to(device=y.device, dtype=y.dtype))
    return torch.stack(coefs)


def _surrogate(name: str, f: Callable[..., Any], inputs: Any, baselines: Any, target: Any, args: Any, kwargs: Any,
               feature_mask: Any, n_features: Any, n_samples: int, perturbations_per_eval: int,
               return_input_shape: bool, interpretable_model: Any, similarity_func: Any, perturb_func: Any,
               generator: Any, show_progress: bool, kernel_shap: bool) -> Attributions:
    xs, was_tuple, ppe, args, tgt = prepare(inputs, target, args, kwargs, perturbations_per_eval, show_progress)
    s = check_positive_int("n_samples", n_samples)
    check_bool("return_input_shape", return_input_shape)
    for label, fn in (("similarity_func", similarity_func), ("perturb_func", perturb_func)):
        check_callable(label, fn, optional=True)
    if interpretable_model is not None and not hasattr(interpretable_model, "fit"):
        fail("interpretable_model", "None, a Captum Model (fit, representation) or an estimator with "
             "fit(X, y, sample_weight) and coef_", interpretable_model, kind=TypeError)
    n = xs[0].shape[0]
    bases = format_baselines(baselines, xs)
    features = features_of(feature_mask, xs, contiguous=True, n_features=n_features)
    with torch.no_grad():  # Captum's test call: one value per example, or one for the whole batch?
        aggregate = reference(f, xs, tgt, args)[1]
    rows = 1 if aggregate else n
    g = randomness.resolve(generator)
    extra = dict(baselines=structure.restore(bases, was_tuple), feature_mask=structure.restore(features.index,
                 was_tuple), num_interp_features=features.n)
    if perturb_func is not None:
        z = _user_samples(perturb_func, xs, features.n, rows, s, was_tuple, dict(extra, generator=g))
    else:
        z = randomness.drawn(kernel_shap_samples if kernel_shap else bernoulli_samples, g, rows, s, features.n)
    z = z.to(xs[0].device).transpose(0, 1)  # (samples, R, features)

    def compute(xs_: Tensors, bases_: Tensors, evaluate: Evaluator, ref: torch.Tensor) -> Tensors:
        weights: List[torch.Tensor] = []

        def perturbed(start: int, stop: int) -> Tensors:
            zs = z[start:stop]
            out = replace(xs_, bases_, [~k for k in features.kept(zs if not aggregate else zs[:, 0])])
            if kernel_shap:
                size = zs.sum(2)
                weights.append(torch.where((size == 0) | (size == features.n), KERNEL_SHAP_INF_WEIGHT, 1.0))
            elif similarity_func is None:
                weights.append(_cosine_similarity(xs_, out, aggregate))
            else:
                weights.append(_user_similarity(similarity_func, xs_, out, zs, extra, was_tuple, aggregate))
            return out

        with Progress(-(-s // ppe), name, show_progress) as progress:
            y = in_chunks(evaluate, perturbed, s, ppe, progress).to(ref.device)  # (samples, R)
        dtype = y.dtype if y.dtype.is_floating_point else torch.get_default_dtype()
        if aggregate and y.shape[1] != 1:
            fail("f", "one value for the whole batch (a surrogate model fits one output)",
                 Shown(f"{y.shape[1]} values"))
        x_design = z.permute(1, 0, 2).to(dtype)  # (R, samples, features)
        w = torch.cat(weights).to(device=y.device, dtype=dtype).t()
        y = y.t().to(dtype)
        if interpretable_model is not None:
            coef = _fit_user_model(interpretable_model, x_design, y, w)
        elif kernel_shap:
            coef = weighted_least_squares(x_design, y, w)
        else:
            coef = lasso(x_design, y, w, LASSO_ALPHA)
        return features.scatter(coef, xs_) if return_input_shape else (coef,)

    out = differentiable(compute, f, xs, bases, tgt, args, ppe)
    return out[0] if not return_input_shape else structure.restore(out, was_tuple)


def lime(f: ModelLike, inputs: InputsLike, baselines: BaselinesLike = None, *, target: TargetLike = None,
         args: ArgsLike = (), kwargs: KwargsLike = None, feature_mask: FeatureMaskLike = None,
         n_features: Optional[int] = None, n_samples: int = 25, perturbations_per_eval: int = 1,
         return_input_shape: bool = True, interpretable_model: Optional[Any] = None,
         similarity_func: Optional[Callable[..., Any]] = None, perturb_func: Optional[Callable[..., Any]] = None,
         generator: Optional[torch.Generator] = None, show_progress: bool = False) -> Result:
    """LIME (Captum's ``Lime``): the coefficients of a weighted linear surrogate of ``f`` around each example.

    For each example, ``n_samples`` binary samples ``z`` over the interpretable features
    (default: each kept with probability 1/2) give perturbed inputs
    ``x_z = z * x + (1 - z) * baseline`` (per feature), weighted by their similarity to ``x``
    (default: ``exp(-d^2 / 2)`` with ``d`` the cosine distance of the flattened inputs); the
    surrogate minimises ``sum_k w_k (f(x_{z_k})[target] - c - z_k . beta)^2 / (2 sum_k w_k) + 0.01 |beta|_1``
    (Captum's default ``SkLearnLasso(alpha=0.01)``). The perturbed copies of all examples are
    evaluated together, ``perturbations_per_eval`` copies of the batch per call, and the lasso
    fits of all examples are one batched solve.

    Args:
      f: as in :func:`fattr.feature_ablation` (one value for the whole batch: one surrogate, attributions
        with a batch dim of 1, ``perturbations_per_eval=1``).
      inputs, baselines, target, args, kwargs, perturbations_per_eval, show_progress: as in
        :func:`fattr.feature_ablation`.
      feature_mask: interpretable features: integer ids broadcastable to each input (every id from
        the smallest to the largest is a feature, as in Captum). None: every element.
      n_features: as in :func:`fattr.feature_ablation`: the interpretable features are then the ids
        ``0 .. n_features - 1`` (the default's when all are present); an id without elements is a
        column of the samples and of the fit that changes nothing, drawn and fitted all the same.
      n_samples: samples per example.
      return_input_shape: attributions shaped like the inputs (else ``(B, n_features)`` coefficients).
      interpretable_model: None (the batched lasso), a Captum ``Model`` (``fit(DataLoader)``,
        ``representation()``) or a scikit-learn-style estimator (``fit(X, y, sample_weight)``,
        ``coef_``), fitted per example on detached data.
      similarity_func: Captum's ``similarity_func(original_inp, perturbed_inp, interpretable_sample,
        **kwargs)``, called per example and sample (kwargs: ``baselines``, ``feature_mask``,
        ``num_interp_features``).
      perturb_func: Captum's ``perturb_func(original_inp, **kwargs) -> (1, n_features)`` binary
        samples (or a generator function of them), called per example; kwargs also hold ``generator``.
      generator: the ``torch.Generator`` the default samples are drawn from.

    Returns:
      The coefficients, given to every element of their feature (shaped like the inputs), or
      ``(B, n_features)`` with ``return_input_shape=False``.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
      >>> x = torch.randn(5, 4)
      >>> fattr.lime(model, x, target=0, n_samples=50, perturbations_per_eval=10,
      ...            generator=torch.Generator().manual_seed(0)).shape
      torch.Size([5, 4])
    """
    return _surrogate("lime", f, inputs, baselines, target, args, kwargs, feature_mask, n_features, n_samples,
                      perturbations_per_eval, return_input_shape, interpretable_model, similarity_func,
                      perturb_func, generator, show_progress, kernel_shap=False)


def kernel_shap(f: ModelLike, inputs: InputsLike, baselines: BaselinesLike = None, *, target: TargetLike = None,
                args: ArgsLike = (), kwargs: KwargsLike = None, feature_mask: FeatureMaskLike = None,
                n_features: Optional[int] = None, n_samples: int = 25, perturbations_per_eval: int = 1,
                return_input_shape: bool = True, generator: Optional[torch.Generator] = None,
                show_progress: bool = False) -> Result:
    """Kernel SHAP (Captum's ``KernelShap``): Shapley values as a weighted linear regression.

    LIME with the Shapley kernel: the samples are the full and the empty coalition, then
    coalitions of ``k`` features with ``P(k) ~ (n - 1) / (k (n - k))``, ``k`` features chosen
    uniformly (sampling by the kernel, so the other weights are 1); the empty and full
    coalitions get weight ``1e6`` (Captum's stand-in for infinity), and the surrogate is the
    weighted least-squares fit with intercept. With enough samples (or a linear ``f``) the
    coefficients are the Shapley values of ``v(S) = f(x_S, baseline_rest)[target]``. The fits of
    all examples are one batched pseudo-inverse.

    Args:
      f, inputs, baselines, target, args, kwargs, feature_mask, n_features, perturbations_per_eval,
        return_input_shape, show_progress: as in :func:`fattr.lime`.
      n_samples: samples per example (the first two are the full and the empty coalition).
      generator: the ``torch.Generator`` the coalitions are drawn from.

    Returns:
      Attributions shaped like the inputs, or ``(B, n_features)`` with ``return_input_shape=False``.

    Example:
      >>> import torch, fattr
      >>> w = torch.tensor([1.0, -2.0, 0.5])
      >>> x = torch.randn(4, 3)
      >>> attr = fattr.kernel_shap(lambda x: x @ w, x, n_samples=20, generator=torch.Generator().manual_seed(0))
      >>> bool(torch.allclose(attr, x * w, atol=1e-4))     # a linear f: the exact Shapley values
      True
    """
    return _surrogate("kernel_shap", f, inputs, baselines, target, args, kwargs, feature_mask, n_features, n_samples,
                      perturbations_per_eval, return_input_shape, None, None, None, generator, show_progress,
                      kernel_shap=True)
