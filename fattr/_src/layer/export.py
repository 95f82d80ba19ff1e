"""The split from ``torch.export``: for models torch.fx cannot trace (Hugging Face transformers).

``torch.export.export(..., strict=False)`` runs the model's Python code on fake tensors and
records its ATen operations, so shape-dependent control flow, slicing with traced sizes and
the other constructs that stop ``torch.fx.symbolic_trace`` are fine. The batch dimension is
exported as dynamic (one symbol shared by every per-example tensor), so the tail runs with
path steps folded into the batch; other sizes (the sequence length) are specialised, and a
plan is made per input signature (:func:`signature`). The layer's call is kept as one
boundary (``preserve_module_call_signature``), which names the graph values that enter and
leave it; the graph is cut there:

* **cut**: the layer's outputs (or, with ``attribute_to_layer_input``, stand-ins for its
  positional tensor inputs, read only by the layer's own nodes);
* **tail**: what follows the cut, and what does not depend on the inputs' data (parameters,
  constants, sizes), recomputed so that it follows the tail's batch size;
* **rest**: the data the tail reads from before the cut (the attention mask, skip connections),
  computed once by the head; each has the batch at dim 0 or no batch dimension at all;
* **head**: what the cut and the rest need.

Head and tail are ``torch.fx`` graph modules compiled from the exported graph. Parameters and
buffers are graph inputs, read from the live modules at every call (by their qualified
names), so ``functional_call``, parameter updates and gradients with respect to parameters
work; buffer updates recorded by the export (BatchNorm in training mode) are not applied.
"""
from __future__ import annotations

import dataclasses
import threading
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import torch
from torch import fx, nn
from torch.fx.node import Node
from torch.utils import _pytree as pytree

from ..arguments import is_per_example, unpack
from ..compiled import dynamo_tracing
from . import locking
from .capture import Untraceable, attributes_kept, pack, refuse_hooks, tail_and_rest, upstream

_EXPORT_BATCH = 2  # examples in the tensors given to the export (a batch of 1 would be specialised)


class Root(nn.Module):
    """The modules a function uses, registered as children ``m0, m1, ...`` (the export's root)."""

    f: Callable[..., Any]

    def __init__(self, f: Callable[..., Any], modules: Sequence[nn.Module], spec: pytree.TreeSpec,
                 constants: Sequence[Any], where: Sequence[bool]) -> None:
        super().__init__()
        object.__setattr__(self, "f", f)  # not registered: a module ``f`` is the child ``m0`` (one name per module)
        self.spec, self.constants, self.where = spec, list(constants), list(where)
        for i, m in enumerate(modules):
            self.add_module(f"m{i}", m)

    def forward(self, *tensors: Any) -> Any:
        it, const = iter(tensors), iter(self.constants)
        values = pytree.tree_unflatten([next(it) if w else next(const) for w in self.where], self.spec)
        positional, keywords = unpack(values)
        return self.f(*positional, **keywords)


def signature(values: Sequence[Any], n: int) -> Tuple[Any, ...]:
    """What an export specialises to: the structure of the values, each tensor's dtype, device and
    sizes (its batch as ``None`` when it has ``n`` rows), and the other values themselves."""
    leaves, spec = pytree.tree_flatten(tuple(values))
    parts: List[Any] = [spec]
    for v in leaves:
        if isinstance(v, torch.Tensor):
            shape = tuple(v.shape)
            per_example = v.dim() > 0 and shape[0] == n
            parts.append(("T", v.dtype, v.device, (None,) + shape[1:] if per_example else shape))
        else:
            try:
                hash(v)
                parts.append(("V", type(v).__name__, v))
            except TypeError:
                parts.append(("O", id(v)))
    return tuple(parts)


def _is_tensor_valued(n: Node) -> bool:
    return any(isinstance(v, torch.Tensor) for v in pytree.tree_leaves(n.meta.get("val")))


@dataclass(frozen=True)
class Plan:
    """An exported graph cut at the layers (see the module docstring); no reference to the model."""

    head: fx.GraphModule           # (*state, *user tensors) -> (*cut values, *rest)
    tail: fx.GraphModule           # (*cut values, *rest, *state) -> output
    head_state: Tuple[Tuple[str, str], ...]   # (kind, qualified name) per state input of the head
    tail_state: Tuple[Tuple[str, str], ...]
    constants: Dict[str, torch.Tensor]
    n_cuts: int
    rest_batched: Tuple[bool, ...]  # which rest values carry the batch at dim 0
    layouts: Tuple[Tuple[bool, int], ...]  # per layer: (a tuple of values, how many)


def capture(f: Callable[..., Any], roots: Sequence[nn.Module], values: Sequence[Any], n: int,
            fqns: Sequence[str], to_input: bool) -> Plan:
    """The plan of ``f`` called on ``values`` (inputs, then args with keywords), exported and cut at ``fqns``."""
    leaves, spec = pytree.tree_flatten(tuple(values))
    tensors = [v for v in leaves if isinstance(v, torch.Tensor)]
    batched = [t.dim() > 0 and t.shape[0] == n for t in tensors]
    root = Root(f, roots, spec, [v for v in leaves if not isinstance(v, torch.Tensor)],
                [isinstance(v, torch.Tensor) for v in leaves])
    refuse_hooks(root.modules())  # (an export traces every module's forward)
    batch = torch.export.Dim("batch")
    examples = tuple(torch.cat([t[:1]] * _EXPORT_BATCH) if b else t for t, b in zip(tensors, batched))
    dynamic = (tuple({0: batch} if b else None for b in batched),)
    for preserve in (tuple(fqns), ()):  # the layers' calls kept whole if their arguments allow it
        # an export runs the model's code under process-wide patches (like torch.fx): alone (see .locking)
        with locking.writing(), attributes_kept(root.modules()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the export's own advice (register_buffer, deprecations)
            try:
                ep = torch.export.export(root, examples, strict=False, dynamic_shapes=dynamic,
                                         preserve_module_call_signature=preserve)
                break
            except Exception as e:  # a failure to export means: another way, or another split
                first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
                error = Untraceable(f"torch.export could not capture the model ({type(e).__name__}: {first})")
                if not preserve or "pytree flattened inputs" not in str(e):
                    raise error from e
    return _partition(ep, fqns, to_input)


def _partition(ep: Any, fqns: Sequence[str], to_input: bool) -> Plan:
    gm: fx.GraphModule = ep.graph_module
    graph = gm.graph
    sig = ep.graph_signature
    nodes = list(graph.nodes)
    by_name = {n.name: n for n in nodes}
    placeholders = [n for n in nodes if n.op == "placeholder"]
    output = next(n for n in nodes if n.op == "output")
    state: Dict[Node, Tuple[str, str]] = {}
    user: List[Node] = []
    for spec, ph in zip(sig.input_specs, placeholders):
        kind = spec.kind.name
        if kind == "USER_INPUT":
            user.append(ph)
        elif kind in ("PARAMETER", "BUFFER"):
            state[ph] = (kind, spec.target)
        elif kind in ("CONSTANT_TENSOR", "CUSTOM_OBJ"):
            value = ep.constants[spec.target]
            if isinstance(value, torch.Tensor) and value.requires_grad:
                raise Untraceable("the function uses a tensor requiring grad that belongs to no module it "
                                  "exposes (pass the model, or a function closing over it)")
            state[ph] = ("CONSTANT", spec.target)
        else:
            raise Untraceable(f"an exported input of kind {kind}")
    user_outputs = [spec for spec in sig.output_specs if spec.kind.name == "USER_OUTPUT"]
    out_values = list(output.args[0])[-len(user_outputs):] if user_outputs else []

    calls = {e.fqn: e.signature for e in ep.module_call_graph}
    cuts: List[Node] = []
    layouts: List[Tuple[bool, int]] = []
    for fqn in fqns:
        call = calls.get(fqn)
        region = {n for n in nodes if any(path == fqn for path, _ in (n.meta.get("nn_module_stack") or {}).values())}
        if not region:
            raise Untraceable(f"the export kept no call of {fqn!r}")
        if call is None:  # the call's arguments could not be kept (a cache object): cut where its values leave
            if to_input:
                raise Untraceable(f"{fqn!r} is called with arguments torch.export cannot keep")
            leaving = [n for n in nodes if n in region and _is_tensor_valued(n)
                       and any(u not in region for u in n.users)]
            if not leaving:
                raise Untraceable(f"no value of {fqn!r} reaches the rest of the model")
            layouts.append((len(leaving) > 1, len(leaving)))
            cuts.extend(leaving)
            continue
        if to_input:  # a stand-in for each positional tensor input, read by the layer's nodes alone
            n_positional = call.in_spec.child(0).num_leaves if call.in_spec is not None else 0
            names = [getattr(a, "name", None) for a in call.inputs[:n_positional]]
            values = [by_name[name] for name in names if name in by_name]
            if not values:
                raise Untraceable(f"{fqn!r} is called with no positional tensor input")
            for v in values:
                with graph.inserting_after(v):
                    stand_in = graph.call_function(torch.ops.aten.alias.default, (v,))
                stand_in.meta = dict(v.meta)
                for n in region:
                    n.replace_input_with(v, stand_in)
                cuts.append(stand_in)
            layouts.append((len(values) > 1, len(values)))
        else:
            names = [getattr(a, "name", None) for a in call.outputs]
            if not names or any(name not in by_name for name in names):
                raise Untraceable(f"{fqn!r} returns values that are not tensors")
            layouts.append((call.out_spec is not None and not call.out_spec.is_leaf(), len(names)))
            cuts.extend(by_name[name] for name in names)
    nodes = list(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    meta = {n: not _is_tensor_valued(n) and n.op != "placeholder" for n in nodes}
    data: Set[Node] = set()
    for n in nodes:
        if n in user or any(a in data and not meta[a] for a in n.all_input_nodes):
            data.add(n)
    cut_set = set(cuts)
    below: Set[Node] = set()
    for n in nodes:
        if any(a in below or a in cut_set for a in n.all_input_nodes):
            below.add(n)
    tail_set, rest_set = tail_and_rest([a for a in out_values if isinstance(a, Node)], cut_set.__contains__,
                                       lambda n: n in state or n in below or meta[n] or n not in data,
                                       lambda n: n.all_input_nodes)
    rest = sorted(rest_set, key=index.__getitem__)
    symbol = next((t.shape[0] for t in pytree.tree_leaves([n.meta.get("val") for n in user])
                   if isinstance(t, torch.Tensor) and t.dim() > 0 and isinstance(t.shape[0], torch.SymInt)), None)
    batched = []
    for n in rest:
        v = n.meta.get("val")
        sizes = list(v.shape) if isinstance(v, torch.Tensor) else []
        symbolic = [not isinstance(s, int) for s in sizes]
        if any(symbolic[1:]) or (symbolic and symbolic[0] and str(sizes[0]) != str(symbol)):
            raise Untraceable("a value the tail reads from before the layer has the batch in another "
                              "dimension than the first")
        batched.append(bool(symbolic and symbolic[0]))

    shared = set(cuts) | set(rest) | set(user) | set(state)
    for n in nodes:
        if any(a in shared for a in _written(n)):
            raise Untraceable(f"the exported graph modifies an input, a parameter or buffer, or a value "
                              f"shared by head and tail in place ({n.target})")

    # the head: what the cuts and the rest need
    head_set = upstream(list(cuts) + rest)
    head_state = [n for n in placeholders if n in state and n in head_set]
    head = _module(gm, [n for n in nodes if n in head_set], head_state + user, list(cuts) + rest)
    tail_state = [n for n in placeholders if n in state and n in tail_set]
    tail = _module(gm, [n for n in nodes if n in tail_set], list(cuts) + rest + tail_state, out_values,
                   single=len(out_values) == 1)
    return Plan(head=head, tail=tail, head_state=tuple(state[n] for n in head_state),
                tail_state=tuple(state[n] for n in tail_state),
                constants={t: ep.constants[t] for k, t in state.values() if k == "CONSTANT"},
                n_cuts=len(cuts), rest_batched=tuple(batched), layouts=tuple(layouts))


def _written(n: Node) -> List[Node]:
    """The values an in-place ATen op writes (its arguments marked as written in its schema)."""
    schema = getattr(n.target, "_schema", None) if n.op == "call_function" else None
    if schema is None or not schema.is_mutable or n.target is torch.ops.aten.detach_.default:
        return []  # (detach_ changes autograd metadata only)
    written: List[Node] = []
    for i, arg in enumerate(schema.arguments):
        if arg.alias_info is not None and arg.alias_info.is_write:
            value = n.args[i] if i < len(n.args) else n.kwargs.get(arg.name)
            written.extend(v for v in pytree.tree_leaves(value) if isinstance(v, Node))
    return written


def _module(gm: fx.GraphModule, nodes: Sequence[Node], inputs: Sequence[Node], outputs: Sequence[Any],
            single: bool = False) -> fx.GraphModule:
    """A graph module computing ``outputs`` from ``inputs`` by ``nodes`` (copied from ``gm``'s graph)."""
    g = fx.Graph()
    env: Dict[Node, Node] = {}
    for i, n in enumerate(inputs):
        env[n] = g.placeholder(f"in_{i}_{n.name}")
        env[n].meta = dict(n.meta)
    for n in nodes:
        if n in env or n.op == "placeholder":
            continue
        env[n] = g.node_copy(n, lambda a: env[a])
    result = tuple(env[o] if isinstance(o, Node) else o for o in outputs)
    g.output(result[0] if single else result)
    g.eliminate_dead_code()
    return fx.GraphModule(gm, g)


def qualified_names(roots: Sequence[nn.Module], layers: Sequence[nn.Module]) -> Optional[Tuple[str, ...]]:
    """Each layer's name inside :class:`Root` (``m<i>.<path>``), or None when one is in no root."""
    names = []
    for layer in layers:
        found = next((f"m{i}.{path}" if path else f"m{i}" for i, root in enumerate(roots)
                      for path, m in root.named_modules() if m is layer), None)
        if found is None:
            return None
        names.append(found)
    return tuple(names)


@dataclass(eq=False)
class Shared:
    """A value of ``rest`` without a batch dimension whose first size happens to be the batch size:
    hidden from the per-example rule (it must not be tiled with the examples)."""

    value: torch.Tensor


_owners: "weakref.WeakKeyDictionary[nn.Module, Dict[int, List[Any]]]" = weakref.WeakKeyDictionary()
_owners_lock = threading.Lock()


def _owner_modules(names: Tuple[Tuple[str, str], ...], roots: Sequence[nn.Module]) -> List[Any]:
    """The module holding each named parameter or buffer, and the attribute's name. Looked up once per
    plan and root model: a plan is only used after the model's fingerprint (its module tree included)
    matched, so the modules at these paths are the ones found then."""
    key = id(names)
    if dynamo_tracing():  # no lock: found while Dynamo traces, held by the compiled code; read by getattr (guarded)
        return [(module, attr, None) for module, attr, _ in _found_owners(names, roots)]
    with _owners_lock:
        cache = _owners.get(roots[0]) if roots else None
        found = cache.get(key) if cache is not None else None
    if found is not None and found[0] is names:
        return found[1]
    owners = _found_owners(names, roots)
    if roots:
        with _owners_lock:
            _owners.setdefault(roots[0], {})[key] = [names, owners]
    return owners


def _found_owners(names: Tuple[Tuple[str, str], ...], roots: Sequence[nn.Module]) -> List[Any]:
    """Per name ``(module, attribute, registry)``: the registry is the module's ``_parameters`` or
    ``_buffers`` holding it (read directly: ``getattr`` goes through ``nn.Module.__getattr__``), None
    for a constant, a plain attribute, or one its class defines (a parametrization's property)."""
    owners: List[Any] = []
    for kind, name in names:
        if kind == "CONSTANT":
            owners.append((None, name, None))
            continue
        head, _, path = name.partition(".")
        module_path, _, attr = path.rpartition(".")
        module = roots[int(head[1:])].get_submodule(module_path)
        registry = next((r for r in (module._parameters, module._buffers) if attr in r), None)
        owners.append((module, attr, None if hasattr(type(module), attr) else registry))
    return owners


def _state(names: Tuple[Tuple[str, str], ...], roots: Sequence[nn.Module], constants: Dict[str, torch.Tensor]
           ) -> List[torch.Tensor]:
    """The live parameters, buffers and constants a graph reads, by qualified name (``m<i>.<path>``)."""
    return [constants[attr] if module is None else getattr(module, attr) if registry is None else registry[attr]
            for module, attr, registry in _owner_modules(names, roots)]


def matched(p: Plan, ours: Sequence[Any], theirs: Sequence[Any]) -> Plan:
    """``p`` with each layer's structure taken from ``theirs`` (the activations the model itself gives),
    after checking that ``ours`` (the plan's) hold the same tensors; :class:`Untraceable` otherwise."""
    layouts = []
    for (is_tuple, k), a, b in zip(p.layouts, ours, theirs):
        mine = list(a) if is_tuple else [a]
        real = list(b) if isinstance(b, (tuple, list)) else [b]
        if len(real) != k or not all(isinstance(t, torch.Tensor) for t in real):
            raise Untraceable("the captured graph does not give the layer's activation (another structure)")
        for x, y in zip(mine, real):
            if x.shape != y.shape or x.dtype != y.dtype or not torch.allclose(
                    x, y, rtol=1e-4, atol=1e-6 * max(float(y.abs().max()) if y.numel() else 0.0, 1.0)):
                raise Untraceable("the captured graph does not reproduce the layer's activation")
        layouts.append((isinstance(b, (tuple, list)), k))
    return dataclasses.replace(p, layouts=tuple(layouts))


def run_head(p: Plan, roots: Sequence[nn.Module], values: Sequence[Any]) -> Tuple[List[Any], Tuple[Any, ...]]:
    """``(activations, rest)``: one activation per layer (a tuple when the layer gives several)."""
    tensors = [v for v in pytree.tree_leaves(tuple(values)) if isinstance(v, torch.Tensor)]
    out = p.head(*_state(p.head_state, roots, p.constants), *tensors)
    n = tensors[0].shape[0] if tensors and tensors[0].dim() > 0 else -1
    rest = tuple(Shared(r) if not batched and is_per_example(r, n) else r
                 for r, batched in zip(out[p.n_cuts:], p.rest_batched))
    return pack(p.layouts, [t.clone() for t in out[:p.n_cuts]]), rest


def run_tail(p: Plan, roots: Sequence[nn.Module], activations: Sequence[Any], rest: Sequence[Any]) -> Any:
    """The output with the layers' activations given (``rest`` as returned by :func:`run_head`)."""
    flat = [t for (is_tuple, _), a in zip(p.layouts, activations) for t in (a if is_tuple else (a,))]
    carried = [r.value if isinstance(r, Shared) else r for r in rest]
    return p.tail(*flat, *carried, *_state(p.tail_state, roots, p.constants))
