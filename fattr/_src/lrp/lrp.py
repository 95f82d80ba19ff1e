"""Layer-wise relevance propagation with respect to the inputs, and at a layer (the rules on the tail of the
split model)."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

import torch

from .. import structure
from ..arguments import boundary, split_args
from ..base import ArgsLike, InputsLike, KwargsLike, LayerLike, ModelLike, TargetLike, Tensor, Tensors, WithDelta
from ..calling import call
from ..deeplift.rules import Constant, rule_pass
from ..delta import row_totals
from ..errors import check_bool
from ..layer.view import LayerFunction
from ..recompute import checkpoint
from ..targets import Target
from .plan import Plan, plan
from .propagation import Propagator


def relevances(f: Callable[..., Any], rows: Tensors, rest: Sequence[Any], target: Target, rules: Plan, *,
               model: Any) -> Tuple[Tensors, Tensor]:
    """``(relevances, out)``: the LRP relevance of each tensor of ``rows`` for ``f(*rows, *rest)[target]``
    (the normalised relevance, the gradient of the rule pass, times ``out``) and ``out``, the selected
    outputs ``(B,)``; computed without a graph and differentiable on demand (:mod:`..recompute`)."""
    structure.require_floating(rows)
    arg_tensors, rebuild = split_args(rest)
    k, n = len(rows), rows[0].shape[0]

    def run(tensors: Tensors) -> Tensors:
        extra = rebuild(tensors[k:])

        def forward(points: Tensors, constant: Constant) -> Tensor:
            propagator = Propagator(rules, constant)  # not ``with ... as``: under Dynamo that binds None
            with propagator:
                return target.select(f(*points, *extra), n)

        out, grads = rule_pass(forward, tensors[:k])
        return tuple(g * out.reshape((-1,) + (1,) * (g.dim() - 1)) for g in grads) + (out,)

    values = checkpoint(run, tuple(rows) + arg_tensors, module=model, traceable=True)
    return values[:k], values[k]


def _delta(rel: Tensors, out: Tensor) -> Tensor:
    """Captum's convergence delta: ``output - sum(relevance)`` per example, in float64."""
    return out.to(torch.float64) - row_totals(rel)


def lrp(model: ModelLike, inputs: InputsLike, *, target: TargetLike = None, args: ArgsLike = (),
        kwargs: KwargsLike = None, rules: Optional[Mapping[Any, Any]] = None, return_delta: bool = False
        ) -> WithDelta:
    """Layer-wise relevance propagation (Bach et al., 2015), as Captum's LRP.

    The target output is the relevance to distribute; each layer hands the relevance it receives to its
    inputs by its rule (:class:`fattr.EpsilonRule`, :class:`fattr.GammaRule`, :class:`fattr.Alpha1Beta0Rule`,
    :class:`fattr.IdentityRule`): a z-rule gives input ``a_i`` the share ``a_i w_ij / z_j`` of output ``j``'s
    relevance. Rules, as in Captum: ``rules={module or dotted name: rule}``, else a ``rule`` attribute set on
    the module (Captum's way, Captum's rule objects included), else the default of its type: the epsilon
    rule (``epsilon=1e-9``) for Linear, Conv1d-3d, BatchNorm1d-3d and max/average pooling; ReLU, Tanh,
    Dropout, Identity and Flatten pass relevance through. A leaf module of any other type is refused with
    a ``TypeError`` naming it. Unlike Captum, a module may be used several times, and nothing is attached
    to the model (the rules replace the layers' operations during one forward pass, without hooks); a
    functional ``F.relu``/``torch.tanh`` or pooling call gets the rule of its kind where Captum passes its
    plain gradient (the same relevances for ReLU).

    Cost: one forward and one backward pass (plus a forward pass when the result must be differentiable).

    Args:
      model: the ``nn.Module``, or a function calling modules (the leaf modules of those it reaches directly
        get the rules: closure cells, defaults, globals, as :func:`fattr.split` finds them).
      inputs: a tensor ``(B, ...)`` or a tuple of them (floating point).
      target: the output to attribute: None, int, tuple, or one entry per example.
      args: extra positional arguments of ``model``; ``kwargs``: keyword arguments.
      rules: ``{submodule or its dotted name: rule}``, overriding the modules' ``rule`` attributes and
        the defaults.
      return_delta: also return Captum's convergence delta, ``output - sum(relevances)`` per example (zero
        for a bias-free network of z-rules as ``epsilon`` goes to 0).

    Returns:
      Relevances shaped like ``inputs`` (they sum to about the target output); with ``return_delta``,
      ``(relevances, delta)`` with ``delta`` of shape ``(B,)``.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.ReLU(),
      ...                             torch.nn.Linear(4, 2, bias=False)).double()
      >>> x = torch.rand(5, 3, dtype=torch.float64)
      >>> relevance, delta = fattr.lrp(model, x, target=1, return_delta=True)
      >>> relevance.shape, bool(delta.abs().max() < 1e-6)
      (torch.Size([5, 3]), True)
      >>> gamma = fattr.lrp(model, x, target=1, rules={"0": fattr.GammaRule(gamma=0.5)})
    """
    xs, was_tuple, tgt, args = boundary(model, inputs, target, args, kwargs, "model")
    check_bool("return_delta", return_delta)
    rule_plan = plan(model, rules)
    rel, out = relevances(lambda *v: call(model, v[:len(xs)], v[len(xs):]), xs, args, tgt, rule_plan, model=model)
    result = structure.restore(rel, was_tuple)
    return (result, _delta(rel, out)) if return_delta else result


def layer_lrp(model: ModelLike, layer: LayerLike, inputs: InputsLike, *, target: TargetLike = None,
              args: ArgsLike = (), kwargs: KwargsLike = None, rules: Optional[Mapping[Any, Any]] = None,
              return_delta: bool = False, attribute_to_layer_input: bool = False) -> WithDelta:
    """LRP relevance of a layer's output or input (Captum's LayerLRP).

    The relevance reaching ``layer``'s output (or, with ``attribute_to_layer_input``, the relevance its
    rule hands to its input), with the rules of :func:`fattr.lrp`: the model is split at the layer
    (:func:`fattr.split`) and the rules run on the tail. At the model's last layer the output relevance
    is the target output at the target's position and zero elsewhere, as in Captum.

    Args:
      model: the ``nn.Module`` (or a function calling modules, as in :func:`fattr.lrp`).
      layer: a submodule of ``model`` or its dotted name (one layer; a module object for a function).
      inputs, target, args, kwargs, rules: as in :func:`fattr.lrp`.
      return_delta: also return ``output - sum(layer relevances)`` per example (Captum's delta).
      attribute_to_layer_input: the relevance of the layer's input instead of its output.

    Returns:
      Relevances shaped like the layer's activation (a tuple when it has several tensors); with
      ``return_delta``, ``(relevances, delta)``, ``delta`` of shape ``(B,)``.

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.ReLU(),
      ...                             torch.nn.Linear(4, 2, bias=False)).double()
      >>> x = torch.rand(5, 3, dtype=torch.float64)
      >>> relevance, delta = fattr.layer_lrp(model, "1", x, target=0, return_delta=True)
      >>> relevance.shape, bool(delta.abs().max() < 1e-6)
      (torch.Size([5, 4]), True)
    """
    xs, _, tgt, args = boundary(model, inputs, target, args, kwargs, "model")
    check_bool("return_delta", return_delta)
    check_bool("attribute_to_layer_input", attribute_to_layer_input)
    rule_plan = plan(model, rules)
    lf = LayerFunction(model, layer, attribute_to_layer_input, exportable=False)  # the rules see torch functions
    acts, rest = lf.head(xs, args)
    rel, out = relevances(lf.function(), acts, rest, tgt, rule_plan, model=lf.model)
    result = lf.restore(rel, rest)
    return (result, _delta(rel, out)) if return_delta else result
