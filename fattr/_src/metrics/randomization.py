"""Model-parameter randomisation check (Adebayo et al., NeurIPS 2018), on copies of the model."""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from .. import randomness, structure
from ..base import InputsLike, TargetLike
from ..errors import check_bool, check_callable, fail
from ..layer.resolve import resolve


def ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks along dim 1 (0 = smallest; ties by position), int64."""
    order = torch.argsort(values, dim=1, stable=True)
    positions = torch.arange(values.shape[1], device=values.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of the rows of two ``(B, D)`` tensors (ties ranked by position)."""
    ra, rb = ranks(a).to(torch.float64), ranks(b).to(torch.float64)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    denom = (ra.norm(dim=1) * rb.norm(dim=1))
    return (ra * rb).sum(1) / torch.where(denom == 0, torch.ones_like(denom), denom)


def _reinitialise(module: nn.Module, generator: torch.Generator) -> None:
    """New values for ``module``'s own parameters: its ``reset_parameters`` run on a seed drawn from
    ``generator`` (torch's global generator is forked and restored), else a normal draw with each
    parameter's own standard deviation."""
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
        cuda = sorted({p.device.index if p.device.index is not None else torch.cuda.current_device()
                       for p in module.parameters() if p.device.type == "cuda"})
        with torch.random.fork_rng(devices=cuda):  # the generators reset() draws from, restored after
            torch.default_generator.manual_seed(seed)  # not torch.manual_seed: it would queue CUDA seeds too
            for index in cuda:
                torch.cuda.default_generators[index].manual_seed(seed)
            reset()
        return
    with torch.no_grad():
        for p in module.parameters(recurse=False):
            std = float(p.detach().to(torch.float64).std()) if p.numel() > 1 else 0.0
            p.copy_(randomness.normal(generator, p.shape, dtype=p.dtype, device=p.device) * (std if std > 0 else 1.0))


def randomization_check(method: Callable[..., Any], model: nn.Module, inputs: InputsLike, *, target: TargetLike = None,
                        layers: Optional[Sequence[Union[str, nn.Module]]] = None,
                        generator: Optional[torch.Generator] = None, absolute: bool = True,
                        **options: Any) -> Dict[str, torch.Tensor]:
    """Adebayo et al.'s model-parameter randomisation test: do the attributions depend on the weights?

    The layers are re-initialised one after another, from the top (output) down, each time keeping
    the earlier ones randomised (cascading randomisation), on a copy of the model; after each, the
    attributions of ``method`` are compared with those of the trained model by Spearman's rank
    correlation, per example. An attribution method that passes the check loses the correlation
    as the layers are randomised; one that keeps it is explaining the input, not the model.

    Args:
      method: a fattr method, called ``method(model_copy, inputs, target=target, **options)``.
      model: the trained ``nn.Module`` (never changed: the randomised models are copies).
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      target: as in :func:`fattr.integrated_gradients`.
      layers: the modules (or dotted names) to randomise, in this order; None: every module
        owning parameters, from the last registered to the first.
      generator: the source of the new parameters (each layer's ``reset_parameters`` runs on a
        seed drawn from it; torch's global generator is left as it was).
      absolute: rank the absolute attributions (Adebayo et al. report both).
      **options: further keyword arguments of ``method`` (``n_steps``, ``baselines``...).

    Returns:
      A dict from layer name to ``(B,)`` rank correlations, in randomisation order (cumulative).

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
      >>> x = torch.randn(4, 6)
      >>> rho = fattr.metrics.randomization_check(fattr.saliency, model, x, target=0,
      ...                                         generator=torch.Generator().manual_seed(0))
      >>> list(rho), rho["2"].shape
      (['2', '0'], torch.Size([4]))

    References:
      Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim. "Sanity Checks for Saliency Maps". NeurIPS 2018.
    """
    check_callable("method", method)
    if not isinstance(model, nn.Module):
        fail("model", "an nn.Module (its layers are randomised on a copy)", model, kind=TypeError)
    check_bool("absolute", absolute)
    xs, _ = structure.as_tuple(inputs)
    n = xs[0].shape[0]
    gen = randomness.resolve(generator)
    if layers is None:
        chosen: List[str] = [name for name, m in reversed(list(model.named_modules()))
                             if any(True for _ in m.parameters(recurse=False))]
    else:  # dotted names as given, modules by name
        names = {m: name for name, m in model.named_modules()}
        modules = resolve(model, list(layers), "layers")[0] if layers else ()
        chosen = [layer if isinstance(layer, str) else names[m] for layer, m in zip(layers, modules)]

    def flat(attr: Any) -> torch.Tensor:
        items, _ = structure.as_tuple(attr, "method(...)")
        values = torch.cat([t.detach().reshape(n, -1).to(torch.float64) for t in items], 1)
        return values.abs() if absolute else values

    with torch.no_grad():
        reference = flat(method(model, inputs, target=target, **options))
        twin = copy.deepcopy(model)
        result: Dict[str, torch.Tensor] = {}
        for name in chosen:
            _reinitialise(twin.get_submodule(name), gen)
            result[name] = spearman(reference, flat(method(twin, inputs, target=target, **options)))
    return result
