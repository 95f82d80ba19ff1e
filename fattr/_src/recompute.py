"""Values computed without an autograd graph, differentiable on demand by recomputation.

Most calls want an attribution as a value (explaining a model); some want it as a
differentiable function of the parameters and inputs (a training loss). Keeping the
graph of a gradient computation (``create_graph=True``) on every call costs time, and
memory that grows with ``n_steps`` even when ``chunk_size`` is set. So :func:`checkpoint`
computes the value without that graph and, when grad mode is on and the value depends
on tensors that require grad, attaches it to one autograd node whose backward
recomputes it with its graph (same random and autocast states: :class:`Context`) and
differentiates it: activation checkpointing, applied to the attribution. Only calls
that are differentiated pay, one more forward and backward per chunk (about a quarter
more for a training step). It also decides, in one place, when the graph is kept at
once instead: a model in training mode or a recomputation (a checkpoint inside another's
backward), unless memory comes first; a traced call.
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import torch
from torch import nn

from .arguments import split_args
from .base import Tensor, Tensors
from .calling import PerModule, module_of, modules_of, submodules
from . import compiled, tracing
from .twice import twice_differentiable
from .layer.fingerprint import _SCALARS
from .layer.watch import WORKS, dict_version as _version

_next_node = torch._C._autograd._get_sequence_nr  # the sequence number this thread's next autograd node gets
_AUTOCAST = ("cpu", "cuda")
_ACCUMULATE = getattr(torch._C._functions, "AccumulateGrad")  # the type of a leaf's node


class _Local(threading.local):
    """Per thread: ``reads``, the innermost graph-free pass's :class:`_Reads` (None outside one); ``keep``,
    inside :func:`keep_graph`; ``recomputing``, inside a recomputation in backward (its graph is about to
    be differentiated: a checkpoint inside keeps its graph at once). Defaults on the class: every thread
    has them at all times (a compiled call guards on their values, not on whether an eager call set them)."""

    reads: Optional["_Reads"] = None
    keep = False
    recomputing = False


_local = _Local()


class _Reads:
    """The leaves requiring grad a checkpoint's graph-free pass read (``found`` None: unknown), since a
    point in this thread's autograd history (nodes created later have larger sequence numbers)."""

    __slots__ = ("since", "found", "skip", "scans")
    found: Optional[Dict[int, Tensor]]
    skip: Set[int]
    scans: Dict[int, Tuple[Any, ...]]  # the modules' scans (:func:`_scan`) checked during this call

    def __init__(self) -> None:
        self.since, self.found, self.skip, self.scans = _next_node(), {}, set(), {}

    def walk(self, output: Tensor) -> None:
        """The leaves ``output``'s graph reaches; unknown if it reaches a result computed before the call
        (a closure over ``w * scale``: not an input the node can have). Sequence numbers count per thread:
        such a tensor from another thread goes unnoticed, but its leaves are still found."""
        node, found = output.grad_fn, self.found
        if node is None or found is None:
            if found is not None and output.requires_grad and id(output) not in self.skip:  # a leaf: itself
                found[id(output)] = output
            return
        skip, since, stack, seen = self.skip, self.since, [node], {node}
        while stack:
            node = stack.pop()
            if type(node) is _ACCUMULATE:  # the node of a leaf
                variable = getattr(node, "variable")
                if id(variable) not in skip:
                    found[id(variable)] = variable
            elif node._sequence_nr() < since:
                self.found = None
                return
            else:
                for child, _ in node.next_functions:
                    if child is not None and child not in seen:
                        seen.add(child)
                        stack.append(child)

    def module(self, module: Optional[nn.Module]) -> None:
        """All ``module`` may read: its parameters, buffers and tensor attributes (a superset of what a
        forward pass uses); unknown for None, or when one of them has a graph of its own."""
        if module is None:
            self.found = None
            return
        found, skip = self.found, self.skip
        for t in _leaves(module):
            if t.grad_fn is not None:
                self.found = None
                return
            if found is not None and id(t) not in skip:
                found[id(t)] = t


_PLAIN = frozenset({bool, int, float, str, type(None), dict, set, list, tuple, OrderedDict})  # never tensors


# module -> (its modules, weakly; their dicts' version tags; the tensors found; registered; modes; rows apart)
_SCANS = PerModule()


def _scan(module: nn.Module) -> Tuple[Any, ...]:
    """``module``'s modules (weakly), their dicts' version tags, the tensors among their parameters, buffers
    and attributes, the registered ones (parameters and buffers), the training modes that matter
    (:func:`_mode`), whether rows pass through without meeting (:func:`rows_apart`) and each module's scalar
    attributes (flags, sizes: :func:`_scalars`). It runs on every call of a layer method, so it is remembered
    while the version tags (:mod:`.layer.watch`) of every module's own dicts are unchanged (the tensors are
    then the same ones), and checked once per checkpoint."""
    memo = _local.reads.scans if _local.reads is not None else None
    scan = memo.get(id(module)) if memo is not None else None
    if scan is not None:
        return scan
    scan = _SCANS.of(module)
    if scan is None or not all([m is not None and t is not None and _tags(m) == t
                                for m, t in zip([r() for r in scan[0]], scan[1])]):
        found = submodules(module)
        registered = tuple([t for m in found for t in (*m._parameters.values(), *m._buffers.values())
                            if t is not None])
        scan = ([weakref.ref(m) for m in found], [_tags(m) for m in found],
                [t for m in found for t in (*m._parameters.values(), *m._buffers.values(), *m.__dict__.values())
                 if type(t) not in _PLAIN and isinstance(t, Tensor)], registered, tuple([_mode(m) for m in found]),
                not any([m.training or isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is None
                         and m.running_var is None for m in found]), tuple([_scalars(m) for m in found]))
        _SCANS.put(module, scan)
    if memo is not None:
        memo[id(module)] = scan
    return scan


def rows_apart(module: nn.Module) -> bool:
    """Whether the rows of a batch pass through ``module`` without seeing each other, as far as its modes tell:
    no module in training mode, no batch norm normalising by the batch's statistics (no running statistics)."""
    return bool(_scan(module)[5])


def _mode(m: nn.Module) -> Optional[bool]:
    """``m``'s training mode where fattr knows it changes what ``m`` computes (a batch norm with running
    statistics, a dropout), else None (a module that ignores it may be switched freely)."""
    if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None or isinstance(
            m, nn.modules.dropout._DropoutNd) and m.p > 0:
        return m.training
    return None


def _scalars(m: nn.Module) -> Dict[str, Any]:
    """``m``'s attributes holding a scalar (a flag, a size, a scale; its training mode aside: :func:`_mode`)."""
    return {k: v for k, v in m.__dict__.items() if type(v) in _SCALARS and k != "training"}


def _leaves(module: nn.Module) -> List[Tensor]:
    """The tensors requiring grad among the parameters, buffers and tensor attributes of ``module``'s
    modules (each module once; remembered: :func:`_scan`); only their ``requires_grad`` is read again."""
    return [t for t in _scan(module)[2] if t.requires_grad]


def _state(modules: Sequence[nn.Module], scans: Dict[int, Tuple[Any, ...]]) -> Tuple[Any, ...]:
    """What a recomputation of a computation of ``modules`` reads from them, as they are now: their modules,
    the training modes that matter (:func:`_mode`), their parameters and buffers (by identity), the versions
    of these tensors (in-place writes) and their scalar attributes. Tensor attributes are not in it: a forward
    may replace them (a cache) without the recomputation's values changing. ``scans``: the call's (a scan
    checked during it is not checked again)."""
    found = [scans.get(id(m)) or _scan(m) for m in modules]
    return tuple(found), tuple([t._version for scan in found for t in scan[3]])


def _changed(modules: Sequence[nn.Module], state: Tuple[Any, ...]) -> bool:
    """Whether ``modules`` differ from ``state`` (:func:`_state`) in what it covers. A scalar attribute
    added since is not a change (the computation read none); one with another value, or removed, is."""
    were, versions = state
    nows = [_scan(m) for m in modules]
    for now, was in zip(nows, were):
        if now is not was and (len(now[0]) != len(was[0]) or now[4] != was[4]
                               or not all([a() is b() for a, b in zip(now[0], was[0])])
                               or len(now[3]) != len(was[3]) or not all([a is b for a, b in zip(now[3], was[3])])
                               or not all([_kept(a, b) for a, b in zip(now[6], was[6])])):
            return True
    return tuple([t._version for now in nows for t in now[3]]) != versions


def _kept(now: Dict[str, Any], was: Dict[str, Any]) -> bool:
    """Whether every scalar attribute in ``was`` is still there with the same type and value."""
    return now is was or all([k in now and type(now[k]) is type(v) and (now[k] == v or v != v and now[k] != now[k])
                              for k, v in was.items()])  # (NaN: unequal to itself)


def _tags(m: nn.Module) -> Optional[Tuple[int, ...]]:
    """The version tags of ``m``'s own dicts; None where they cannot be read (never equal: scanned again)."""
    d = m.__dict__
    try:
        return (_version(d), _version(d["_modules"]), _version(d["_parameters"]), _version(d["_buffers"])) if WORKS \
            else None
    except (KeyError, TypeError):
        return None


def reads(*sources: Any, exclude: Sequence[Tensor] = ()) -> None:
    """Name, inside a :func:`checkpoint`'s function, what its values depend on besides its tensors.

    A source is a tensor computed with its graph during the call (the leaves requiring grad its
    graph reaches count, except ``exclude``: the fresh leaves the function differentiated with
    respect to), an ``nn.Module`` (all it may read), or None (unknown: the checkpoint keeps the
    graph). A no-op outside a checkpoint's graph-free pass.
    """
    into: Optional[_Reads] = _local.reads
    if into is None:
        return
    into.skip.update(id(t) for t in exclude)
    for source in sources:
        if isinstance(source, Tensor):
            into.walk(source)
        else:
            into.module(source)


def _run(fn: Callable[[Tensors], Tensors], tensors: Tensors, into: Optional[_Reads],
         owner: Optional[nn.Module] = None) -> Tensors:
    """``fn(tensors)``: without grad, its :func:`reads` going ``into``; or (``into`` None) a recomputation
    of ``owner``'s computation, with grad, every checkpoint inside keeping its graph at once."""
    local, enabled = _local, torch.is_grad_enabled()
    outer, recomputing = local.reads, local.recomputing
    local.reads, local.recomputing = into, into is None
    torch._C._set_grad_enabled(into is None)
    try:
        return tuple(fn(tensors)) if into is not None else _graphed(fn, tensors, owner)
    finally:
        torch._C._set_grad_enabled(enabled)
        local.reads, local.recomputing = outer, recomputing


_ATTENDING: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()  # owners whose kept graphs needed composite attention


def _graphed(fn: Callable[[Tensors], Tensors], tensors: Tensors, owner: Optional[nn.Module] = None) -> Tensors:
    """``fn(tensors)`` keeping a graph that is differentiated twice (its values are gradients), attention
    as composite operations (:mod:`.twice`) where the fused kernel has no second derivative. The mode costs
    a Python call per operation (a fifth of a small model's kept pass), so given the ``owner`` (the
    module whose computation it is; eagerly only) the pass runs without it first, and again under it, with
    the same random and autocast states, only when its graph has a step without a derivative; an owner
    found so runs under the mode from then on. Without one (tracing, a function) the mode is always on."""
    members: List[nn.Module] = [] if owner is None else list(owner) if type(owner) is nn.ModuleList else [owner]
    if not members or any(m in _ATTENDING for m in members):  # (a ModuleList: a function's modules, .calling)
        with twice_differentiable():
            return tuple(fn(tensors))
    context, since = Context(), _next_node()
    values = tuple(fn(tensors))
    if not _undifferentiable(values, since):
        return values
    del values  # (its graph, before the second one is made)
    _ATTENDING.update(members)
    with context.restored(), twice_differentiable():
        return tuple(fn(tensors))


def _undifferentiable(values: Sequence[Any], since: int) -> bool:
    """Whether the graphs of ``values`` made since ``since`` hold a step without a derivative."""
    stack = [v.grad_fn for v in values if isinstance(v, Tensor) and v.grad_fn is not None]
    seen = set(stack)
    while stack:
        node = stack.pop()
        if type(node).__name__ == "NotImplemented":
            return True
        if node._sequence_nr() >= since:
            for child, _ in node.next_functions:
                if child is not None and child not in seen:
                    seen.add(child)
                    stack.append(child)
    return False


class Context:
    """What a recomputation must share with the first computation: random and autocast states
    (captured at every checkpoint: kept cheap, a plain class)."""

    __slots__ = ("cpu_rng", "cuda_rng", "autocast")

    def __init__(self) -> None:
        """The current states."""
        self.cpu_rng: Tensor = torch.default_generator.get_state()
        # every initialised CUDA device: the model may draw on one that no input lives on
        self.cuda_rng: Tuple[Tuple[int, Tensor], ...] = tuple(
            (i, torch.cuda.get_rng_state(i)) for i in range(torch.cuda.device_count())
        ) if torch.cuda.is_initialized() else ()
        # the devices with autocast on, and its dtype (queried only for them)
        self.autocast: Dict[str, torch.dtype] = {d: torch.get_autocast_dtype(d) for d in _AUTOCAST
                                                 if torch.is_autocast_enabled(d)}

    @contextlib.contextmanager
    def restored(self) -> Iterator[None]:
        """Run the block with the captured states; the caller's random states are left as they were."""
        with torch.random.fork_rng(devices=[i for i, _ in self.cuda_rng]), contextlib.ExitStack() as stack:
            torch.set_rng_state(self.cpu_rng)
            for i, state in self.cuda_rng:
                torch.cuda.set_rng_state(state, i)
            for device in _AUTOCAST:
                enabled = device in self.autocast
                if enabled or torch.is_autocast_enabled(device):  # (no CUDA autocast to leave off without CUDA)
                    stack.enter_context(torch.autocast(device, dtype=self.autocast.get(device), enabled=enabled))
            yield


class _Recomputed(torch.autograd.Function):
    """Identity on precomputed values; its backward recomputes them with their graph and differentiates."""

    @staticmethod
    def forward(ctx: Any, recompute: Callable[[Tensors], Tensors], check: Callable[[], None], context: Context,
                values: Tensors, n_inputs: int, *sources: Tensor) -> Tensors:
        ctx.recompute, ctx.check, ctx.context, ctx.n_inputs = recompute, check, context, n_inputs
        ctx.save_for_backward(*sources)
        ctx.set_materialize_grads(False)
        return tuple(values)

    @staticmethod
    def backward(ctx: Any, *cotangents: Optional[Tensor]) -> Tuple[Optional[Tensor], ...]:
        ctx.check()  # (first: a parameter written in place would meet autograd's less telling error below)
        saved, k = ctx.saved_tensors, ctx.n_inputs
        inputs, leaves = saved[:k], saved[k:]
        higher_order = torch.is_grad_enabled()  # the outer backward runs with create_graph
        none: Tuple[None, ...] = (None,) * 5
        with torch.enable_grad():
            cut = [t.detach().requires_grad_() for t in inputs]
            # the recomputation sees the inputs as leaves (its gradients stop there; the outer backward
            # carries them on through the inputs' own graphs); for higher orders they stay connected
            stand_ins = tuple(c + (t - t.detach()) for c, t in zip(cut, inputs)) if higher_order else tuple(cut)
            with ctx.context.restored():
                values = ctx.recompute(stand_ins)
            pairs = [(v, c) for v, c in zip(values, cotangents)
                     if c is not None and v is not None and v.requires_grad]
            if not pairs:
                return none + (None,) * len(saved)
            # retain_graph: the walk to the leaves may pass through graphs the caller owns
            grads = list(torch.autograd.grad([v for v, _ in pairs], cut + list(leaves), [c for _, c in pairs],
                                             allow_unused=True, retain_graph=True, create_graph=higher_order))
            linked = [(t, g) for t, g in zip(inputs, grads[:k]) if g is not None]
            if higher_order and leaves and linked:
                # connected stand-ins also reach the leaves through the inputs' graphs, which the outer
                # backward follows itself: take that share out
                through = torch.autograd.grad([t for t, _ in linked], list(leaves), [g for _, g in linked],
                                              allow_unused=True, retain_graph=True, create_graph=True)
                grads[k:] = [g if d is None else g - d for g, d in zip(grads[k:], through)]
        return none + tuple(grads)


# Function.apply without its Python layer (~20 calls), which serves functorch transforms: never active here
_attach = super(torch.autograd.Function, _Recomputed).apply


@contextlib.contextmanager
def keep_graph() -> Iterator[None]:
    """Every :func:`checkpoint` in this block (this thread) takes the policy under tracing: a switch for tests."""
    outer = _local.keep
    _local.keep = True
    try:
        yield
    finally:
        _local.keep = outer


def checkpoint(fn: Callable[..., Tensors], tensors: Sequence[Tensor], *, args: Optional[Sequence[Any]] = None,
               module: Any = None, memory_first: bool = False, traceable: bool = False, forward: bool = False
               ) -> Tensors:
    """``fn(tensors)``, computed without a graph and differentiable on demand.

    Args:
      fn: an ordinary function of a tuple of tensors, returning a tuple of tensors. It keeps the
        graph of what it computes (``create_graph``, ``torch.func.grad``) when grad mode is on as
        it starts, and names what else it read that may require grad with :func:`reads`.
      tensors: its arguments; the values are differentiable with respect to those requiring grad.
      args: extra arguments (:mod:`.arguments`): ``fn(tensors, args)`` is computed instead, and
        the values are differentiable with respect to the tensors among ``args`` too.
      module: the model (or the function of one, :func:`.calling.module_of`) whose training mode
        counts: in training mode the values are about to be differentiated, so the graph is kept
        at once (one pass with the graph is cheaper than a pass and a recomputation).
      memory_first: keep no graph at once even then (chunked path methods: memory follows the chunk).
      traceable: ``fn`` with grad mode on can be traced by ``torch.compile(fullgraph=True)`` and
        ``torch.func`` transforms (``torch.func.grad`` inside) and without cannot: under tracing it runs
        with grad mode on, whatever the caller's.
      forward: ``fn`` is a forward pass (no gradients inside): eagerly its graph is kept at once (recording
        it costs less than the bookkeeping and a recomputation); compiled, its values still come from an
        inference graph recomputed on demand (a kept graph would compile to a training graph).

    Returns:
      ``fn``'s values; with grad mode on, when they depend on tensors requiring grad, on one node
      that recomputes them with their graph in backward, or with their graph at once.

    Example:
      >>> import torch
      >>> from fattr._src.recompute import checkpoint, reads
      >>> w = torch.tensor([2.0], requires_grad=True)
      >>> def slope(ts):                            # d(w x^2)/dx, with its graph only under grad mode
      ...     keep, x = torch.is_grad_enabled(), ts[0].detach().requires_grad_()
      ...     with torch.enable_grad():
      ...         out = (w * x ** 2).sum()
      ...     reads(out, exclude=(x,))              # out's graph reaches w
      ...     return torch.autograd.grad(out, x, create_graph=keep)
      >>> (g,) = checkpoint(slope, (torch.tensor([3.0]),))
      >>> g, torch.autograd.grad(g.sum(), w)[0]     # 2 w x, and its derivative 2 x: recomputed
      (tensor([12.], grad_fn=<_RecomputedBackward>), tensor([6.]))
    """
    tensors = tuple(tensors)
    if args is not None:  # fn(tensors, args), as a function of tensors followed by the tensors among args
        arg_tensors, rebuild = split_args(args)
        k, of_args = len(tensors), fn
        fn, tensors = (lambda ts: of_args(ts[:k], rebuild(ts[k:]))), tensors + arg_tensors
    # ---- The policy under tracing (torch.compile, torch.func transforms; tests: keep_graph()), in this one
    # place: no recomputing node (Dynamo does not trace its backward; a transform differentiates fattr
    # itself); fn runs under the caller's grad mode, or, when ``traceable``, with grad (torch.func inside),
    # detached after it under no_grad. Under Dynamo with grad mode on, fn of a module's call keeps the eager
    # cost model: values from an inference graph, recomputed in backward (.compiled).
    if tracing.is_traced() or _local.keep:
        owner = module_of(module)
        if (torch.is_grad_enabled() and compiled.dynamo_tracing()
                and not (owner is not None and owner.training and not memory_first)):
            values = compiled.attached(fn, tensors, owner, forward)  # an inference graph, recomputed on demand
            if values is not None:
                return values
        if torch.is_grad_enabled():
            return _graphed(fn, tensors)
        with torch.enable_grad() if traceable else contextlib.nullcontext():
            return tuple(v.detach() for v in fn(tensors))
    if not torch.is_grad_enabled() or forward:
        return tuple(fn(tensors))  # nothing to attach; or a forward pass, whose graph costs little
    owner = module_of(module)
    if (_local.recomputing or owner is not None and owner.training) and not memory_first:
        return _graphed(fn, tensors, owner)  # about to be differentiated: the graph at once
    context, read = Context(), _Reads()
    detached = tuple([t.detach() for t in tensors])
    values = _run(fn, detached, read)
    if read.found is None:  # it read a tensor whose graph the node cannot route through: keep the graph
        return _graphed(fn, tensors, owner)
    tracked = [i for i, t in enumerate(tensors) if t.requires_grad]
    if not tracked and not read.found:
        return values

    # the modules the recomputation reads: the owner's, or those a function reaches (its closure, its globals)
    modules = [owner] if owner is not None else modules_of(module) if callable(module) else []
    state = _state(modules, read.scans)

    def check() -> None:
        if _changed(modules, state):
            raise RuntimeError(
                f"fattr: the {type(modules[0]).__name__} changed between the attribution and its backward (a "
                "submodule, parameter or buffer replaced, a parameter or buffer written in place (an optimizer step, "
                "batch-norm statistics), a scalar attribute such as a flag given another value, a batch norm or "
                "dropout switched to another mode): the attribution is recomputed in backward, which would "
                "differentiate the changed model. Differentiate before changing the model, or compute the "
                "attribution again.")

    def again(stand_ins: Tensors) -> Tensors:  # values with their graph, stand-ins in place of the inputs
        full = list(detached)
        for i, s in zip(tracked, stand_ins):
            full[i] = s
        return _run(fn, tuple(full), None, owner)

    return _attach(again, check, context, tuple([v.detach() for v in values]), len(tracked),
                   *(tensors[i] for i in tracked), *read.found.values())


def checkpoint_aux(fn: Callable[..., Tuple[Tensors, Any]], tensors: Sequence[Tensor], *,
                   args: Optional[Sequence[Any]] = None, **options: Any) -> Tuple[Tensors, Any]:
    """:func:`checkpoint` of ``fn`` returning ``(values, aux)``: what else its first run learned (a structure,
    a packing) comes back as ``aux``, as ``torch.func``'s ``has_aux``. A recomputation runs ``fn`` again and
    drops its ``aux``, so ``fn`` needs no side effect to hand it out (a compiled recomputation may have none)."""
    if not torch.is_grad_enabled() and not (tracing.is_traced() or _local.keep):  # (nothing to attach)
        values, extra = fn(tuple(tensors)) if args is None else fn(tuple(tensors), tuple(args))
        return tuple(values), extra
    aux: List[Any] = []

    def values_of(*call: Any) -> Tensors:
        values, extra = fn(*call)
        if not aux:
            aux.append(extra)
        return values

    return checkpoint(values_of, tensors, args=args, **options), aux[0]
