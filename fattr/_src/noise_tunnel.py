"""The noise tunnel: a transform from an attribution method to its smoothed version.

``noise_tunnel(method, ...)`` returns a function with ``method``'s signature plus
a keyword ``generator=``. It adds Gaussian noise to the inputs ``n_samples``
times, folds the noisy copies into the batch (so ``method`` runs once over
``n_samples * B`` examples, or ``chunk_size`` samples at a time) and reduces the
attributions over the samples. It wraps any fattr method, input or layer.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch.utils import _pytree as pytree

from . import randomness, structure
from .arguments import tile, tile_args
from .compiled import dynamo_tracing
from .base import StdevsLike
from .errors import Shown, check_callable, check_choice, check_optional_positive_int, check_positive_int, fail
from .path import accumulation_dtype

KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")


def _tile_tree(value: Any, n: int, k: int) -> Any:
    return tile_args(value, n, k) if isinstance(value, tuple) else tile_args((value,), n, k)[0]


def _noise(generator: Any, xs: Tuple[torch.Tensor, ...],
           sizes: Sequence[int]) -> Tuple[torch.Generator, List[Tuple[torch.Tensor, ...]]]:
    """The generator (``generator`` or a fresh one) and, for each chunk of ``k`` samples in ``sizes``, ``k``
    standard normal draws of each input, in that order."""
    gen = randomness.resolve(generator)
    return gen, [tuple(randomness.normal(gen, (k,) + tuple(x.shape), dtype=x.dtype, device=x.device) for x in xs)
                 for k in sizes]


def noise_tunnel(method: Callable[..., Any], *, kind: str = "smoothgrad", n_samples: int = 5,
                 stdevs: StdevsLike = 1.0, chunk_size: Optional[int] = None,
                 per_example: Optional[Sequence[str]] = None) -> Callable[..., Any]:
    """SmoothGrad, SmoothGrad-squared or VarGrad around any fattr method.

    Args:
      method: an attribution function with an ``inputs`` argument (``fattr.saliency``,
        ``fattr.integrated_gradients``, a layer method, ...).
      kind: ``"smoothgrad"`` (mean over samples), ``"smoothgrad_sq"`` (mean of
        squares) or ``"vargrad"`` (variance: mean of squares minus squared mean).
      n_samples: noisy copies per example.
      stdevs: standard deviation of the noise, one number or one per input.
      chunk_size: run ``method`` on at most this many noisy copies of the batch at once.
      per_example: names of ``method``'s parameters that hold one row per example (a
        per-example baseline or mask) and are repeated for the noisy copies when they have
        ``B`` rows; ``target``, ``args`` and ``kwargs`` always are. Default: what the
        method's registry entry declares (:attr:`fattr.MethodSpec.per_example`; nothing for an
        unregistered method). A distribution (the baselines of the SHAP methods) is not per
        example and is not repeated, whatever its number of rows.

    Returns:
      ``tunnel(*args, generator=None, **kwargs)`` with ``method``'s parameters. With
      ``return_delta=True`` the delta of every noisy example is returned, example
      first (``B * n_samples`` entries for a per-example delta).

    Example:
      >>> import torch, fattr
      >>> smoothgrad = fattr.noise_tunnel(fattr.saliency, n_samples=16, stdevs=0.1)
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
      >>> attr = smoothgrad(model, torch.randn(4, 3), target=0, generator=torch.Generator().manual_seed(0))
      >>> attr.shape
      torch.Size([4, 3])
    """
    check_callable("method", method)
    check_choice("kind", kind, KINDS)
    n_samples = check_positive_int("n_samples", n_samples)
    chunk_size = check_optional_positive_int("chunk_size", chunk_size)
    randomness.check_stdevs(stdevs)
    signature = inspect.signature(method)
    if "inputs" not in signature.parameters:
        fail("method", "an attribution function with an 'inputs' parameter", Shown(repr(method)), kind=TypeError)
    if per_example is not None:
        if isinstance(per_example, str) or not all(isinstance(p, str) for p in per_example):
            fail("per_example", "a sequence of parameter names", per_example, kind=TypeError)
        for p in per_example:
            if p not in signature.parameters:
                fail("per_example", f"names of parameters of {getattr(method, '__name__', 'method')}",
                     Shown(repr(p)))
    passes_generator = "generator" in signature.parameters

    @functools.wraps(method)
    def tunnel(*call_args: Any, generator: Any = None, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(*call_args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{getattr(method, '__name__', 'method')}: {e}") from None
        arguments = dict(bound.arguments)
        repeated: Tuple[str, ...] = tuple(per_example or ())
        if per_example is None:  # what the method's registry entry declares (none for an unregistered method)
            from .registry import spec_of  # the registry builds tunnels itself: look it up at call time
            spec = spec_of(inspect.unwrap(method, stop=lambda f: spec_of(f) is not None))  # through functools.wraps
            repeated = spec.per_example if spec is not None else ()
        xs, was_tuple = structure.as_tuple(arguments["inputs"])
        structure.require_floating(xs)  # noise on integer inputs (token ids) would be truncated away
        n = xs[0].shape[0]
        sds = randomness.per_input_stdevs(stdevs, len(xs))
        return_delta = bool(arguments.get("return_delta", False))
        step = chunk_size or n_samples
        sums: Any = None  # per leaf of the attributions: sums over the samples of the powers of the values
        powers = {"smoothgrad": (1,), "smoothgrad_sq": (2,), "vargrad": (2, 1)}[kind]  # only those kind needs
        treedef, deltas = None, []
        sizes = [min(step, n_samples - start) for start in range(0, n_samples, step)]
        # compiled, every chunk's noise at once (one graph break, outside the loop), unless the method draws from
        # the generator too; eagerly each chunk's before it (the noise in memory follows chunk_size): same numbers
        gen, ahead = randomness.drawn(_noise, generator, xs,
                                      sizes if dynamo_tracing() and not passes_generator else sizes[:1])
        for i, k in enumerate(sizes):
            noise = ahead[i] if i < len(ahead) else randomness.drawn(_noise, gen, xs, [k])[1][0]
            noisy = tuple(structure.fold(x + sd * z) for x, sd, z in zip(xs, sds, noise))
            call = dict(arguments)
            call["inputs"] = structure.restore(noisy, was_tuple)
            target = call.get("target")
            if isinstance(target, list):
                call["target"] = target * k
            elif isinstance(target, torch.Tensor) and target.dim() > 0 and target.shape[0] == n and target.numel() > 1:
                call["target"] = tile(target, k)
            if isinstance(call.get("kwargs"), dict):
                call["kwargs"] = {name: _tile_tree(v, n, k) for name, v in call["kwargs"].items()}
            for name in dict.fromkeys(("args", *repeated)):  # each once
                if name in call:
                    call[name] = _tile_tree(call[name], n, k)
            if passes_generator:
                call["generator"] = gen
            out = method(**call)
            if return_delta:
                out, delta = out
                deltas.append(delta.reshape(k, -1))
            leaves, treedef = pytree.tree_flatten(out)
            leaves = [structure.unfold(leaf, k).to(accumulation_dtype(leaf.dtype, leaf.device)) for leaf in leaves]
            moments = [[(leaf * leaf if p == 2 else leaf).sum(0) for p in powers] for leaf in leaves]
            sums = moments if sums is None else [[a + b for a, b in zip(s, m)] for s, m in zip(sums, moments)]
        assert sums is not None and treedef is not None
        means = [[s / n_samples for s in leaf] for leaf in sums]
        reduced = [m[0] - m[1] * m[1] if kind == "vargrad" else m[0] for m in means]
        result = pytree.tree_unflatten([r.to(leaf.dtype) for r, leaf in zip(reduced, pytree.tree_leaves(out))], treedef)
        if not return_delta:
            return result
        # rows of every chunk are sample-major; report example first
        return result, torch.cat(deltas).reshape(n_samples, n, -1).transpose(0, 1).reshape(-1)

    tunnel.__signature__ = signature.replace(parameters=[  # type: ignore[attr-defined]
        *signature.parameters.values(),
        inspect.Parameter("generator", inspect.Parameter.KEYWORD_ONLY, default=None),
    ]) if not passes_generator else signature
    return tunnel
