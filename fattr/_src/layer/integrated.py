"""Path methods at a layer: layer integrated gradients, layer conductance, internal influence.

All three take *input-space* baselines, as Captum does:

* **layer integrated gradients** is :func:`fattr.integrated_gradients` on the
  tail, along the straight line in activation space from the baseline's
  activation (the head on the baselines) to the input's, with ``rest`` held at
  the input's values. The head runs on the inputs and the baselines (one call
  where :func:`.heads.heads` allows), the tail once per step.
* **internal influence** and **layer conductance** follow the straight line in
  *input* space, so they run the head at every step (:func:`_on_input_path`; their
  formulas in their docstrings).
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch

from .. import structure
from ..arguments import boundary, is_per_example, split_args, tile_args
from ..base import (ArgsLike, BaselinesLike, InputsLike, KwargsLike, LayerLike, ModelLike, ResultOrList, TargetLike,
                    WithDeltaOrList)
from ..baselines import format_baselines
from ..errors import check_bool, check_optional_positive_int, check_positive_int
from ..gradients import outputs
from ..integrated_gradients import integrate
from ..path import at, line_points, weighted_gradient_sum
from ..recompute import checkpoint_aux
from ..quadrature import Method, rule
from ..structure import Tensors
from ..targets import Target
from .heads import heads
from .view import LayerFunction
from ..delta import row_totals


def _full_baselines(xs: Tensors, baselines: Any) -> Tensors:
    return tuple(b.expand_as(x) for b, x in zip(format_baselines(baselines, xs), xs))


def layer_integrated_gradients(model: ModelLike, layer: LayerLike, inputs: InputsLike, baselines: BaselinesLike = None,
                               n_steps: int = 50, method: Method = "gausslegendre", *, target: TargetLike = None,
                               args: ArgsLike = (), kwargs: KwargsLike = None, chunk_size: Optional[int] = None,
                               multiply_by_inputs: bool = True, return_delta: bool = False,
                               attribute_to_layer_input: bool = False) -> WithDeltaOrList:
    """Integrated Gradients at a layer (Captum's LayerIntegratedGradients).

    ``attr = (act(x) - act(b)) * sum_k w_k * d tail(act(b) + a_k (act(x) - act(b)), rest(x)) / d act``:
    the activation moves on the straight line from the baseline's activation to
    the input's while everything else the tail reads (skip connections, other
    inputs) stays at the input's values. The part of the model before the layer
    runs twice (inputs and baselines), the part after it once per step (batched),
    which makes this much faster than rerunning the whole model per step when the
    layer is late in the model.

    Args:
      model: the ``nn.Module``.
      layer: a submodule of ``model`` or its dotted name, or a list of them (all
        substituted together; the result is then a list).
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      baselines: *input-space* baselines (None: zeros, a number, a tensor, or a tuple).
      n_steps, method: the quadrature rule (see :func:`fattr.quadrature`).
      target: the output to attribute (None, int, tuple, or one entry per example).
      args: extra positional arguments of ``model``; tensors with B rows stay paired with their example.
      chunk_size: evaluate at most this many path steps at once.
      multiply_by_inputs: if False, return the path-averaged layer gradient.
      return_delta: also return ``sum(attr) - (model(x) - model(b))`` per example.
      attribute_to_layer_input: attribute to the layer's input instead of its output.

    Returns:
      Attributions shaped like the layer's activation (a tuple for several
      tensors, a list for several layers); with ``return_delta``, ``(attributions, delta)``.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
      >>> x = torch.randn(4, 3, dtype=torch.float64)
      >>> attr, delta = fattr.layer_integrated_gradients(model.double(), "1", x, target=0, return_delta=True)
      >>> attr.shape, bool(delta.abs().max() < 1e-10)
      (torch.Size([4, 8]), True)
    """
    check_bool("multiply_by_inputs", multiply_by_inputs)
    check_bool("return_delta", return_delta)
    xs, _, tgt, args = boundary(model, inputs, target, args, kwargs, "model")
    chunk_size = check_optional_positive_int("chunk_size", chunk_size)
    lf = LayerFunction(model, layer, attribute_to_layer_input, allow_list=True)
    f, n, m = lf.function(), xs[0].shape[0], len(xs)

    def run(tensors: Tensors, extra: Tuple[Any, ...]) -> Tuple[Tensors, Tuple[Any, ...]]:
        (acts_x, rest_x), (acts_b, rest_b) = heads(lf, (tensors[:m], tensors[m:]), extra, n)
        attr = integrate(f, acts_x, acts_b, n_steps, method, tgt, rest_x, chunk_size, multiply_by_inputs)
        if not return_delta:
            return attr, rest_x[-1:]
        return attr + (outputs(f, acts_x, tgt, rest_x).to(torch.float64)
                       - outputs(f, acts_b, tgt, rest_b).to(torch.float64),), rest_x[-1:]

    tensors = tuple(xs) + _full_baselines(xs, baselines)
    # heads, path (and delta): one checkpoint; chunked, one per chunk (the engine's): memory follows chunk_size
    values, packing = (run(tensors, args) if chunk_size is not None
                       else checkpoint_aux(run, tensors, args=args, module=lf.model))
    attr = values[:len(values) - return_delta]
    result = lf.restore(attr, packing)
    return (result, row_totals(attr) - values[-1]) if return_delta else result


def _on_input_path(model: ModelLike, layer: Any, inputs: Any, baselines: Any, n_steps: int, method: Method,
                   target: Any, args: Any, kwargs: Any, chunk_size: Optional[int], attribute_to_layer_input: bool,
                   differences: bool) -> Tuple[Any, Tensors, Tensors, Target, Tuple[Any, ...]]:
    """The engine's weighted sum (:func:`..path.weighted_gradient_sum`) of the layer gradients at the
    input-space path points ``b + a_k (x - b)`` (the split's ``rest`` carried per point); with
    ``differences``, over ``n_steps + 1`` nodes, each gradient times ``act(next node) - act(node)``.
    ``(attributions, flat attributions, inputs, target, args)``."""
    xs, _, tgt, args = boundary(model, inputs, target, args, kwargs, "model")
    structure.require_floating(xs)  # the path interpolates the inputs: integer ids cannot be
    chunk_size = check_optional_positive_int("chunk_size", chunk_size)
    bases = format_baselines(baselines, xs)
    lf = LayerFunction(model, layer, attribute_to_layer_input)
    n, m = xs[0].shape[0], len(xs)
    one = m == 1 or all(x.dtype == xs[0].dtype for x in xs)  # the nodes in the inputs' dtype: cast once (cached)
    n_steps = check_positive_int("n_steps", n_steps)
    nodes, weights = rule(method, n_steps + differences, device=xs[0].device,
                          dtype=xs[0].dtype if one else torch.float64, weights_dtype=torch.float64)
    arg_tensors, rebuild = split_args(args)
    seen: List[Any] = []  # the head's rest and activation dtypes

    def points(steps: slice, tensors: Tensors) -> Tuple[Any, ...]:
        a = at(nodes, slice(steps.start, steps.stop + differences))  # the steps' nodes (and the next)
        rows = tuple([structure.fold(p) for p in line_points(a, tensors[:m], tensors[m:2 * m])])
        acts, rest = lf.head(rows, tile_args(rebuild(tensors[2 * m:]), n, a.shape[0]))
        if not seen:  # the same for every chunk; recorded once (a recomputation has no side effects)
            seen[:] = [rest, [t.dtype for t in acts]]
        if not differences:
            return acts, None, rest
        cut = (a.shape[0] - 1) * n  # the steps' rows: the last node only closes the last step
        rest = tuple([r[:cut] if is_per_example(r, cut + n) else r for r in rest])
        here = [t[:cut] for t in acts]
        return here, [t[n:] - t_k for t, t_k in zip(acts, here)], rest

    ends = tuple(bases) + tuple(x - b for x, b in zip(xs, bases))  # the path: bases + alpha * differences
    total = weighted_gradient_sum(lf.function(), points, ends + arg_tensors, n_steps,
                                  None if differences else weights,  # conductance: Captum's rule, unweighted
                                  target=tgt, args=(), n_examples=n, chunk_size=chunk_size)
    rest, dtypes = seen
    attr = tuple(t.to(d) for t, d in zip(total, dtypes))
    return lf.restore(attr, rest), attr, xs, tgt, args


def internal_influence(model: ModelLike, layer: LayerLike, inputs: InputsLike, baselines: BaselinesLike = None,
                       n_steps: int = 50, method: Method = "gausslegendre", *, target: TargetLike = None,
                       args: ArgsLike = (), kwargs: KwargsLike = None, chunk_size: Optional[int] = None,
                       attribute_to_layer_input: bool = False) -> ResultOrList:
    """Internal influence (Leino et al., 2018), as Captum's InternalInfluence.

    The layer gradient integrated along the straight line from the baseline to
    the input *in input space*: ``sum_k w_k * d model(x_k)[target] / d act(x_k)``
    with ``x_k = b + a_k (x - b)``. Each step runs the head and the tail (batched
    over steps); the result is not multiplied by any activation difference.

    Args:
      model: the ``nn.Module``.
      layer: a submodule of ``model`` or its dotted name.
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      baselines: input-space baselines (None: zeros, a number, a tensor, or a tuple).
      n_steps, method: the quadrature rule (see :func:`fattr.quadrature`; fattr's
        trapezoid weights sum to 1, Captum's to ``(n-1)/n``).
      target, args, chunk_size: as in :func:`fattr.layer_integrated_gradients`.
      attribute_to_layer_input: attribute to the layer's input instead of its output.

    Returns:
      Attributions shaped like the layer's activation (a tuple for several tensors).

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
      >>> fattr.internal_influence(model, "1", torch.randn(4, 3), target=1, n_steps=16).shape
      torch.Size([4, 8])
    """
    return _on_input_path(model, layer, inputs, baselines, n_steps, method, target, args, kwargs, chunk_size,
                          attribute_to_layer_input, differences=False)[0]


def layer_conductance(model: ModelLike, layer: LayerLike, inputs: InputsLike, baselines: BaselinesLike = None,
                      n_steps: int = 50, method: Method = "gausslegendre", *, target: TargetLike = None,
                      args: ArgsLike = (), kwargs: KwargsLike = None, chunk_size: Optional[int] = None,
                      return_delta: bool = False, attribute_to_layer_input: bool = False) -> WithDeltaOrList:
    """Layer conductance (Dhamdhere et al., 2018), as Captum's LayerConductance.

    The flow of the target through each neuron of the layer along the straight
    line from the baseline to the input in input space:
    ``sum_k grad(x_k) * (act(x_{k+1}) - act(x_k))`` over the ``n_steps + 1``
    nodes ``x_k = b + a_k (x - b)`` of ``method`` (Captum's rule; the nodes'
    weights are not used, and with ``"riemann_trapezoid"`` the nodes include
    both ends). The head and the tail run at every node, batched over nodes.
    Summed over the layer, conductance approaches ``model(x) - model(b)`` when
    every path from the input to the output goes through the layer.

    Args:
      model: the ``nn.Module``.
      layer: a submodule of ``model`` or its dotted name.
      inputs: a tensor ``(B, ...)`` or a tuple of them.
      baselines: input-space baselines (None: zeros, a number, a tensor, or a tuple).
      n_steps, method: ``n_steps + 1`` nodes of the quadrature rule (see :func:`fattr.quadrature`).
      target, args, chunk_size: as in :func:`fattr.layer_integrated_gradients`.
      return_delta: also return ``sum(attr) - (model(x) - model(b))`` per example.
      attribute_to_layer_input: attribute to the layer's input instead of its output.

    Returns:
      Attributions shaped like the layer's activation (a tuple for several
      tensors); with ``return_delta``, ``(attributions, delta)``.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
      >>> x = torch.randn(4, 3, dtype=torch.float64)
      >>> attr, delta = fattr.layer_conductance(model, "1", x, n_steps=200, method="riemann_trapezoid",
      ...                                       target=0, return_delta=True)
      >>> attr.shape, bool(delta.abs().max() < 1e-3)
      (torch.Size([4, 8]), True)
    """
    check_bool("return_delta", return_delta)
    result, attr, xs, tgt, args = _on_input_path(model, layer, inputs, baselines, n_steps, method, target, args,
                                                 kwargs, chunk_size, attribute_to_layer_input, differences=True)
    if not return_delta:
        return result
    full = _full_baselines(xs, baselines)
    change = (outputs(model, xs, tgt, args).to(torch.float64)
              - outputs(model, full, tgt, args).to(torch.float64))
    return result, row_totals(attr) - change

