"""``attribute_dataset``: one attribution method over a whole dataset, sharded over ranks, resumable.

The job: check the arguments; join the process group (if any); rank 0 opens the
store (creating it from the first chunk's results, or checking that an existing
one was made with the same settings) and broadcasts the chunks still missing; every
rank computes its share chunk by chunk, writing each chunk's arrays and then its
``done`` mark; rank 0 shows the progress of all ranks; a barrier ends the job.
"""
from __future__ import annotations

import copy
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils.data import DataLoader, default_collate

from ..base import ModelLike, TargetLike
from ..errors import Shown, check_bool, check_callable, check_positive_int, fail
from ..perturbation.progress import JobProgress
from . import manifest as manifest_mod
from . import methods, sharding
from .chunk import Job, check_layout, layout_of
from .store import AttributionStore, Writer, create, done_chunks, read_manifest, remove_partial

TARGET_RULES = ("label", "predicted")  # the target rules of a dataset job, besides fattr's own
_PER_EXAMPLE_OPTIONS = ("baselines", "layer_baselines", "args", "kwargs")


def _check_target(target: Any, spec_targeted: bool, name: str) -> None:
    if target is None:
        return
    if not spec_targeted:
        fail("target", f"None ({name} attributes no output)", target)
    expected = "None, an int, a tuple, 'label', 'predicted' or a callable (output, batch) -> target"
    if isinstance(target, str) and target not in TARGET_RULES:
        fail("target", expected, target)
    if isinstance(target, bool) or not (isinstance(target, (int, tuple, str)) or callable(target)):
        fail("target", expected, target, "Per-example targets come from the dataset (target='label') or from a "
             "callable.", kind=TypeError)


def _check_per_example(options: Mapping[str, Any], method: methods.Method) -> None:
    """A tensor with several rows in the method's arguments would be paired with the examples of each
    batch by position: silently wrong across batches. Per-example values come from the dataset.
    (The baseline rows of a distribution method are no examples: they are drawn from.)"""
    for key in _PER_EXAMPLE_OPTIONS:
        if key not in options or (key == "baselines" and method.spec.baselines == "distribution"):
            continue
        for leaf in pytree.tree_leaves(options[key]):
            if isinstance(leaf, torch.Tensor) and leaf.dim() > 0 and leaf.shape[0] > 1:
                fail(key, "values shared by every example (tensors with a batch of 1, numbers)", leaf,
                     "Per-example values must come from the dataset's items: a tensor with several rows "
                     "would be paired with the examples of each batch by position.")


def _check_metrics(metrics: Any) -> Dict[str, Callable[..., Any]]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping) or not all(isinstance(k, str) and k and "/" not in k for k in metrics):
        fail("metrics", "a dict of names (without '/') to callables (model, inputs, attributions, target) -> "
             "one value per example", metrics, kind=TypeError)
    for key, fn in metrics.items():
        check_callable(f"metrics[{key!r}]", fn)
    return dict(metrics)


def _on_device(model: Any, device: torch.device) -> Any:
    """``model`` itself when it is on ``device`` already, else a copy moved there (the user's stays)."""
    if not isinstance(model, nn.Module) or all(t.device == device for t in [*model.parameters(), *model.buffers()]):
        return model
    return copy.deepcopy(model).to(device)


def _remap(value: Any, original: Any, moved: Any, device: torch.device) -> Any:
    """Options for the moved model: tensors on ``device``, submodules of the model replaced by the copy's."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, nn.Module) and moved is not original and isinstance(original, nn.Module):
        for name, module in original.named_modules():
            if module is value:
                return moved.get_submodule(name)
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_remap(v, original, moved, device) for v in value)
    if isinstance(value, dict):
        return {k: _remap(v, original, moved, device) for k, v in value.items()}
    return value


def _open(out: str, identity: Mapping[str, Any], resume: bool, job: Job,
          loader: Callable[[Sequence[int]], DataLoader[Any]]) -> Tuple[List[int], bool]:
    """On rank 0: ``(chunks still missing, whether the store was just created)``. A new store is made
    from the first chunk's results (they fix its layout) and holds that chunk; an existing one must
    have been made with the same settings."""
    stored = read_manifest(out)
    created = stored is None
    if stored is None:
        values = job.compute(0, next(iter(loader([0]))))
        create(out, manifest_mod.build(identity, layout_of(values, job.n, job.batch_size, job.structure)))
        Writer(out).write(0, values)
    else:
        if not resume:
            fail("resume", "True to add to the store at out", Shown(f"False, and {out!r} holds a store"),
                 "Choose another out, or delete the store to start over.")
        manifest_mod.check_same(stored, identity, out)
        remove_partial(out)
    done = done_chunks(out)
    return [c for c in range(sharding.n_chunks(job.n, job.batch_size)) if c not in done], created


def attribute_dataset(method: Union[str, Callable[..., Any]], model: ModelLike, dataset: Any,
                      out: Union[str, "os.PathLike[str]"], *, batch_size: int = 32,
                      target: Union[TargetLike, str, Callable[..., Any]] = None,
                      collate_fn: Optional[Callable[..., Any]] = None, num_workers: int = 0, resume: bool = True,
                      progress: bool = True, device: Union[str, torch.device, None] = None, save_output: bool = False,
                      seed: int = 0, metrics: Optional[Mapping[str, Callable[..., Any]]] = None,
                      **method_kwargs: Any) -> AttributionStore:
    r"""Attribute every example of a dataset with one method, on every rank of a ``torch.distributed`` job.

    The dataset's indices are cut into chunks of ``batch_size``; each chunk is one call
    of ``method`` and one chunk of an on-disk zarr store at ``out``. With ``N`` examples
    and ``b = batch_size``, chunk ``c`` holds the indices ``[c*b, min(N, (c+1)*b))``;
    with ``P`` the sorted list of chunks still missing, rank ``r`` of ``w`` under
    ``torchrun`` (or any initialised default process group) computes ``P[r], P[r+w],
    P[r+2w], ...``: disjoint shards, every index once, no padding (rank 0 takes the
    last, smallest share when it has just computed chunk 0 to create the store). A
    stochastic method draws chunk ``c``'s noise from a generator seeded by
    ``sha256(seed, c)``. Ranks write their own chunks in parallel, each chunk's arrays then its
    ``done`` mark, so a killed job restarted with the same arguments computes only
    what is missing, and the store is the same as that of an uninterrupted run, on any
    number of ranks. The store's manifest records the method, its arguments, the
    model's fingerprint (SHA-256 of its parameters and buffers) and the versions; a
    call whose settings differ is refused, naming the argument. (The dataset is
    recognised by its class and length, functions by their qualified names: their
    contents are not hashed.)

    Args:
      method: a registered fattr method (``fattr.integrated_gradients``, ...), its name
        (``"integrated_gradients"``), or a ``fattr.noise_tunnel`` of one.
      model: the model (``f`` of the method), an ``nn.Module`` or a function. It is moved
        to ``device`` as a copy when it is elsewhere.
      dataset: a map-style dataset (``__getitem__``, ``__len__``) whose items are the
        inputs (a tensor), ``(inputs,)``, ``(inputs, label)``, or a dict
        ``{"inputs": ..., "label": ..., "kwargs": {name: tensor}}`` whose ``kwargs`` are
        per-example keyword arguments of the model (an attention mask); inputs of a
        multi-input model are a tuple of tensors.
      out: directory of the store (created; an existing store is resumed), on a file system every
        rank sees (a shared one for a job over several machines).
      batch_size: examples per call and per chunk of the store (part of the store's layout).
      target: ``None``, an int or a tuple (every example), ``"label"`` (each item's label),
        ``"predicted"`` (the model's argmax), or a callable ``(output, batch) -> target``
        called per batch with the model's output and the collated batch.
      collate_fn: makes a batch from a list of items (default: ``torch.utils.data.default_collate``).
      num_workers: ``DataLoader`` worker processes loading items (per rank).
      resume: add to an existing store at ``out`` (False: refuse one).
      progress: show the job's progress (all ranks) on rank 0: tqdm if installed, else a line.
      device: where each rank computes (default: ``cuda:LOCAL_RANK`` under a process group
        with CUDA, else the model's device).
      save_output: also store the model's output for each example.
      seed: seed of the per-chunk generators of stochastic methods (``generator=`` is refused:
        one generator shared by the chunks would make results depend on their order).
      metrics: ``{name: fn}``; ``fn(model, inputs, attributions, target)`` returns one value
        per example for a batch, stored as ``store.metrics[name]``.
      **method_kwargs: the method's own arguments (``baselines``, ``n_steps``, ``layer``,
        ``return_delta``, ...), the same for every batch. ``return_delta=True`` stores the
        completeness delta.

    Returns:
      the :class:`fattr.AttributionStore` at ``out``, complete, on every rank.

    Example:
      >>> import tempfile, torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
      >>> data = torch.utils.data.TensorDataset(torch.randn(20, 4, dtype=torch.float64),
      ...                                       torch.arange(20) % 3)
      >>> out = tempfile.mkdtemp() + "/ig"
      >>> store = fattr.attribute_dataset(fattr.integrated_gradients, model, data, out, batch_size=8,
      ...                                 target="label", n_steps=32, return_delta=True, progress=False)
      >>> len(store), store[0].shape, bool(store.delta[:].abs().max() < 1e-6)
      (20, torch.Size([4]), True)
    """
    m = methods.resolve(method)
    methods.check_options(m, method_kwargs)
    batch_size = check_positive_int("batch_size", batch_size)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        fail("num_workers", "a non-negative int", num_workers, kind=TypeError)
    if isinstance(seed, bool) or not isinstance(seed, int):
        fail("seed", "an int", seed, kind=TypeError)
    for name, flag in (("resume", resume), ("progress", progress), ("save_output", save_output)):
        check_bool(name, flag)
    check_callable("collate_fn", collate_fn, optional=True)
    if not isinstance(out, (str, os.PathLike)):
        fail("out", "a directory path", out, kind=TypeError)
    out = os.fspath(out)
    _check_target(target, m.spec.targeted, m.name)
    _check_per_example(method_kwargs, m)
    metric_fns = _check_metrics(metrics)
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        fail("dataset", "a map-style dataset (with __getitem__ and __len__)", dataset, kind=TypeError)
    n = len(dataset)
    if n == 0:
        fail("dataset", "at least one example", Shown("an empty dataset"))
    ranks = sharding.join()
    try:
        dev = torch.device(device) if device is not None else sharding.default_device(model, ranks)
        identity = {
            "method": m.name,
            "noise_tunnel": manifest_mod.canonical(m.tunnel),
            "options": {k: manifest_mod.canonical(v, model if isinstance(model, nn.Module) else None)
                        for k, v in sorted(methods.with_defaults(m, method_kwargs).items())},
            "target": manifest_mod.canonical(target),
            "model": manifest_mod.model_fingerprint(model),
            "dataset": {"class": f"{type(dataset).__module__}.{type(dataset).__qualname__}", "length": n},
            "batch_size": batch_size,
            "collate_fn": manifest_mod.canonical(collate_fn),
            "seed": seed if m.stochastic else None,
            "save_output": save_output,
            "metrics": manifest_mod.canonical(metric_fns or None),
            "device_type": dev.type,
            "versions": manifest_mod.versions(),
        }
        moved = _on_device(model, dev)
        options = {k: _remap(v, model, moved, dev) for k, v in method_kwargs.items()}
        job = Job(m, moved, options, target, save_output, seed, metric_fns, dev, dataset, n, batch_size)

        def loader(chunks: Sequence[int]) -> DataLoader[Any]:
            """The batches of ``chunks``, in order (one batch per chunk)."""
            return DataLoader(dataset, batch_sampler=[list(range(*sharding.bounds(c, n, batch_size))) for c in chunks],
                              collate_fn=collate_fn or default_collate, num_workers=num_workers,
                              pin_memory=dev.type == "cuda")

        # rank 0 opens or creates the store and lists the missing chunks; every rank gets the list
        message: Tuple[Any, ...] = ()
        if ranks.rank == 0:
            try:
                pending, created = _open(out, identity, resume, job, loader)
                message = ("ok", pending, identity, created)
            except BaseException as e:  # every rank raises rank 0's error (the broadcast: a no-op on one process)
                ranks.broadcast(("error", type(e).__name__, str(e), False))
                raise
        message = ranks.broadcast(message)
        if message[0] == "error":
            kind = {"ValueError": ValueError, "TypeError": TypeError}.get(message[1], RuntimeError)
            raise kind(f"{message[2]} (raised on rank 0)" if kind is not RuntimeError else
                       f"rank 0 failed: {message[1]}: {message[2]}")
        pending, reference, created = message[1], message[2], message[3]
        if ranks.rank != 0:
            try:  # every rank must run the same job as rank 0 (same model weights, same arguments)
                manifest_mod.check_same({"format": manifest_mod.FORMAT, "identity": reference}, identity, out)
            except ValueError as e:
                raise ValueError(f"rank {ranks.rank} differs from rank 0: {e}") from None
        writer = Writer(out)
        # rank 0 computed chunk 0 on its own when it created the store: it takes the smallest share
        mine = sharding.assign(pending, (ranks.rank - int(created)) % ranks.world, ranks.world)
        sizes = [sharding.bounds(c, n, batch_size) for c in range(sharding.n_chunks(n, batch_size))]
        examples_done = lambda: sum(sizes[c][1] - sizes[c][0] for c in done_chunks(out))  # noqa: E731
        with JobProgress(examples_done, n, f"fattr {m.name}", enabled=progress and ranks.rank == 0):
            if mine:
                for chunk, batch in zip(mine, loader(mine)):
                    values = job.compute(chunk, batch)
                    check_layout(values, writer.layout, chunk)
                    writer.write(chunk, values)
            ranks.barrier()
        return AttributionStore(out)
    finally:
        ranks.close()
