"""``split(model, layer)``: a model as two pure functions meeting at a layer.

Tracing and partitioning a model costs milliseconds, more than a layer method on
a small model, so plans are shared across splits and calls: a process-wide cache
keyed by the model (referred to weakly: a model is never kept alive by it, and
nothing is stored on it), the layers, ``attribute_to_layer_input`` and the
specialisation. The splits layer methods make are shared too (made once per model,
layers and options; they refer to the model and layers weakly): only
:func:`split` hands out one of the caller's own. Every ``head`` call checks the model against the plan's
:func:`.fingerprint.fingerprint` (cheaply first: :mod:`.watch`) and retraces when it
differs (a submodule replaced, ``train()`` / ``eval()``, a hook added, a Python
attribute such as a flag changed). Parameter and buffer values are not part of it:
they are read at call time.

A head call is two parts: ``find`` (the plan for these values: caches, fingerprint,
``last``, the fallback's warning, all its side effects) and ``run`` (the plan run on
the values, a function of them only, which a recomputation repeats).

Under ``torch.compile`` the rule is: the split is built and its plan found when Dynamo
traces the call, as ordinary Python (:func:`..compiled.at_trace_time`; a torch.fx
capture happens then, one a torch.export needs on zeros of the inputs' shapes and
dtypes); the compiled code runs the plan, held as a constant. Dynamo guards on what
that run reads (the modules called, their parameters and modes, the shapes, the grad
mode) and on the scalar attributes of the modules whose forward was traced
(:func:`.graph.watch`), and retraces, finding the plan again, when one changes. Other
changes the fingerprint covers (a hook added to, or a non-scalar attribute replaced on,
a module whose forward was traced) are not seen by compiled code: call
``torch._dynamo.reset()`` after them.
"""
from __future__ import annotations

import threading
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Set, Tuple, cast

import torch
from torch import nn
from torch.utils import _pytree as pytree

from ..base import LayerLike, ModelLike
from ..errors import Shown, check_bool, fail
from ..arguments import Keywords, as_args
from ..calling import PerModule, explained, modules_of
from ..compiled import at_trace_time, dynamo_tracing
from . import export, fingerprint, graph, locking, substitute, watch
from .capture import Untraceable
from .resolve import registrations, resolve, resolve_in, submodule


class CaptureWarning(UserWarning):
    """A layer method could not capture the model's graph and runs the whole model per step instead."""


@dataclass(frozen=True, eq=False)
class Token:
    """How a split runs for one input signature (shared by the splits of one model and layer):
    ``kind`` is ``"fx"`` (a torch.fx graph), ``"export"`` (a torch.export graph) or
    ``"substitute"`` (the fallback; ``reason`` says why)."""

    kind: str
    plan: Any = None
    reason: str = ""

    @property
    def traced(self) -> bool:
        """True when the head ran a captured graph, False on the substitution fallback."""
        return self.kind != "substitute"

    def __repr__(self) -> str:
        return f"<fattr split: {self.kind}{': ' + self.reason if self.reason else ''}>"


@dataclass(frozen=True, eq=False)
class Ticket:
    """The last entry of ``rest``: the :class:`Token` the head ran and the split it belongs to
    (``owner``: ``(id(model), layer ids, attribute_to_layer_input)``); opaque to users."""

    token: Token
    owner: Tuple[Any, ...]
    traced = property(lambda self: self.token.traced)
    reason = property(lambda self: self.token.reason)
    plan = property(lambda self: self.token.plan)
    kind = property(lambda self: self.token.kind)
    # what the head may read besides the model's own tensors: a torch.fx plan's constants (a global tensor
    # ``forward`` reads); unknown (None) for the fallback, which runs the model; none for an export (it refuses)
    outside = property(lambda self: tuple(self.token.plan.constants.values()) if self.token.kind == "fx"
                       else (None,) if self.token.kind == "substitute" else ())

    def __repr__(self) -> str:
        return repr(self.token)


_warned: Set[Tuple[Any, ...]] = set()


def _warn_fallback(f: Any, labels: Sequence[str], reason: str) -> None:
    """One :class:`CaptureWarning` per (model class, layer) and reason."""
    key = (type(f).__qualname__ if isinstance(f, nn.Module) else getattr(f, "__qualname__", type(f).__name__),
           tuple(labels), reason)
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(CaptureWarning(
        f"fattr could not capture the graph of {key[0]} for {', '.join(labels)}: {reason}. "
        "It falls back to running the whole model for every step (correct, but slower)."), stacklevel=5)


# ---------------------------------------------------------------------------- the shared plans

_MAX_PLANS = 32  # per model (layers x specialisations); the least recently used is dropped first
_lock = threading.Lock()
_plans = PerModule()  # model -> {key: (fingerprint, token, watch)}
# model -> {the layers as asked for, and options: (its split, the layers' dotted names)}: made once, not per call
_SPLITS = PerModule()


def _entry(model: nn.Module, key: Hashable) -> Optional[Tuple[Hashable, Token, Optional[watch.Watch]]]:
    """The cached ``(fingerprint, token, watch)`` for ``(model, key)``, made the most recently used."""
    with _lock:
        plans = _plans.of(model)
        hit = plans.pop(key, None) if plans is not None else None
        if hit is not None:
            plans[key] = hit
    return hit


def _shared(model: nn.Module, key: Hashable, fp: Hashable, noted: Optional[watch.Watch],
            make: Callable[[], Token]) -> Token:
    """The cached token for ``(model, key)`` if its fingerprint is ``fp``; otherwise ``make()``, cached.
    Either way ``noted``, the watch recorded with ``fp`` (before a capture, which may write the model's
    dicts and restore them), is kept with it."""
    hit = _entry(model, key)
    token = hit[1] if hit is not None and hit[0] == fp else make()
    with _lock:
        plans = _plans.of(model)
        if plans is None:
            plans = {}
            _plans.put(model, plans)
        plans.pop(key, None)
        plans[key] = (fp, token, noted)
        while len(plans) > _MAX_PLANS:
            del plans[next(iter(plans))]
    return token


# ---------------------------------------------------------------------------- under torch.compile
# Dynamo cannot trace a capture, a lock or a cache, and must not see a mutation inside the function a
# compiled recomputation wraps: see the module docstring.

_TENSOR, _KEYWORDS = "<fattr: a tensor>", "<fattr: keywords>"


def _described(values: Sequence[Any]) -> Tuple[Any, ...]:
    """``values`` with each tensor replaced by its (static) shape, dtype and device, and each
    :class:`Keywords` by a plain tuple (Dynamo hands over an object made in the traced call without its
    slots): constants Dynamo can hand to a function it runs rather than traces."""
    return tuple([(_KEYWORDS, v.names, _described(v.values)) if isinstance(v, Keywords)
                  else (_TENSOR, tuple(v.shape), v.dtype, v.device) if isinstance(v, torch.Tensor) else v
                  for v in values])


def _examples(described: Sequence[Any]) -> Tuple[Any, ...]:
    """The values :func:`_described` described, zeros in place of the tensors (what a capture reads:
    shapes and dtypes)."""
    return tuple([torch.zeros(d[1], dtype=d[2], device=d[3]) if _tag(d) == _TENSOR
                  else Keywords(d[1], _examples(d[2])) if _tag(d) == _KEYWORDS else d for d in described])


def _tag(d: Any) -> Optional[str]:
    return d[0] if isinstance(d, tuple) and d and isinstance(d[0], str) else None


def _found(find: Callable[..., Tuple["Ticket", Any]], *described: Any) -> "Ticket":
    return find(_examples(described), None)[0]


def _built(model: Any, layer: Any, attribute_to_layer_input: Any, name: str, allow_list: bool,
                         exportable: bool, side: str, was_list: bool, *layers: Any) -> "Split":
    return build(model, list(layers) if was_list else layer, attribute_to_layer_input, name=name,
                 allow_list=allow_list, exportable=exportable, side=side)


# ---------------------------------------------------------------------------- split


@dataclass(frozen=True)
class Split:
    """A split: ``head``, ``tail`` and the resolved layers.

    Attributes:
      head: ``head(*inputs, *args) -> (activation, rest)``.
      tail: ``tail(activation, rest) -> output``.
      layers: the resolved layer modules.
      was_list: ``layer`` was a list (the activation is then a list, one entry per layer).
      last: the token of the latest ``head`` call (how it was captured; compiled calls: of the latest
        trace), or None before it.
      owner: the module whose parameters and training mode count (the model, the one module a
        function uses, or a container of the modules it uses); None when a function exposes none.
      model: the model (or function) it splits.
      to_input: it splits at the layers' inputs (``attribute_to_layer_input``).
      exportable: it may use torch.export when torch.fx cannot trace the model.
      session: makes a ``head`` for the calls of one attribution (internal): it checks the model's
        fingerprint at its first call per input signature only, as ``tail`` trusts the head's token.
    """

    head: Callable[..., Tuple[Any, Tuple[Any, ...]]]
    tail: Callable[[Any, Any], Any]
    was_list: bool
    last: List[Optional[Token]]
    to_input: bool = False
    exportable: bool = True
    session: Optional[Callable[[], Callable[..., Tuple[Any, Tuple[Any, ...]]]]] = field(
        default=None, repr=False, compare=False)
    # (model, owner, *layers) as functions returning them: weak references for a module's shared split
    refs: Tuple[Callable[[], Any], ...] = field(default=(), repr=False, compare=False)

    @property
    def model(self) -> Any:
        return self.refs[0]()

    @property
    def owner(self) -> Optional[nn.Module]:
        return cast(Optional[nn.Module], self.refs[1]())

    @property
    def layers(self) -> Tuple[nn.Module, ...]:
        return tuple([r() for r in self.refs[2:]])

    # unpacks to (head, tail)
    def __iter__(self) -> Any:
        return iter((self.head, self.tail))

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> Any:
        return (self.head, self.tail)[i]

    @property
    def captured(self) -> Optional[bool]:
        """Whether the latest ``head`` call ran a captured graph (None before the first call)."""
        token = self.last[0]
        return None if token is None else token.traced

    @property
    def reason(self) -> Optional[str]:
        """Why the latest ``head`` call could not capture the graph (None when it did, or before it)."""
        token = self.last[0]
        return None if token is None or token.traced else token.reason


def build(model: Any, layer: Any, attribute_to_layer_input: bool = False, *, name: str = "layer",
          allow_list: bool = True, exportable: bool = True, side: str = "attribute_to_layer_input",
          shared: bool = True) -> Split:
    """Resolve ``layer`` now; find or build the partition at each ``head`` call.

    ``model`` is an ``nn.Module`` (``layer`` a submodule or its dotted name) or any callable
    whose computation calls ``layer`` (a module object). The partition is, in order of
    preference, the model's torch.fx graph (modules only), its torch.export graph (for one
    input signature: structure, dtypes and sizes other than the batch), or the substitution
    fallback, with a :class:`CaptureWarning`. Partitions are shared through the process-wide
    cache (see the module docstring). ``exportable=False`` skips torch.export: an exported graph
    calls ATen operators, which a ``TorchFunctionMode`` (DeepLift's rules) does not see.
    ``layer`` may be a :class:`Split` of ``model`` (:func:`_reuse`; ``side`` names the argument
    ``attribute_to_layer_input`` comes from): it is used as it is. A module's split is ``shared`` by the
    calls that ask for the same one (:data:`_SPLITS`); ``shared=False`` makes one of the caller's own.
    """
    if isinstance(layer, Split):
        return _reuse(layer, model, attribute_to_layer_input, name, allow_list, exportable, side)
    if dynamo_tracing():  # built when Dynamo traces the call (see above): a constant of the compiled code
        listed = isinstance(layer, (list, tuple))
        return cast(Split, at_trace_time(_built, model, None if listed else layer, attribute_to_layer_input, name,
                                         allow_list, exportable, side, listed, *(layer if listed else ())))
    is_module = isinstance(model, nn.Module)
    key = _asked(layer, attribute_to_layer_input, name, allow_list, exportable) if is_module and shared else None
    known: Optional[Dict[Hashable, Tuple[Split, Tuple[str, ...]]]] = _SPLITS.of(model) if key is not None else None
    hit = known.get(key) if known is not None else None
    if hit is not None and all([m is not None and submodule(path)(model) is m
                                for path, m in zip(hit[1], hit[0].layers)]):
        return hit[0]  # (the layers are still registered where they were found)
    with locking.reading():  # not while another thread captures: torch.export swaps submodules while it runs
        if is_module:
            layers, was_list = resolve(model, layer, name, allow_list=allow_list)
            roots: List[nn.Module] = [model]
        else:
            roots = modules_of(model)
            layers, was_list = resolve_in(model, roots, layer, name, allow_list=allow_list)
    to_input = check_bool("attribute_to_layer_input", attribute_to_layer_input)
    made = _make(model, roots, layers, was_list, to_input, name, exportable, key is not None)
    if key is not None:
        paths = tuple([registrations(model, m)[0] for m in layers])
        with _lock:
            known = _SPLITS.of(model)
            if known is None:
                known = {}
                _SPLITS.put(model, known)
            if len(known) >= _MAX_PLANS:
                known.clear()
            known[key] = made, paths
    return made


def _asked(layer: Any, to_input: Any, *options: Any) -> Optional[Hashable]:
    """The key of a shared split: the layers as asked for (dotted names, module ids) and the options;
    None for anything else (not shared)."""
    items = layer if isinstance(layer, (list, tuple)) else (layer,)
    if type(to_input) is not bool or not all([isinstance(i, (str, nn.Module)) for i in items]):
        return None
    return (tuple([i if isinstance(i, str) else id(i) for i in items]), type(layer), to_input) + options


def _make(model: Any, roots: List[nn.Module], layers: Tuple[nn.Module, ...], was_list: bool, to_input: bool,
          name: str, exportable: bool, shared: bool) -> Split:
    """The split's closures. A ``shared`` split (a module's, :data:`_SPLITS`) refers to the model and the
    layers weakly (each closure looks them up when it runs, while its caller holds the model); any other
    holds what it reads."""
    is_module = isinstance(model, nn.Module)
    labels = [f"{name}[{i}]" for i in range(len(layers))] if was_list else [name]
    owner = (id(model), tuple([id(m) for m in layers]), to_input)
    last: List[Optional[Token]] = [None]
    refs = (_ref(model, shared), _ref(_owner(roots), shared), *[_ref(m, shared) for m in layers])
    del layers
    if shared:
        del model, roots

    def parts() -> Tuple[Any, List[nn.Module], Tuple[nn.Module, ...]]:
        """``(model, roots, layers)``, looked up."""
        f = refs[0]()
        return f, [f] if shared else roots, tuple([r() for r in refs[2:]])

    def make_fx(concrete: Dict[str, Any]) -> Token:
        model, _, layers = parts()
        try:
            return Token("fx", graph.plan(model, layers, labels, to_input, concrete))
        except Untraceable as e:
            return Token("substitute", reason=str(e))

    def make_export(values: Tuple[Any, ...], n: int) -> Token:
        if not exportable:
            return Token("substitute", reason="DeepLift's rules apply to torch functions, which torch.export turns "
                         "into ATen operators")
        model, roots, layers = parts()
        fqns = export.qualified_names(roots, layers)
        if fqns is None:
            return Token("substitute", reason="the layer is not inside a module the function exposes")
        devices = sorted({t.device.index or 0 for t in pytree.tree_leaves(values)
                          if isinstance(t, torch.Tensor) and t.device.type == "cuda"})
        try:
            plan = export.capture(model, roots, values, n, fqns, to_input)
            # checked once against the model itself: its head gives the layer's activation (the structure
            # a tuple-returning layer has, and the values, drawing the same random numbers)
            with torch.no_grad(), torch.random.fork_rng(devices=devices), locking.reading():
                state = torch.get_rng_state()
                ours, _ = export.run_head(plan, roots, values)
                torch.set_rng_state(state)
                theirs, _ = substitute.run_head(model, layers, labels, to_input, values)
            return Token("export", export.matched(plan, ours, theirs))
        except Untraceable as e:
            return Token("substitute", reason=str(e))

    def cached(k: Hashable, make: Callable[[], Token], memo: Optional[Dict[Hashable, Token]]) -> Token:
        if memo is not None and k in memo:  # checked by this session's first head (one attribution call)
            return memo[k]
        model, roots, layers = parts()
        anchor = roots[0] if roots else None  # whose lifetime the shared plans follow
        was = _entry(anchor, k) if anchor is not None else None  # (used if nothing its fingerprint read changed)
        token = was[1] if was is not None and was[2] is not None and watch.unchanged(was[2], roots) else None
        if token is None:
            traced: Set[int] = set()
            try:
                fp = (fingerprint.of_function(roots, traced) if not is_module
                      else fingerprint.fingerprint(model, layers, traced_ids=traced))
            except fingerprint.Uncacheable:
                fp = None
            # uncacheable (nothing tells whether the model changed), or no module to keep it with: per call
            token = make() if fp is None or anchor is None else _shared(anchor, k, fp, watch.record(roots, traced), make)
        if memo is not None:
            memo[k] = token
        return token

    def checked(values: Tuple[Any, ...], memo: Optional[Dict[Hashable, Token]]) -> Tuple[Token, Any]:
        """The token for ``values``, and their binding to ``model.forward`` (a module's)."""
        token: Optional[Token] = None
        bound = None
        model = refs[0]()
        if is_module:
            bound, concrete = graph.specialise(model, values)
            token = cached(("fx", owner[1], to_input, graph.key(concrete)), lambda: make_fx(concrete), memo)
            if token.traced:
                return token, bound
        first = values[0] if values else None
        n = first.shape[0] if isinstance(first, torch.Tensor) and first.dim() > 0 else -1
        sig = export.signature(values, n)
        exported = cached(("export", owner[1], to_input, fingerprint.code_key(model), sig), lambda: make_export(values, n), memo)
        if token is None or exported.traced:
            return exported, bound
        return Token("substitute", reason=f"torch.fx: {token.reason}; torch.export: {exported.reason}"), bound

    def find(values: Tuple[Any, ...], memo: Optional[Dict[Hashable, Token]]) -> Tuple[Ticket, Any]:
        """The plan for ``values`` and their binding to ``model.forward``: every side effect of a head
        call (the caches, the fingerprint, ``last``, the fallback's warning) is here, none in :func:`run`."""
        token, bound = checked(values, memo)
        last[0] = token
        if not token.traced:
            _warn_fallback(refs[0](), labels, token.reason)
        return Ticket(token, owner), bound

    def run(ticket: Ticket, values: Tuple[Any, ...], bound: Any = None) -> Tuple[Any, Tuple[Any, ...]]:
        """The head by ``ticket``'s plan: a function of the values only (recomputations repeat it)."""
        token, model = ticket.token, refs[0]()
        if token.kind == "fx":
            if bound is None:  # under Dynamo (see above)
                bound = graph.specialise(model, values)[0]
                graph.watch(token.plan, model)
            with locking.reading():
                acts, rest = graph.run_head(token.plan, model, bound)
        elif token.kind == "export":
            with locking.reading():
                acts, rest = export.run_head(token.plan, parts()[1], values)
        else:
            acts, rest = substitute.run_head(model, parts()[2], labels, to_input, values)
        return (list(acts) if was_list else acts[0]), rest + (ticket,)

    def run_head(values: Tuple[Any, ...], keywords: Dict[str, Any], memo: Optional[Dict[Hashable, Token]]
                 ) -> Tuple[Any, Tuple[Any, ...]]:
        if keywords:
            values = as_args(values, keywords)
        if dynamo_tracing():  # found when Dynamo traces the call, a constant of the compiled code
            return run(at_trace_time(_found, find, *_described(values)), values)
        ticket, bound = find(values, memo)
        try:
            return run(ticket, values, bound)
        except (RuntimeError, ValueError) as error:  # a clearer error for a cause diagnose recognises
            explained(error, refs[0](), refs[1](), values, ())
            raise

    def head(*values: Any, **keywords: Any) -> Tuple[Any, Tuple[Any, ...]]:
        return run_head(values, keywords, None)

    def session() -> Callable[..., Tuple[Any, Tuple[Any, ...]]]:
        """``head``, checking the model's fingerprint at its first call for each input signature only."""
        memo: Dict[Hashable, Token] = {}
        return lambda *values, **keywords: run_head(values, keywords, memo)

    def tail(activation: Any, rest: Any) -> Any:
        model, n_layers = refs[0](), len(refs) - 2
        if was_list and (not isinstance(activation, (list, tuple)) or len(activation) != n_layers):
            fail("activation", f"a list of {n_layers} activations, one per layer", activation)
        acts = list(activation) if was_list else [activation]
        if not isinstance(rest, tuple) or not rest or not isinstance(rest[-1], Ticket) or rest[-1].owner != owner:
            fail("rest", "the rest tuple returned by this split's head", rest)
        token, carried = rest[-1].token, rest[:-1]
        if token.kind == "substitute":
            return substitute.run_tail(model, parts()[2], labels, to_input, acts, carried)
        if token.kind == "export":
            with locking.reading():
                return export.run_tail(token.plan, parts()[1], acts, carried)
        if len(carried) != len(token.plan.rest):
            fail("rest", "the rest tuple returned by this split's head", rest)
        with locking.reading():
            return token.plan.tail_fn(model, acts, carried)

    return Split(head=head, tail=tail, was_list=was_list, last=last, to_input=to_input, exportable=exportable,
                 session=session, refs=refs)


def _reuse(s: Split, model: Any, attribute_to_layer_input: Any, name: str, allow_list: bool,
           exportable: bool, side: str) -> Split:
    """A split passed as ``layer``: checked against the call (same model, same side of the layer)."""
    if s.model is not model:
        fail(name, "a split of the model it is used with (fattr.split(model, layer))",
             Shown(f"a split of another {type(s.model).__name__}"), "Make the split from this model.")
    if s.was_list and not allow_list:
        fail(name, "a split at one layer (this method takes a single layer)",
             Shown(f"a split at {len(s.layers)} layers"), kind=TypeError)
    if check_bool(side, attribute_to_layer_input) != s.to_input:
        fail(side, f"{s.to_input}, as the split passed as {name} was made with",
             Shown(repr(attribute_to_layer_input)), "Pass the same value, or make a split with this one.")
    if exportable or not s.exportable:
        return s  # else DeepLift's: its rules see torch functions, which an exported graph no longer calls
    return build(model, list(s.layers) if s.was_list else s.layers[0], s.to_input, name=name, exportable=False)


def _ref(obj: Any, weak: bool) -> Callable[[], Any]:
    return weakref.ref(obj) if weak and obj is not None else lambda: obj


def _owner(roots: Sequence[nn.Module]) -> Optional[nn.Module]:
    if len(roots) <= 1:
        return roots[0] if roots else None
    container = nn.ModuleList(roots)  # a new container: the modules themselves are not changed
    container.training = any(m.training for m in roots)
    return container


def split(model: ModelLike, layer: LayerLike, *, attribute_to_layer_input: bool = False) -> Split:
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
    receives; it is reused by later calls and other splits of the same model and
    layer, and traced again when the model's structure, modes, hooks or the
    Python attributes of the modules containing the layer change, or the scalar
    and tensor class attributes and globals their ``forward`` names (globals read
    by other functions it calls are not watched). Tracing briefly patches
    ``torch.nn.Module`` for the whole process (a torch.fx property): fattr's own
    calls wait for each other, other threads running modules meanwhile do not.

    The split is also a handle: pass it as ``layer`` to any method taking a layer
    (of the same ``model`` and ``attribute_to_layer_input``) to resolve the layer once
    and keep the capture across calls (a training loop); it is checked against the
    model at each call as above.

    Args:
      model: the ``nn.Module``.
      layer: a submodule of ``model`` or its dotted name (``"body.1.conv2"``), or
        a list of them (the activation is then a list, one entry per layer, all
        substituted together). Each must run exactly once per forward pass.
      attribute_to_layer_input: split at the layer's input instead of its output.

    Returns:
      A :class:`Split`: unpacks to ``(head, tail)``; a handle for ``layer=``.

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
      >>> s = fattr.split(model, model[1])           # a handle, reused by every call
      >>> [fattr.layer_gradient_x_activation(model, s, x, target=i).shape for i in range(2)]
      [torch.Size([5, 4]), torch.Size([5, 4])]
    """
    return build(model, layer, attribute_to_layer_input, shared=False)
