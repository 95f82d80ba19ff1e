"""The split from the model's torch.fx graph: the prefix runs once, the tail once per step.

The model is traced with every module that does not contain the layer as a leaf
(only the forward code of the layer's ancestors is traced), then the graph's
nodes are partitioned:

* **cut**: the layer's call (its output is the activation), or, with
  ``attribute_to_layer_input``, the layer's positional arguments;
* **tail**: every node downstream of the cut, plus nodes that do not depend on
  the inputs' *data* (parameters, constants, shapes such as ``x.size(0)`` and
  what is computed from them only), which the tail recomputes so that they
  follow the tail's batch size;
* **rest**: the values the tail reads from the prefix (inputs, skip
  connections, a second branch): computed once by the head and carried;
* **head**: everything needed for the cut and the rest.

Head and tail evaluate their nodes against the *live* model passed to them
(submodules and parameters are looked up at call time, so
``torch.func.functional_call`` and parameter updates are seen); a :class:`Plan`
holds no reference to the model. :func:`.fingerprint.fingerprint` summarises everything the
traced graph depends on, so :mod:`.split` can reuse a plan until the model
changes. Models the graph cannot represent faithfully raise :class:`Untraceable`
and use :mod:`.substitute` instead.
"""
from __future__ import annotations

import builtins
import functools
import inspect
import operator
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, cast

import torch
from torch import fx, nn
from torch.fx.node import Node, map_arg

from ..arguments import as_args, unpack
from ..calling import call, writes_buffers
from ..errors import Shown, fail
from . import locking
from .capture import (Untraceable, attributes_kept, check_called_once, clone, refuse_hooks,
                      tail_and_rest, upstream)
from .fingerprint import _MODULE_STATE
from .resolve import registrations, submodule


# Shape and metadata queries: recomputed by the tail (they follow its batch size).
_META_METHODS = {"size", "dim", "ndimension", "numel", "nelement", "get_device", "is_contiguous",
                 "is_floating_point", "is_complex", "element_size"}
_META_ATTRS = {"shape", "ndim", "dtype", "device", "is_cuda", "layout", "is_sparse"}
_INPLACE_OPERATORS = {operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv,
                      operator.imod, operator.ipow, operator.imatmul, operator.iand, operator.ior,
                      operator.ixor, operator.ilshift, operator.irshift, operator.setitem}


_NO_GRAD = "fattr_no_grad"


class _Tracer(fx.Tracer):
    """Traces only the layer's ancestors; keeps tensor constants off the model."""

    def __init__(self, ancestors: Set[int]) -> None:
        super().__init__()
        self._ancestors = ancestors
        self._buffers: Optional[Set[int]] = None
        self.constants: Dict[str, torch.Tensor] = {}

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return id(m) not in self._ancestors

    def create_node(self, *args: Any, **kwargs: Any) -> Node:
        # fx records no context managers: note the nodes created inside ``torch.no_grad()`` blocks
        # (the trace runs with grad enabled) so that they run without grad again (:meth:`_Source.statement`)
        node = super().create_node(*args, **kwargs)
        if not torch.is_grad_enabled():
            node.meta[_NO_GRAD] = True
        return node

    def create_arg(self, a: Any) -> Any:
        # fx stores tensor constants created in forward as attributes of the root
        # module; keep them in our own table instead (nothing is set on the model).
        if isinstance(a, torch.Tensor) and not isinstance(a, nn.Parameter) and a not in self.tensor_attrs:
            if self._buffers is None:
                self._buffers = {id(b) for b in self.root.buffers()}
            if id(a) not in self._buffers:
                name = f"_fattr_constant_{len(self.constants)}"
                self.constants[name] = a
                self.tensor_attrs[a] = name
                return self.create_node("get_attr", name, (), {})
        return super().create_arg(a)


def _ancestors(model: nn.Module, layers: Sequence[nn.Module]) -> Set[int]:
    ids = set()
    for layer in layers:
        for path in registrations(model, layer):
            atoms = path.split(".") if path else []
            for k in range(len(atoms)):
                ids.add(id(model.get_submodule(".".join(atoms[:k]))))
    return ids


_SPECIALISE = (bool, int, float, complex, str, type(None), torch.dtype, torch.device, torch.layout,
               torch.memory_format)


@functools.lru_cache(maxsize=256)
def _signature(forward: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(functools.partial(forward, None))  # as a method: without ``self``


@functools.lru_cache(maxsize=256)
def _positional_only(forward: Callable[..., Any]) -> Optional[Tuple[Tuple[str, ...], Tuple[Any, ...], int]]:
    """For a forward taking only positional parameters: their names, defaults and how many have none
    (the fewest values a call passes); else None."""
    parameters = list(_signature(forward).parameters.values())
    if any(q.kind not in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD) for q in parameters):
        return None
    required = max([i + 1 for i, q in enumerate(parameters) if q.default is inspect.Parameter.empty], default=0)
    return tuple(q.name for q in parameters), tuple(q.default for q in parameters), required


def specialise(model: nn.Module, values: Sequence[Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Bind ``values`` to ``model.forward``: its arguments by name, and the non-tensor scalars (flags,
    modes) among them, which the graph bakes in."""
    forward = model.forward
    func = getattr(forward, "__func__", None)
    own = isinstance(func, types.FunctionType) and getattr(forward, "__self__", None) is model
    positional, keywords = unpack(values)
    simple = _positional_only(func) if own and not keywords else None
    if simple is not None and simple[2] <= len(positional) <= len(simple[0]):
        # the common case (``forward(self, x)``) without inspect's general binding, which costs more per call
        names, defaults, _ = simple
        arguments = dict(zip(names, positional))
        arguments.update(zip(names[len(positional):], defaults[len(positional):]))
        return arguments, {name: v for name, v in arguments.items() if type(v) in _SPECIALISE}
    signature = _signature(func) if own else inspect.signature(forward)
    try:
        bound = signature.bind(*positional, **keywords)
    except TypeError as e:
        fail("inputs", f"inputs, args and kwargs that model.forward{signature} takes",
             Shown(f"{len(positional)} positional values and keywords {sorted(keywords)} ({e})"), kind=TypeError)
    bound.apply_defaults()  # (``*args`` and ``**kwargs`` bind a tuple and a dict: never specialised)
    return dict(bound.arguments), {name: v for name, v in bound.arguments.items() if type(v) in _SPECIALISE}


def key(concrete: Dict[str, Any]) -> Tuple[Any, ...]:
    """A hashable key for a specialisation (``1``, ``1.0`` and ``True`` differ)."""
    return tuple([(name, type(v).__name__, v) for name, v in concrete.items()])


def _named(node: Node) -> str:
    """The target of a ``call_method``, ``call_module``, ``get_attr`` or placeholder node: a name."""
    return cast(str, node.target)


def _is_inplace(node: Node, model: nn.Module) -> bool:
    if node.op == "call_method":
        name = _named(node)
        return (name.endswith("_") and not name.startswith("__")) or name == "__setitem__"
    if node.op == "call_function":
        if node.target in _INPLACE_OPERATORS or node.kwargs.get("inplace") is True:
            return True
        name = getattr(node.target, "__name__", "")
        if name.endswith("_") and not name.startswith("_"):
            return True
        try:
            bound = inspect.signature(cast(Callable[..., Any], node.target)).bind(*node.args, **node.kwargs)
        except (TypeError, ValueError):
            return False
        return bound.arguments.get("inplace") is True
    if node.op == "call_module":
        return getattr(model.get_submodule(_named(node)), "inplace", False) is True
    return False


def _may_mutate(node: Node, model: nn.Module) -> bool:
    """Whether ``node`` may modify a tensor in place (a module fattr cannot see into, not torch.nn's own, might)."""
    if _is_inplace(node, model):
        return True
    return node.op == "call_module" and any(not type(sub).__module__.startswith("torch.nn.")
                                            for sub in model.get_submodule(_named(node)).modules())


@dataclass
class Plan:
    """The partition of one graph for one split (see the module docstring); no reference to the model."""

    concrete: Dict[str, Any]
    placeholders: List[Node]
    constants: Dict[str, torch.Tensor]
    cuts: Tuple[Node, ...]
    to_input: bool
    head_schedule: List[Node]
    head_nodes: Set[Node]
    head_frees: List[List[Node]]
    rest: Tuple[Node, ...]
    tail_nodes: List[Node]
    tail_frees: List[List[Node]]
    output: Node
    tail_mutates: bool  # the tail may modify a tensor in place: it works on copies of what it is given
    watched: Tuple[Tuple[str, str, Any], ...] = ()  # (module path, attribute, value): see :func:`watch`
    head_fn: Callable[..., Tuple[List[Any], Tuple[Any, ...]]] = field(init=False, repr=False)
    tail_fn: Callable[..., Any] = field(init=False, repr=False)
    binding: Tuple[Tuple[str, Any], ...] = field(init=False, repr=False)  # per placeholder: see :func:`run_head`

    def __post_init__(self) -> None:
        # head and tail made into straight-line Python once (:class:`_Source`): interpreting the nodes
        # (their kind, their arguments' structure, the no_grad flag) per call is a large share of a
        # small model's cost, and Dynamo does not trace torch.fx's Node (its args, map_arg)
        self.head_fn, self.tail_fn = _head_fn(self), _tail_fn(self)
        self.binding = tuple([_binding(ph, self.concrete) for ph in self.placeholders])


def _binding(ph: Node, concrete: Dict[str, Any]) -> Tuple[str, Any]:
    """A placeholder's argument name, and its value when the call does not bind that name: the value
    specialised (fx names that placeholder ``<name>_<k>``), or the placeholder's default."""
    name = _named(ph).lstrip("*")
    base = name.rsplit("_", 1)[0]
    return name, concrete[base] if base in concrete else (ph.args[0] if ph.args else None)


def _frees(schedule: List[Node], reads: Callable[[Node], List[Node]], keep: Set[Node]) -> List[List[Node]]:
    """For each step, the values no later step reads (so they can be dropped)."""
    last: Dict[Node, int] = {}
    for i, node in enumerate(schedule):
        last[node] = max(last.get(node, i), i)
        for a in reads(node):
            last[a] = i
    out: List[List[Node]] = [[] for _ in schedule]
    for node, i in last.items():
        if node not in keep:
            out[i].append(node)
    return out


def plan(model: nn.Module, layers: Sequence[nn.Module], labels: Sequence[str], to_input: bool,
         concrete: Dict[str, Any]) -> Plan:
    """Trace ``model`` with every module outside the layers' ancestry as a leaf, specialised to ``concrete``
    (the non-tensor arguments: flags, modes), and partition its graph at ``layers``; :class:`Untraceable`
    when unusable."""
    if any(layer is model for layer in layers):
        raise Untraceable("the layer is the model itself")
    ancestors = _ancestors(model, layers)
    refuse_hooks(m for m in model.modules() if id(m) in ancestors)
    if any("forward" in vars(m) for m in model.modules() if id(m) in ancestors):
        raise Untraceable("a forward is set on a module instance (torch.fx traces the class's)")
    tracer = _Tracer(ancestors)
    with attributes_kept(model.modules()):
        try:
            with locking.writing(), torch.enable_grad():
                graph = tracer.trace(model, concrete_args=dict(concrete) or None)
        except Exception as e:  # any failure to trace means: use the substitution path
            raise Untraceable(f"torch.fx could not trace the model ({type(e).__name__}: {e})") from e
    nodes = list(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    placeholders = [n for n in nodes if n.op == "placeholder"]
    output = next(n for n in nodes if n.op == "output")
    cuts = []
    for layer, label in zip(layers, labels):
        calls = [n for n in nodes if n.op == "call_module" and model.get_submodule(n.target) is layer]
        check_called_once(label, layer, len(calls))
        cuts.append(calls[0])
    cut_set = set(cuts)

    # data-dependence on the inputs (shape queries do not carry it) and the cut's descendants
    meta: Dict[Node, bool] = {}
    data: Set[Node] = set()
    for n in nodes:
        meta[n] = ((n.op == "call_method" and n.target in _META_METHODS)
                   or (n.op == "call_function" and n.target is builtins.getattr and len(n.args) > 1
                       and n.args[1] in _META_ATTRS))
        if n.op == "placeholder" or any(a in data and not meta[a] for a in n.all_input_nodes):
            data.add(n)
    below: Set[Node] = set(cuts) if to_input else set()
    for n in nodes:
        if any(a in below or a in cut_set for a in n.all_input_nodes):
            below.add(n)

    first = min(index[c] for c in cuts)
    for n in nodes[first:]:
        if n in cut_set:  # the layer itself runs in the head (output) or on the substituted input
            continue
        target = n.args[0] if n.args else None
        if _is_inplace(n, model) and not (isinstance(target, Node) and (target in below or target in cut_set)):
            raise Untraceable("the forward modifies, after the layer, a tensor computed before it")

    def tail_reads(n: Node) -> List[Node]:
        if to_input and n in cut_set:  # positional args come from the activation
            kw: List[Node] = []
            map_arg(n.kwargs, kw.append)
            return kw
        return list(n.all_input_nodes)

    # statements: calls whose result is unused (in-place updates, asserts) still run, on their side
    statements = [n for n in nodes if n.op.startswith("call_") and not n.users and n not in cut_set]
    tail_set, rest_set = tail_and_rest(list(output.all_input_nodes) + [n for n in statements if n in below],
                                       lambda n: not to_input and n in cut_set,
                                       lambda n: n in below or meta[n] or n not in data, tail_reads)
    rest = tuple(sorted(rest_set, key=index.__getitem__))

    targets: List[Node] = list(rest) + [n for n in statements if n not in below]
    map_arg(tuple(c.args for c in cuts) if to_input else tuple(cuts), targets.append)  # what the cuts need
    head_set = upstream(targets)
    head_schedule = [n for n in nodes if (n in head_set and n.op != "placeholder") or (to_input and n in cut_set)]
    head_nodes = {n for n in head_set if n.op != "placeholder"}

    def head_reads(n: Node) -> List[Node]:
        reads = list(n.all_input_nodes) if n in head_nodes else []
        if to_input and n in cut_set:
            map_arg(n.args, reads.append)
        return reads

    tail_nodes = [n for n in nodes if n in tail_set]
    out_reads = list(output.all_input_nodes)
    tail_frees = _frees(tail_nodes + [output], lambda n: out_reads if n is output else tail_reads(n), set())[:-1]
    return Plan(concrete=dict(concrete), placeholders=placeholders,
                constants=tracer.constants, cuts=tuple(cuts), to_input=to_input, head_schedule=head_schedule,
                head_nodes=head_nodes, head_frees=_frees(head_schedule, head_reads, set(rest)),
                rest=rest, tail_nodes=tail_nodes, tail_frees=tail_frees, output=output,
                tail_mutates=any(_may_mutate(n, model) for n in tail_nodes), watched=_watched(model, ancestors))


_WATCHED = (bool, int, float, str, type(None))


def _watched(model: nn.Module, ancestors: Set[int]) -> Tuple[Tuple[str, str, Any], ...]:
    """The scalar attributes (``training`` included) of the modules whose forward was traced (``ancestors``):
    the values a traced graph may have baked in (``if self.flag:``), by module path."""
    return tuple((path, name, v) for path, m in model.named_modules() if id(m) in ancestors
                 for name, v in [("training", m.training)] + list(vars(m).items())
                 if name not in _MODULE_STATE - {"training"} and type(v) in _WATCHED and v == v)


def watch(p: Plan, model: nn.Module) -> None:
    """Under Dynamo: read the attributes ``p`` was traced with, so that the compiled code guards on
    them and retraces (finding a new plan) when one changes, as :mod:`.fingerprint` does in eager mode."""
    for path, name, value in p.watched:
        if getattr(submodule(path)(model) if path else model, name) != value:  # a guard, never true
            raise RuntimeError(f"fattr: the traced module {path!r} changed its {name!r} during a compiled call")


# ---------------------------------------------------------------------------- evaluation

def call_module(m: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    """``m(*args, **kwargs)`` without writing its buffers (BatchNorm in training mode)."""
    if kwargs or writes_buffers(m):
        return call(m, args, as_args((), kwargs) if kwargs else ())
    return m(*args)  # (the split's callers explain a failure: :func:`..calling.explained`)


class _Source:
    """A plan's head or tail as Python source: a statement per node, each value a local ``v<k>``, each
    object that is not a container (a target, a constant, a submodule getter) a global ``c<k>``."""

    def __init__(self, p: Plan, nodes: Sequence[Node]) -> None:
        self.p, self.lines = p, []  # type: ignore[var-annotated]
        self.globals: Dict[str, Any] = {"_no_grad": torch.no_grad, "_clone": clone, "_call": call_module}
        self.names = {n: f"v{k}" for k, n in enumerate(nodes)}

    def const(self, value: Any) -> str:
        name = f"c{len(self.globals)}"
        self.globals[name] = value
        return name

    def arg(self, a: Any) -> str:
        """The expression of ``a`` (``map_arg``'s result: containers rebuilt, a namedtuple with its type)."""
        if isinstance(a, Node):
            return self.names[a]
        if isinstance(a, (tuple, list)):
            items = "".join(f"{self.arg(x)}, " for x in a)
            if isinstance(a, list):
                return f"[{items}]"
            return f"{self.const(type(a))}({items})" if hasattr(a, "_fields") else f"({items})"
        if isinstance(a, dict):
            return "{" + "".join(f"{self.const(k)}: {self.arg(v)}, " for k, v in a.items()) + "}"
        if isinstance(a, slice):
            return f"slice({self.arg(a.start)}, {self.arg(a.stop)}, {self.arg(a.step)})"
        return self.const(a)

    def statement(self, n: Node, value: str) -> None:
        """``v<n> = value``, inside ``torch.no_grad()`` where the forward wrote it in such a block."""
        if n.meta.get(_NO_GRAD):
            self.lines += ["with _no_grad():", f"    {self.names[n]} = {value}"]
        else:
            self.lines.append(f"{self.names[n]} = {value}")

    def node(self, n: Node) -> None:
        args = "".join(f"{self.arg(a)}, " for a in n.args)
        kwargs = "".join(f"**{{{k!r}: {self.arg(v)}}}, " for k, v in n.kwargs.items())
        if n.op == "call_function":
            self.statement(n, f"{self.const(n.target)}({args}{kwargs})")
        elif n.op == "call_method":
            rest = "".join(f"{self.arg(a)}, " for a in n.args[1:])
            self.statement(n, f"getattr({self.arg(n.args[0])}, {_named(n)!r})({rest}{kwargs})")
        elif n.op == "call_module":
            self.statement(n, f"_call({self.const(submodule(_named(n)))}(model), ({args}), {self.arg(dict(n.kwargs))})")
        else:  # get_attr (no schedule holds a placeholder or the output): the trace's constant or the model's
            constant = self.p.constants.get(_named(n))
            self.statement(n, self.const(constant) if constant is not None else
                           f"{self.const(operator.attrgetter(_named(n)))}(model)")

    def function(self, name: str, parameters: Sequence[str], result: str) -> Callable[..., Any]:
        body = "".join(f"    {line}\n" for line in self.lines + [f"return {result}"])
        exec(compile(f"def {name}({', '.join(['model', *parameters])}):\n{body}", f"<fattr {name}>", "exec"),
             self.globals)
        return cast(Callable[..., Any], self.globals[name])


def _head_fn(p: Plan) -> Callable[..., Tuple[List[Any], Tuple[Any, ...]]]:
    """``head(model, *placeholder values) -> (activations, rest)``: one activation per cut (cloned)."""
    src = _Source(p, p.placeholders + p.head_schedule)
    cut = {c: f"a{i}" for i, c in enumerate(p.cuts)}
    for n, frees in zip(p.head_schedule, p.head_frees):
        if p.to_input and n in cut:  # the layer's positional arguments
            src.lines.append(f"{cut[n]} = _clone({src.arg(n.args[0] if len(n.args) == 1 else tuple(n.args))})")
        if n in p.head_nodes:
            src.node(n)
            if not p.to_input and n in cut:
                src.lines.append(f"{cut[n]} = _clone({src.names[n]})")
        src.lines += [f"{src.names[f]} = None" for f in frees]
    return src.function("head", [src.names[ph] for ph in p.placeholders],
                        f"[{', '.join(cut.values())}], ({''.join(src.names[r] + ', ' for r in p.rest)})")


def _tail_fn(p: Plan) -> Callable[..., Any]:
    """``tail(model, activations, rest) -> output``, the cut values replaced by ``activations``. Neither
    ``activations`` nor ``rest`` is modified: a tail that may work in place gets copies."""
    src = _Source(p, list(p.rest) + list(p.cuts) + p.tail_nodes)
    own = "_clone" if p.tail_mutates else ""
    acts = [f"a{i}" for i in range(len(p.cuts))]
    src.lines += [f"{', '.join(acts)}, = activations"] + [f"{src.names[r]} = {own}(r[{i}])" for i, r in enumerate(p.rest)]
    if not p.to_input:
        src.lines += [f"{src.names[c]} = {own}({a})" for c, a in zip(p.cuts, acts)]
    substituted = dict(zip(p.cuts, acts)) if p.to_input else {}
    for n, frees in zip(p.tail_nodes, p.tail_frees):
        if n in substituted:  # the layer, on the given activation
            a = substituted[n]
            src.lines.append(f"{a} = {own}({a})")
            src.statement(n, f"_call({src.const(submodule(_named(n)))}(model), {a} if isinstance({a}, tuple) "
                             f"else ({a},), {src.arg(dict(n.kwargs))})")
        else:
            src.node(n)
        src.lines += [f"{src.names[f]} = None" for f in frees]
    return src.function("tail", ["activations", "r"], src.arg(p.output.args[0]))


def run_head(p: Plan, model: nn.Module, arguments: Dict[str, Any]) -> Tuple[List[Any], Tuple[Any, ...]]:
    """``(activations, rest)``: one activation per cut (cloned), and the carried values (``p`` is ``model``'s;
    ``arguments`` by name, as :func:`specialise` binds them). ``p.tail_fn(model, activations, rest)`` is
    the model's output with the cut values replaced by ``activations``."""
    return p.head_fn(model, *[arguments[name] if name in arguments else value for name, value in p.binding])
