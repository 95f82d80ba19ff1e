"""Infidelity (Yeh et al., NeurIPS 2019), Captum 0.9's definition, all perturbations batched."""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from .. import structure
from ..arguments import boundary, repeat_rows, tile_args
from ..base import ArgsLike, Attributions, BaselinesLike, InputsLike, KwargsLike, ModelLike, TargetLike
from ..errors import check_bool, check_callable, check_positive_int, fail
from ..gradients import outputs
from .perturbations import sample_chunks, takes_generator


def infidelity(f: ModelLike, perturb_func: Callable[..., Any], inputs: InputsLike, attributions: Attributions, *,
               baselines: BaselinesLike = None, target: TargetLike = None, args: ArgsLike = (),
               kwargs: KwargsLike = None, n_perturb_samples: int = 10, max_examples_per_batch: Optional[int] = None,
               normalize: bool = False, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Infidelity of attributions (Yeh et al., NeurIPS 2019), as Captum 0.9 defines it.

    The expected squared error between the attributions' prediction of an output change and the
    change itself, over perturbations ``I`` from ``perturb_func``::

        INFD = E_I [ (I . attr - (f(x) - f(x - I)))^2 ]

    (``f(x - I)`` is ``f`` at the perturbed input ``perturb_func`` returns.) With ``normalize`` the
    attributions are first scaled by ``beta = E[(I . attr)(f(x) - f(x - I))] / E[(I . attr)^2]``,
    which makes the score invariant to their scale. All ``n_perturb_samples * B`` perturbed inputs
    go through ``f`` in one call (``max_examples_per_batch`` rows at a time), and the result is
    differentiable with respect to the attributions and to what ``f`` depends on.

    Args:
      f: the model, ``f(*inputs, *args)`` with examples along dim 0.
      perturb_func: ``perturb_func(inputs[, baselines]) -> (perturbations, perturbed_inputs)``,
        Captum's contract: it receives the inputs repeated example-major (each example's copies
        together) and returns tensors (a tuple for tuple inputs) of the same shapes. A function
        with a ``generator`` parameter also receives ``generator=``.
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      attributions: shaped like ``inputs``.
      baselines: passed to ``perturb_func`` (per-example tensors repeated like the inputs); None:
        ``perturb_func`` is called with the inputs only.
      target, args, kwargs: as in :func:`fattr.integrated_gradients`.
      n_perturb_samples: perturbations per example.
      max_examples_per_batch: at most this many perturbed rows per call (Captum's split).
      normalize: scale the attributions by the optimal ``beta`` first.
      generator: handed to ``perturb_func`` when it takes one.

    Returns:
      ``(B,)`` infidelity per example.

    Example:
      >>> import torch, fattr
      >>> w = torch.tensor([1.0, -2.0, 0.5])
      >>> f = lambda x: x @ w
      >>> def perturb(x, generator=None):
      ...     noise = 0.1 * torch.randn(x.shape, generator=generator)
      ...     return noise, x - noise
      >>> x = torch.randn(4, 3)
      >>> g = torch.Generator().manual_seed(0)
      >>> fattr.metrics.infidelity(f, perturb, x, w.expand(4, 3), generator=g).abs().max() < 1e-10  # f is linear: exact
      tensor(True)

    References:
      Yeh, Hsieh, Suggala, Inouye, Ravikumar. "On the (In)fidelity and Sensitivity of Explanations".
      NeurIPS 2019.
    """
    check_callable("perturb_func", perturb_func)
    xs, was_tuple, tgt, args = boundary(f, inputs, target, args, kwargs)
    attrs = structure.like_inputs(attributions, xs, was_tuple)
    n_perturb_samples = check_positive_int("n_perturb_samples", n_perturb_samples)
    check_bool("normalize", normalize)
    if generator is not None and not isinstance(generator, torch.Generator):
        fail("generator", "None or a torch.Generator", generator, kind=TypeError)
    n = xs[0].shape[0]
    bases = None if baselines is None else (baselines if isinstance(baselines, tuple) else (baselines,))
    if bases is not None and len(bases) != len(xs):
        fail("baselines", f"one baseline per input ({len(xs)})", baselines)
    extra = {"generator": generator} if generator is not None and takes_generator(perturb_func) else {}
    f_x = outputs(f, xs, tgt, args)

    terms = []
    for k in sample_chunks(n_perturb_samples, n, max_examples_per_batch):
        expanded = tuple(x.repeat_interleave(k, dim=0) for x in xs)
        call_inputs = expanded if was_tuple else expanded[0]
        if bases is None:
            got = perturb_func(call_inputs, **extra)
        else:
            b = tuple(repeat_rows(v, n, k) if n > 1 else v for v in bases)
            got = perturb_func(call_inputs, b if was_tuple else b[0], **extra)
        if not (isinstance(got, tuple) and len(got) == 2):
            fail("perturb_func", "to return (perturbations, perturbed_inputs)", got, kind=TypeError)
        perturbations, _ = structure.as_tuple(got[0], "perturbations")
        perturbed, _ = structure.as_tuple(got[1], "perturbed inputs")
        for name, items, shown in (("perturbations", perturbations, got[0]), ("perturbed inputs", perturbed, got[1])):
            if len(items) != len(xs) or any(t.shape != e.shape for t, e in zip(items, expanded)):
                fail("perturb_func", f"{name} shaped like the repeated inputs "
                     f"{', '.join(str(tuple(e.shape)) for e in expanded)}", shown)
        # example-major (Captum's layout) to step-major rows (fattr's folding)
        rows = tuple(p.reshape((n, k) + tuple(p.shape[1:])).transpose(0, 1).reshape(p.shape) for p in perturbed)
        change = f_x[:, None] - outputs(f, rows, tgt.tile(k), tile_args(args, n, k)).reshape(k, n).t()
        dot = sum((a.unsqueeze(1) * p.reshape((n, k) + tuple(a.shape[1:]))).reshape(n, k, -1).sum(-1)
                  for a, p in zip(attrs, perturbations))
        assert isinstance(dot, torch.Tensor)
        terms.append((dot, change))
    dots = torch.cat([t[0] for t in terms], 1)
    changes = torch.cat([t[1] for t in terms], 1).to(dots.dtype)
    if normalize:
        s_aa, s_ab, s_bb = (dots ** 2).sum(1), (dots * changes).sum(1), (changes ** 2).sum(1)
        beta = s_ab / torch.where(s_aa == 0, torch.ones_like(s_aa), s_aa)
        return (beta * beta * s_aa - 2 * beta * s_ab + s_bb) / n_perturb_samples
    return ((dots - changes) ** 2).sum(1) / n_perturb_samples
