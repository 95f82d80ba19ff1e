"""DeepLift multipliers: one recorded pass over the baselines, one rule pass over the inputs.

1. The baselines' rows go through the model once under a :class:`.Recorder` (and give ``f(baselines)``).
2. The inputs' rows go through the model once under a :class:`.Replayer`; one backward pass of the
   selected outputs then gives the DeepLift multipliers of every row (and the forward ``f(inputs)``).

So the cost is a forward pass over the baselines and a forward and backward pass over
the inputs: less than Captum's forward and backward over both. Methods call
:func:`multipliers_on_demand`: that run keeps no graph, and the result is differentiable on
demand (:mod:`..recompute`); with grad mode on, both passes keep their graph (:mod:`.rules`).
"""
from __future__ import annotations

from typing import Any, Callable, List, Sequence, Tuple

from ..calling import module_of
from ..errors import fail
from ..recompute import checkpoint_aux, reads
from ..base import Tensor, Tensors
from ..targets import Target
from .interception import Recorder, Replayer
from .rules import Constant, rule_pass


def multipliers(forward_x: Callable[..., Any], forward_b: Callable[..., Any], xs: Tensors, bs: Tensors,
                target: Target, *, eps: float) -> Tuple[Tensors, Tensor, Tensor, List[str]]:
    """DeepLift multipliers of the selected output of ``forward_x`` with respect to ``xs``.

    Args:
      forward_x: ``forward_x(*rows)``: the model on the inputs' rows.
      forward_b: ``forward_b(*rows)``: the model on the baselines' rows (the same function
        when nothing else differs between the two).
      xs, bs: the attributed tensors for the inputs and the baselines, row ``i`` of ``bs``
        paired with row ``i`` of ``xs`` (same shapes).
      target: the normalised target for ``n_rows`` rows.
      eps: the rule falls back to the gradient where ``|x - ref| < eps``.

    Returns ``(grads, out_x, out_b, uncovered)``: the multipliers, one tensor per attributed tensor (rows as
    given); the selected outputs on the inputs' and the baselines' rows, shape ``(n_rows,)``; the names of the
    nonlinear calls the rule could not see (for a warning). With grad mode on, the results keep their graph
    (they are differentiable); without, the leaves the rule pass used are declared (:func:`..recompute.reads`).
    """
    for i, x in enumerate(xs):
        if not x.is_floating_point():
            fail(f"inputs[{i}]" if len(xs) > 1 else "inputs", "a floating-point tensor", x,
                 "DeepLift attributes to continuous values; embed integer inputs first.", kind=TypeError)
    n = xs[0].shape[0]
    recorder = Recorder()  # not ``with Recorder() as recorder``: under Dynamo that binds None
    with recorder:
        out_b = forward_b(*(b.clone() for b in bs))
    recorder.check_intact()
    out_b = target.select(out_b, n)
    uncovered: List[str] = []

    def forward(rows: Tensors, constant: Constant) -> Tensor:
        replayer = Replayer(recorder.records, constant, eps, rows)
        with replayer:
            out = forward_x(*rows)
        replayer.check_complete()
        uncovered[:] = replayer.uncovered
        return target.select(out, n)

    out_x, grads = rule_pass(forward, tuple(xs))
    return grads, out_x, out_b, uncovered


def multipliers_on_demand(f: Callable[..., Any], xs: Tensors, bs: Tensors, rest_x: Sequence[Any],
                          rest_b: Sequence[Any], target: Target, *, eps: float, model: Any
                          ) -> Tuple[Tensors, Tensor, Tensor, List[str]]:
    """:func:`multipliers` of ``f(*rows, *rest)`` (``rest_x`` for the inputs' rows, ``rest_b`` for
    the baselines'), computed without a graph and differentiable on demand (:mod:`..recompute`);
    a model in training mode keeps the graph at once."""
    k, kx = len(xs), len(rest_x)
    module = module_of(model)

    def run(tensors: Tensors, rest: Tuple[Any, ...]) -> Tuple[Tensors, List[str]]:
        rx, rb = rest[:kx], rest[kx:]
        grads, out_x, out_b, uncovered = multipliers(lambda *rows: f(*rows, *rx), lambda *rows: f(*rows, *rb),
                                                     tensors[:k], tensors[k:], target, eps=eps)
        if module is not None:  # the baselines' pass kept no graph to walk: count everything the model may read
            reads(module)
        return grads + (out_x, out_b), uncovered

    values, uncovered = checkpoint_aux(run, tuple(xs) + tuple(bs), args=(*rest_x, *rest_b), module=module,
                                       traceable=True)
    return tuple(values[:k]), values[k], values[k + 1], uncovered
