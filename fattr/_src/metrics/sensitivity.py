"""Max-sensitivity (Yeh et al., NeurIPS 2019), Captum 0.9's definition, all perturbations batched."""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch

from .. import randomness, structure
from ..base import InputsLike
from ..errors import check_callable, check_nonnegative_float, check_positive_int, fail
from .perturbations import repeat_args, repeat_target, sample_chunks, takes_generator, takes_two

# keyword arguments of explanation_func that hold one entry per example (repeated with the inputs)
PER_EXAMPLE = ("args", "kwargs", "baselines", "additional_forward_args")


def _flat(values: Any, n_rows: int, what: str) -> torch.Tensor:
    items, _ = structure.as_tuple(values, what)
    return torch.cat([t.reshape(n_rows, -1) for t in items], 1)


def sensitivity_max(explanation_func: Callable[..., Any], inputs: InputsLike,
                    perturb_func: Optional[Callable[..., Any]] = None, *, perturb_radius: float = 0.02,
                    n_perturb_samples: int = 10, norm_ord: Union[str, float] = "fro",
                    max_examples_per_batch: Optional[int] = None, generator: Optional[torch.Generator] = None,
                    **kwargs: Any) -> torch.Tensor:
    """Max-sensitivity of an explanation (Yeh et al., NeurIPS 2019), as Captum 0.9 defines it.

    The largest relative change of the explanation over perturbations ``x'`` of the input::

        SENS = max_{x'} ||e(x') - e(x)|| / ||e(x)||

    (``||e(x)||`` taken as 1 where it is 0.) By default ``x' = x + u`` with ``u`` uniform in the
    L-infinity ball of radius ``perturb_radius``, drawn from ``generator``. All
    ``n_perturb_samples * B`` perturbed inputs are explained in one call of ``explanation_func``
    (``max_examples_per_batch`` rows at a time); the result is differentiable where the
    explanation is.

    Args:
      explanation_func: ``explanation_func(inputs, **kwargs) -> attributions`` shaped like the
        inputs, e.g. ``lambda x, target: fattr.saliency(model, x, target=target)``.
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      perturb_func: None (the default above), or ``perturb_func(inputs[, perturb_radius]) ->
        perturbed inputs`` (Captum's contract: inputs repeated example-major; a ``generator``
        parameter receives ``generator=``).
      perturb_radius: radius of the default perturbation's ball (also passed to a ``perturb_func``
        taking two arguments).
      n_perturb_samples: perturbations per example.
      norm_ord: ``torch.norm``'s ``p`` for both norms (``"fro"``: Euclidean over all elements).
      max_examples_per_batch: at most this many perturbed rows per call (Captum's split).
      generator: the source of the default perturbations (and handed to a ``perturb_func`` taking one).
      **kwargs: passed to ``explanation_func``; ``target`` and the per-example tensors in ``args``,
        ``kwargs``, ``baselines`` and ``additional_forward_args`` are repeated with the inputs.

    Returns:
      ``(B,)`` max-sensitivity per example.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
      >>> explain = lambda x, target: fattr.saliency(model, x, target=target)
      >>> x = torch.randn(4, 3)
      >>> fattr.metrics.sensitivity_max(explain, x, target=1, generator=torch.Generator().manual_seed(0)).shape
      torch.Size([4])
      >>> layer = torch.nn.Linear(3, 2)
      >>> linear = lambda x, target: fattr.saliency(layer, x, target=target)
      >>> fattr.metrics.sensitivity_max(linear, x, target=1).abs().max() == 0   # constant gradients
      tensor(True)

    References:
      Yeh, Hsieh, Suggala, Inouye, Ravikumar. "On the (In)fidelity and Sensitivity of Explanations".
      NeurIPS 2019.
    """
    check_callable("explanation_func", explanation_func)
    check_callable("perturb_func", perturb_func, optional=True)
    xs, was_tuple = structure.as_tuple(inputs)
    radius = check_nonnegative_float("perturb_radius", perturb_radius)
    n_perturb_samples = check_positive_int("n_perturb_samples", n_perturb_samples)
    n = xs[0].shape[0]
    gen = randomness.resolve(generator)
    expl = _flat(explanation_func(inputs, **kwargs), n, "explanation_func(inputs)")
    norm = torch.norm(expl, p=norm_ord, dim=1)
    norm = torch.where(norm == 0, torch.ones_like(norm), norm)

    worst = []  # per chunk of samples, (B,)
    for k in sample_chunks(n_perturb_samples, n, max_examples_per_batch):
        expanded = tuple(x.repeat_interleave(k, dim=0) for x in xs)
        call_inputs = expanded if was_tuple else expanded[0]
        if perturb_func is None:
            perturbed: Any = structure.restore(tuple(
                x + torch.empty(x.shape, dtype=x.dtype if x.is_floating_point() else torch.float32,
                                device=gen.device).uniform_(-radius, radius, generator=gen).to(x.device)
                for x in expanded), was_tuple)
        else:
            extra = {"generator": generator} if generator is not None and takes_generator(perturb_func) else {}
            perturbed = (perturb_func(call_inputs, perturb_radius, **extra) if takes_two(perturb_func)
                         else perturb_func(call_inputs, **extra))
        got, _ = structure.as_tuple(perturbed, "perturb_func(inputs)")
        if len(got) != len(xs) or any(g.shape != e.shape for g, e in zip(got, expanded)):
            fail("perturb_func", "perturbed inputs shaped like the repeated inputs "
                 f"{', '.join(str(tuple(e.shape)) for e in expanded)}", perturbed)
        repeated = {name: (repeat_target(v, k) if name == "target" else
                           repeat_args(v, n, k) if name in PER_EXAMPLE else v) for name, v in kwargs.items()}
        expl_p = _flat(explanation_func(perturbed, **repeated), n * k, "explanation_func(perturbed inputs)")
        change = torch.norm(expl.repeat_interleave(k, dim=0) - expl_p, p=norm_ord, dim=1)
        worst.append((change / norm.repeat_interleave(k, dim=0)).reshape(n, k).amax(1))
    return torch.stack(worst).amax(0)
