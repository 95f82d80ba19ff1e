"""``split(model, layer)``: a model as two pure functions meeting at a layer."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from torch import nn

from ..errors import check_bool, fail
from . import graph, locking, substitute
from .resolve import resolve


class Token:
    """The last entry of ``rest``: which partition the tail must run (opaque to users)."""

    __slots__ = ("plan", "reason")

    def __init__(self, plan: Optional[graph.Plan], reason: str) -> None:
        self.plan = plan
        self.reason = reason

    @property
    def traced(self) -> bool:
        """True when the head ran the fx partition, False on the substitution fallback."""
        return self.plan is not None

    def __repr__(self) -> str:
        return f"<fattr split: {'traced graph' if self.plan is not None else 'substitution: ' + self.reason}>"


@dataclass(frozen=True)
class Split:
    """A split: ``head``, ``tail`` and the resolved layers.

    Attributes:
      head: ``head(*inputs, *args) -> (activation, rest)``.
      tail: ``tail(activation, rest) -> output``.
      layers: the resolved layer modules.
      was_list: ``layer`` was a list (the activation is then a list, one entry per layer).
    """

    head: Callable[..., Tuple[Any, Tuple[Any, ...]]]
    tail: Callable[[Any, Any], Any]
    layers: Tuple[nn.Module, ...]
    was_list: bool


def build(model: nn.Module, layer: Any, attribute_to_layer_input: bool = False, *, name: str = "layer",
          allow_list: bool = True) -> Split:
    """Resolve ``layer`` now; trace and partition at the first ``head`` call.

    The graph is specialised to the non-tensor arguments (flags, modes) of that
    call; a call with other values builds (and keeps) another partition.
    """
    layers, was_list = resolve(model, layer, name, allow_list=allow_list)
    to_input = check_bool("attribute_to_layer_input", attribute_to_layer_input)
    labels = [f"{name}[{i}]" for i in range(len(layers))] if was_list else [name]
    tokens: Dict[Tuple[Any, ...], Token] = {}
    lock = threading.Lock()

    def token_for(concrete: Dict[str, Any]) -> Token:
        k = graph.key(concrete)
        with lock:
            token = tokens.get(k)
        if token is None:
            try:
                token = Token(graph.plan(model, layers, labels, to_input, concrete), "")
            except graph.Untraceable as e:
                token = Token(None, str(e))
            with lock:
                token = tokens.setdefault(k, token)
        return token

    def head(*values: Any) -> Tuple[Any, Tuple[Any, ...]]:
        bound, concrete = graph.specialise(model, values)
        token = token_for(concrete)
        if token.plan is not None:
            with locking.reading():
                acts, rest = graph.run_head(token.plan, bound)
        else:
            acts, rest = substitute.run_head(model, layers, labels, to_input, values)
        return (list(acts) if was_list else acts[0]), rest + (token,)

    def tail(activation: Any, rest: Any) -> Any:
        if was_list:
            if not isinstance(activation, (list, tuple)) or len(activation) != len(layers):
                fail("activation", f"a list of {len(layers)} activations, one per layer", activation)
            acts = list(activation)
        else:
            acts = [activation]
        if not isinstance(rest, tuple) or not rest or not isinstance(rest[-1], Token):
            fail("rest", "the rest tuple returned by this split's head", rest)
        token, carried = rest[-1], rest[:-1]
        if token.plan is None:
            return substitute.run_tail(model, layers, labels, to_input, acts, carried)
        if token.plan.model is not model or len(carried) != len(token.plan.rest):
            fail("rest", "the rest tuple returned by this split's head", rest)
        with locking.reading():
            return graph.run_tail(token.plan, acts, carried)

    return Split(head=head, tail=tail, layers=layers, was_list=was_list)


def split(model: nn.Module, layer: Any, *, attribute_to_layer_input: bool = False
          ) -> Tuple[Callable[..., Tuple[Any, Any]], Callable[[Any, Any], Any]]:
    """Split ``model`` at ``layer`` into two pure functions, ``head`` and ``tail``.

    ``tail(*head(*inputs, *args)) == model(*inputs, *args)``. ``head`` returns
    ``(activation, rest)``: the layer's output (its positional input with
    ``attribute_to_layer_input=True``; a tuple when there are several) and
    ``rest``, a tuple of everything else the rest of the model reads (the inputs,
    skip connections, other branches; its last entry is an opaque token naming
    the partition). ``tail(activation, rest)`` runs the rest of
    the model with the given activation, so a path method varies the activation
    and holds ``rest`` at the input's values, as Captum's layer hooks do.

    The split is built from the model's ``torch.fx`` graph: the head runs the
    prefix once and the tail runs only what follows the layer, which is what
    makes fattr's layer methods fast. Shape queries (``x.size(0)``) are
    recomputed by the tail, so the tail accepts an activation with more rows
    than the head produced (path steps folded into the batch); tensors in
    ``rest`` with one row per example must then be tiled alongside (fattr's
    methods do this, with the ``args`` rule: a tensor whose dim 0 is the batch
    size is per example). A model fx cannot trace (data-dependent control flow,
    hooks on the traced modules, in-place updates after the layer of tensors
    computed before it) falls back to running the whole model with the layer's
    activation substituted: the same results, but the tail is then a full
    forward pass (slower) and ``rest`` is the inputs and args.

    Both functions are pure: no hooks, no attributes set on the model, buffers
    untouched (BatchNorm in training mode does not update its statistics),
    differentiable with respect to parameters on both sides of the layer.
    Parameters are looked up at call time. The graph is traced at the first
    ``head`` call and specialised to the non-tensor arguments (flags, modes) it
    receives; split again after changing the model's structure or Python
    attributes. Tracing briefly patches
    ``torch.nn.Module`` for the whole process (a torch.fx property): fattr's own
    calls wait for each other, other threads running modules meanwhile do not.

    Args:
      model: the ``nn.Module``.
      layer: a submodule of ``model`` or its dotted name (``"body.1.conv2"``), or
        a list of them (the activation is then a list, one entry per layer, all
        substituted together). Each must run exactly once per forward pass.
      attribute_to_layer_input: split at the layer's input instead of its output.

    Returns:
      ``(head, tail)``.

    Raises:
      ValueError: ``layer`` is not in ``model`` (when splitting), or it runs zero
        or several times in a forward pass (at the first ``head`` call).

    Example:
      >>> import torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
      >>> head, tail = fattr.split(model, "1")
      >>> x = torch.randn(5, 3)
      >>> activation, rest = head(x)
      >>> activation.shape
      torch.Size([5, 4])
      >>> torch.allclose(tail(activation, rest), model(x))
      True
    """
    s = build(model, layer, attribute_to_layer_input)
    return s.head, s.tail
