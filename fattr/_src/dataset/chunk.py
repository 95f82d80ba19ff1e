"""One chunk of a dataset job: a collated batch in, the arrays of its chunk of the store out.

A batch is split into inputs, labels and per-example keyword arguments of the model
(items are ``inputs``, ``(inputs,)``, ``(inputs, label)`` or a dict with keys
``inputs``, ``label``, ``kwargs``), its target is resolved (a fixed target, ``"label"``,
``"predicted"`` or a callable), the method runs once on it under ``torch.no_grad()``
(fattr's results do not depend on the grad mode), with a generator of its own for
stochastic methods, and every result becomes a numpy array with one row per
example: attributions, completeness delta, target, model output, metrics.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Dict, Mapping, Tuple

import numpy as np
import torch

from .. import structure
from ..arguments import as_args
from ..calling import call
from ..errors import Shown, describe, fail, is_integer_tensor
from ..targets import as_target
from . import methods, sharding


def _item(value: Any) -> Shown:
    """A dataset item, described for a message (shapes and dtypes, never values)."""
    if isinstance(value, dict):
        return Shown(f"a dict with keys {sorted(map(str, value))[:8]}")
    if isinstance(value, (list, tuple)):
        kind = "a list" if isinstance(value, list) else f"a tuple of {len(value)}"
        return Shown(f"{kind} ({', '.join(_item(v) for v in value[:4])}{', ...' if len(value) > 4 else ''})")
    return Shown(describe(value))


_ITEM_KEYS = ("inputs", "label", "kwargs")
_ITEMS = "items that are inputs (a tensor), (inputs,), (inputs, label) or a dict with keys " + ", ".join(_ITEM_KEYS)


def _split(batch: Any, item: Callable[[], Any]) -> Tuple[Tuple[torch.Tensor, ...], bool, Any, Dict[str, Any]]:
    """``(inputs, was_tuple, labels, kwargs)`` of a collated batch of items ``inputs``, ``(inputs,)``,
    ``(inputs, label)`` or ``{"inputs": ..., "label": ..., "kwargs": {name: per-example tensor}}``;
    ``item()`` fetches an example for the error message."""
    labels, kwargs = None, {}  # type: Any, Dict[str, Any]
    inputs = batch
    if isinstance(batch, dict):
        if "inputs" not in batch or not set(batch) <= set(_ITEM_KEYS):
            fail("dataset", _ITEMS, item(), kind=TypeError)
        inputs, labels, kwargs = batch["inputs"], batch.get("label"), batch.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            fail("dataset", "an item's 'kwargs' to be a dict of per-example tensors", item(), kind=TypeError)
    elif isinstance(batch, (list, tuple)):
        if len(batch) not in (1, 2):
            fail("dataset", _ITEMS, item(), "A multi-input example is ((x1, x2, ...), label) or ((x1, x2, ...),).",
                 kind=TypeError)
        inputs = batch[0]
        labels = batch[1] if len(batch) == 2 else None
    if isinstance(inputs, list):
        inputs = tuple(inputs)
    if not isinstance(inputs, (torch.Tensor, tuple)) or (isinstance(inputs, tuple) and not all(
            isinstance(x, torch.Tensor) for x in inputs)):
        fail("dataset", "items whose inputs are a tensor or a tuple of tensors", item(), _ITEMS + ".",
             kind=TypeError)
    xs, was_tuple = structure.as_tuple(inputs, "dataset (inputs of a batch)")
    for name, value in kwargs.items():
        if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != xs[0].shape[0]:
            fail("dataset", f"an item's kwargs to be per-example tensors ({name!r} collated to one row per "
                 "example)", item(), "Values shared by every example go to attribute_dataset(kwargs=...).",
                 kind=TypeError)
    return xs, was_tuple, labels, dict(kwargs)


def _labels(labels: Any, n: int, item: Callable[[], Any]) -> torch.Tensor:
    if labels is None:
        fail("target", "items (inputs, label) for target='label'", item(),
             "Give the dataset's items a label, or choose another target.")
    if not is_integer_tensor(labels) or labels.dim() == 0 or labels.shape[0] != n:
        fail("target", f"integer labels, one per example (a batch of {n})",
             Shown(f"labels collated to {describe(labels)}"), kind=TypeError)
    return labels


def _numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    return (t.float() if t.dtype == torch.bfloat16 else t).cpu().numpy()  # numpy has no bfloat16


class Job:
    """Everything a rank needs to compute a chunk."""

    def __init__(self, method: methods.Method, model: Any, options: Dict[str, Any], target: Any,
                 save_output: bool, seed: int, metrics: Dict[str, Callable[..., Any]], device: torch.device,
                 dataset: Any, n: int, batch_size: int) -> None:
        self.method, self.model, self.options, self.target = method, model, options, target
        self.save_output, self.seed, self.metrics, self.device = save_output, seed, metrics, device
        self.dataset, self.n, self.batch_size = dataset, n, batch_size
        self.extra = as_args(options.get("args", ()), options.get("kwargs"))
        self.return_delta = bool(options.get("return_delta", False))
        self.structure = "tensor"  # of the last result: a tensor, or a tuple (several inputs or layers)

    def compute(self, chunk: int, batch: Any) -> Dict[str, np.ndarray]:
        start, stop = sharding.bounds(chunk, self.n, self.batch_size)
        rows = stop - start

        def item() -> Shown:
            return _item(self.dataset[start])

        xs, was_tuple, labels, item_kwargs = _split(batch, item)
        if xs[0].shape[0] != rows:
            fail("collate_fn", f"a batch of {rows} examples along dim 0 (dataset indices {start}..{stop - 1})",
                 xs[0])
        xs = tuple(x.to(self.device) for x in xs)
        inputs = structure.restore(xs, was_tuple)
        options, extra = self.options, self.extra
        if item_kwargs:  # per-example keyword arguments of the model, from the items
            shared = dict(self.options.get("kwargs") or {})
            clash = sorted(set(shared) & set(item_kwargs))
            if clash:
                fail("kwargs", "names the dataset's items do not give", Shown(f"{clash} in both"), kind=TypeError)
            options = dict(self.options, kwargs={**shared, **{k: v.to(self.device) for k, v in item_kwargs.items()}})
            extra = as_args(options.get("args", ()), options["kwargs"])
        rule = self.target
        output = None
        if self.save_output or self.metrics or rule == "predicted" or callable(rule):
            with torch.no_grad():
                output = call(self.model, xs, extra)
        if rule == "label":
            target: Any = _labels(labels, rows, item).to(self.device)
        elif rule == "predicted":
            assert output is not None
            if output.dim() != 2:
                fail("target", "'predicted' for a model whose output is (batch, classes)",
                     Shown(f"an output of shape {tuple(output.shape)}"), "Give a callable target instead.")
            target = output.argmax(1)
        elif callable(rule):
            target = rule(output, batch)
        else:
            target = rule
        kwargs = dict(options, inputs=inputs)
        if self.method.spec.targeted:
            kwargs["target"] = target
        if self.method.stochastic:
            digest = hashlib.sha256(f"fattr.dataset:{self.seed}:{chunk}".encode()).digest()  # the chunk's own seed
            seed = int.from_bytes(digest[:8], "little") >> 1
            kwargs["generator"] = torch.Generator(device=self.device).manual_seed(seed)
        with torch.no_grad():
            result = self.method.fn(self.model, **kwargs)
            delta = None
            if self.return_delta:
                result, delta = result
            values: Dict[str, np.ndarray] = {}
            self.structure = "tuple" if isinstance(result, (tuple, list)) else "tensor"
            for i, leaf in enumerate(tuple(result) if isinstance(result, (tuple, list)) else (result,)):
                if not isinstance(leaf, torch.Tensor) or leaf.dim() == 0 or leaf.shape[0] != rows:
                    fail("method", f"attributions with {rows} rows (one per example)", leaf, kind=TypeError)
                values[f"attributions/{i}"] = _numpy(leaf)
            if delta is not None:
                d = delta.reshape(rows, -1)
                values["delta"] = _numpy(d.reshape(rows) if d.shape[1] == 1 else d)
            if target is not None:
                normal = as_target(target, rows, self.device)
                t_rows = normal.rows if normal.rows is not None else \
                    torch.tensor(normal.static, dtype=torch.long).reshape(1, -1).expand(rows, -1)
                values["target"] = _numpy(t_rows.reshape(rows) if t_rows.shape[1] == 1 else t_rows)
            if self.save_output and output is not None:
                values["output"] = _numpy(output)
        for name, fn in self.metrics.items():  # in the caller's grad mode: a metric may differentiate
            value = fn(self.model, inputs, result, target)
            if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != rows:
                fail(f"metrics[{name!r}]", f"to return a tensor with {rows} rows (one per example)", value,
                     kind=TypeError)
            values[f"metrics/{name}"] = _numpy(value)
        return values


def layout_of(values: Mapping[str, np.ndarray], n: int, batch_size: int, structure_name: str) -> Dict[str, Any]:
    return {"n": n, "batch_size": batch_size, "structure": structure_name,
            "arrays": {name: {"shape": list(v.shape[1:]), "dtype": str(v.dtype)} for name, v in values.items()}}


def check_layout(values: Mapping[str, np.ndarray], layout: Mapping[str, Any], chunk: int) -> None:
    arrays = layout["arrays"]
    if set(values) != set(arrays):
        fail("dataset", f"the same results for every chunk ({', '.join(sorted(arrays))})",
             Shown(f"{', '.join(sorted(values))} in chunk {chunk}"))
    for name, v in values.items():
        spec = arrays[name]
        if list(v.shape[1:]) != spec["shape"] or str(v.dtype) != spec["dtype"]:
            fail("dataset", f"examples of one shape: {name} of shape {tuple(spec['shape'])} and dtype "
                 f"{spec['dtype']} per example, as in the store",
                 Shown(f"shape {tuple(v.shape[1:])} and dtype {v.dtype} in chunk {chunk}"),
                 "Pad or resize the examples to one shape.")
