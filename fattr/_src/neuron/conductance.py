"""Neuron conductance: the flow of the model's output through one neuron, per input feature."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch

from .. import structure
from ..arguments import boundary, tile_args
from ..base import (ArgsLike, BaselinesLike, InputsLike, KwargsLike, LayerLike, ModelLike, NeuronSelectorLike,
                    ResultOrList, TargetLike, Tensor, Tensors)
from ..baselines import format_baselines
from ..compiled import marked
from ..deeplift.rules import Constant, rule_pass
from ..errors import check_bool, check_optional_positive_int, fail
from ..gradients import total_sum
from ..path import accumulation_dtype
from ..quadrature import Method, quadrature
from ..recompute import checkpoint
from ..targets import Target
from .selector import Neuron


def neuron_conductance(model: ModelLike, layer: LayerLike, inputs: InputsLike, baselines: BaselinesLike = None,
                       n_steps: int = 50, method: Method = "riemann_trapezoid", *, neuron_selector: NeuronSelectorLike,
                       target: TargetLike = None, args: ArgsLike = (), kwargs: KwargsLike = None,
                       chunk_size: Optional[int] = None, multiply_by_inputs: bool = True,
                       attribute_to_neuron_input: bool = False) -> ResultOrList:
    """Neuron conductance (Dhamdhere et al., 2018), as Captum's NeuronConductance.

    How much of the target output flows through the selected neuron ``y`` of ``layer``, per
    input feature, along the straight line ``x_k = b + a_k (x - b)`` from the baseline:

    ``attr_i = (x_i - b_i) * sum_k w_k * dF/dy(x_k) * dy/dx_i(x_k)``

    with the quadrature rule ``method`` (Captum's default ``"riemann_trapezoid"``, with
    fattr's textbook weights: Captum's sum to ``(n-1)/n`` and scale its result by that). All
    steps are one batched forward pass of the model and three partial backward passes: the
    layer gradient ``dF/dy``, then ``d <dF/dy, y>_neuron / dx`` through the head. For a region or
    a callable selector the result is the sum of the selected neurons' conductances,
    ``sum_j dF/dy_j * dy_j/dx`` (Captum multiplies the summed gradients by the
    summed neuron gradients instead; the two agree for one neuron). Summed over the features,
    the conductances of all neurons of a layer every path crosses give ``F(x) - F(b)``.

    Args:
      model, layer, inputs, baselines, n_steps, method, args, kwargs, chunk_size, attribute_to_neuron_input:
        as in :func:`fattr.neuron_integrated_gradients`.
      neuron_selector: one neuron, region or callable, as in :func:`fattr.neuron_gradient` (not a list).
      target: the output to attribute: None, int, tuple, or one entry per example.
      multiply_by_inputs: if False, do not multiply by ``x - b``.

    Returns:
      Attributions shaped like ``inputs``.

    Example:
      >>> import torch, fattr
      >>> _ = torch.manual_seed(0)
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
      >>> x = torch.randn(5, 3, dtype=torch.float64)
      >>> per_neuron = [fattr.neuron_conductance(model, "1", x, neuron_selector=j, target=1, n_steps=100)
      ...               for j in range(4)]   # every path crosses the layer: the neurons share F(x) - F(0)
      >>> total = sum(c.sum(1) for c in per_neuron)
      >>> change = model(x)[:, 1] - model(torch.zeros(1, 3, dtype=torch.float64))[:, 1]
      >>> bool(torch.allclose(total, change, atol=1e-4))   # up to the quadrature's error
      True
    """
    check_bool("multiply_by_inputs", multiply_by_inputs)
    chunk_size = check_optional_positive_int("chunk_size", chunk_size)
    xs, was_tuple, tgt, args = boundary(model, inputs, target, args, kwargs, "model")
    neuron = Neuron(model, layer, neuron_selector, attribute_to_neuron_input)
    if neuron.was_list:
        fail("neuron_selector", "one selector (neuron_conductance takes a single neuron)", neuron_selector,
             kind=TypeError)
    bases = format_baselines(baselines, xs)
    n = xs[0].shape[0]
    alphas, weights = quadrature(method, n_steps, device=xs[0].device)

    total: Any = (0,) * len(xs)  # per input, the sum over the chunks
    step = alphas.shape[0] if chunk_size is None else chunk_size
    for a, w in zip(torch.split(alphas, step), torch.split(weights, step)):
        k = a.shape[0]
        points = tuple(structure.fold(b + a.to(x.dtype).reshape((k,) + (1,) * x.dim()) * (x - b))
                       for x, b in zip(xs, bases))
        density = _densities(neuron, points, tile_args(args, n, k), tgt.tile(k))
        terms = [torch.tensordot(w.to(accumulation_dtype(d.dtype)),
                                 structure.unfold(d, k).to(accumulation_dtype(d.dtype)), dims=1) for d in density]
        total = tuple(t + s for t, s in zip(total, terms))
    return structure.restore(tuple((t * (x - b).to(t.dtype) if multiply_by_inputs else t).to(x.dtype)
                                   for t, x, b in zip(total, xs, bases)), was_tuple)


def _densities(neuron: Neuron, points: Tensors, args: Tuple[Any, ...], target: Target) -> Tensors:
    """``d <dF/dy, y>_neuron / dx`` at every row of ``points``: the rule pass (:func:`..deeplift.rules.rule_pass`)
    of ``select(y * dF/dy)``, its layer gradient ``dF/dy`` (``torch.func.grad`` of the tail) a constant of the
    pass's differentiation, for any selector. Computed without a graph and differentiable on demand
    (:mod:`..recompute`), or with its graph when grad mode is on."""
    n_rows, select = points[0].shape[0], neuron.selectors[0]

    def run(tensors: Tensors, rows_args: Tuple[Any, ...]) -> Tensors:
        def forward(rows: Tensors, constant: Constant) -> Tensor:
            act, rest = neuron.split.head(*rows, *rows_args)
            several = isinstance(act, (tuple, list))
            acts = tuple(act) if several else (act,)
            fixed = tuple(constant(v) if isinstance(v, Tensor) else v for v in rest)

            def output(*a: Tensor) -> Tensor:
                a = marked(a)
                return total_sum(target.select(neuron.split.tail(a if several else a[0], fixed), n_rows))

            layer_grads = torch.func.grad(output, argnums=tuple(range(len(acts))))(*(constant(y) for y in acts))
            products = tuple(y * g for y, g in zip(acts, layer_grads))
            return select(products if several else products[0], n_rows)

        return rule_pass(forward, tensors)[1]

    return checkpoint(run, points, args=args, module=neuron.split.owner, traceable=True)
