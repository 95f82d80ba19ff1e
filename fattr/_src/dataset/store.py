"""The on-disk store of a dataset job: a zarr (v3) group, one chunk per ``batch_size`` examples.

Why zarr: a chunked N-d array format with one file per chunk, so ranks write their
own chunks in parallel with no lock and no coordination; zarr (3.1) writes each chunk
file to a temporary name and renames it, and a chunk counts only once its ``done``
mark follows all its files; anyone reads the result lazily by index (numpy,
``dask.array.from_zarr``, xarray) without fattr. safetensors shards would need an
index of our own and are read whole, not by example.

Layout (``N`` examples, chunks of ``batch_size`` along dim 0)::

    out/zarr.json               group; attributes["fattr"] = the manifest
    out/attributions/0, 1, ...  (N, *shape) one array per attributed input (or layer)
    out/delta                   (N,) or (N, k)   completeness delta (return_delta=True)
    out/target                  (N,) or (N, d)   the target used, int64
    out/output                  (N, *shape)      the model's output (save_output=True)
    out/metrics/<name>          (N, ...)         values of metrics=
    out/done                    (n_chunks,) uint8, chunks of 1: 1 once a chunk's arrays are written
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np
import torch

from ..errors import Shown, fail
from . import sharding

Index = Union[int, slice, Sequence[int], torch.Tensor, np.ndarray]
EXTRAS = ("delta", "target", "output")


def require_zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise ImportError("fattr's dataset store needs zarr (v3): pip install 'fattr[dataset]'") from None
    if int(zarr.__version__.split(".")[0]) < 3:
        raise ImportError(f"fattr's dataset store needs zarr >= 3, found {zarr.__version__}: "
                          "pip install 'fattr[dataset]'")
    return zarr


def read_manifest(out: str) -> Optional[Dict[str, Any]]:
    """The manifest of the store at ``out``; None when ``out`` is missing or empty; refused when it
    holds something else."""
    if not os.path.exists(out) or (os.path.isdir(out) and not os.listdir(out)):
        return None
    if not os.path.isfile(os.path.join(out, "zarr.json")):
        fail("out", "a new or empty directory, or a fattr dataset store", Shown(f"{out!r}, which holds other files"),
             "Choose another out.")
    attrs = dict(require_zarr().open_group(out, mode="r").attrs)
    if "fattr" not in attrs:
        fail("out", "a fattr dataset store", Shown(f"the zarr group {out!r} without a fattr manifest"),
             "Choose another out.")
    return dict(attrs["fattr"])


def create(out: str, manifest: Mapping[str, Any]) -> None:
    """A new store at ``out`` with the arrays of ``manifest["layout"]``: made in a temporary folder
    beside ``out``, then renamed to ``out`` (which may be an empty folder), so a store is whole or absent."""
    zarr = require_zarr()
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out))}.", suffix=".partial", dir=parent)
    layout = manifest["layout"]
    n, batch_size = layout["n"], layout["batch_size"]
    config = {"write_empty_chunks": True}  # every chunk has its file, zeros included
    try:
        group = zarr.open_group(tmp, mode="a", attributes={"fattr": dict(manifest)})
        for name, spec in layout["arrays"].items():
            shape = tuple(spec["shape"])
            parent, _, leaf = name.rpartition("/")
            where = group.require_group(parent) if parent else group
            where.create_array(leaf, shape=(n,) + shape, chunks=(batch_size,) + shape, dtype=spec["dtype"],
                               fill_value=0, config=config)
        group.create_array("done", shape=(sharding.n_chunks(n, batch_size),), chunks=(1,), dtype="uint8",
                           fill_value=0, config=config)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def done_chunks(out: str) -> Set[int]:
    """The chunks whose arrays are all written (listed, not read: the ``done`` array's chunk files,
    named ``c/<chunk>`` by zarr v3's default chunk key encoding)."""
    folder = os.path.join(out, "done", "c")
    if not os.path.isdir(folder):
        return set()
    return {int(name) for name in os.listdir(folder) if name.isdigit()}


def remove_partial(out: str) -> None:
    """Delete temporary files a killed writer left behind (zarr writes ``*.partial`` then renames)."""
    for root, _, files in os.walk(out):
        for name in files:
            if name.endswith(".partial"):
                os.remove(os.path.join(root, name))


class Writer:
    """Writes whole chunks into an existing store (each rank its own chunks)."""

    def __init__(self, out: str) -> None:
        self.group = require_zarr().open_group(out, mode="r+")
        self.layout = dict(self.group.attrs["fattr"])["layout"]
        self.n, self.batch_size = self.layout["n"], self.layout["batch_size"]
        self.arrays = {name: self.group[name] for name in self.layout["arrays"]}
        self.done = self.group["done"]

    def write(self, chunk: int, values: Mapping[str, np.ndarray]) -> None:
        """Write one chunk of every array (laid out as checked by :func:`.chunk.check_layout`), then mark it done."""
        start, stop = sharding.bounds(chunk, self.n, self.batch_size)
        for name, value in values.items():
            self.arrays[name][start:stop] = value
        self.done[chunk] = 1


def _indices(index: Index, n: int) -> Tuple[np.ndarray, bool]:
    """``(indices, single)``: the dataset indices ``index`` selects, checked against ``n``."""
    if isinstance(index, (bool, np.bool_)):
        fail("index", "an int, a slice, a sequence of ints or an integer tensor", index, kind=TypeError)
    if isinstance(index, (int, np.integer)):
        i = int(index)
        if not -n <= i < n:
            fail("index", f"an index in [-{n}, {n}) (the store holds {n} examples)", i, kind=IndexError)
        return np.array([i % n]), True
    if isinstance(index, slice):
        return np.arange(n)[index], False
    if isinstance(index, torch.Tensor):
        index = index.detach().cpu().numpy()
    array = np.asarray(index)
    if array.ndim != 1 or not (array.dtype.kind in "iu" or array.size == 0):
        fail("index", "an int, a slice, or a 1-D sequence / tensor of ints", Shown(f"an array of shape "
             f"{array.shape} and dtype {array.dtype}"), kind=TypeError)
    array = array.astype(np.int64)
    if array.size and (array.min() < -n or array.max() >= n):
        fail("index", f"indices in [-{n}, {n}) (the store holds {n} examples)",
             Shown(f"indices from {array.min()} to {array.max()}"), kind=IndexError)
    return array % n if n else array, False


class Field:
    """One kind of result in a store (attributions, delta, target, output or a metric), by dataset index.

    ``field[i]`` is one example's value (no batch dim), ``field[indices]`` a batch (a
    tuple of tensors for attributions of several inputs); ``field.to_numpy()`` reads it all.
    """

    def __init__(self, store: "AttributionStore", name: str, arrays: Sequence[Any], structure: str) -> None:
        self._store, self.name, self._arrays, self._structure = store, name, list(arrays), structure

    def __len__(self) -> int:
        return len(self._store)

    def __getitem__(self, index: Index) -> Any:
        rows, single = _indices(index, len(self._store))
        self._store._check_computed(rows)
        values = [torch.from_numpy(np.array(a[int(rows[0])] if single else (a.oindex[rows] if rows.size else a[0:0])))
                  for a in self._arrays]
        return tuple(values) if self._structure == "tuple" else values[0]

    def to_numpy(self) -> Any:
        """Every example's value as numpy (read now, all of it; for lazy reads use :attr:`arrays`)."""
        self._store._check_computed(np.arange(len(self._store)))
        values = [np.asarray(a[:]) for a in self._arrays]
        return tuple(values) if self._structure == "tuple" else values[0]

    @property
    def arrays(self) -> Any:
        """The zarr array(s) themselves: lazy, for numpy-style slicing or ``dask.array.from_zarr``."""
        return tuple(self._arrays) if self._structure == "tuple" else self._arrays[0]


class AttributionStore:
    """The results of :func:`fattr.attribute_dataset`, by dataset index: ``AttributionStore(out)``.

    ``store[i]`` is example ``i``'s attributions (a tensor shaped like the example's
    input, or a tuple for several inputs), ``store[indices]`` a batch of them (``indices``
    an int list, a slice or an integer tensor); ``len(store)`` is the dataset's length;
    ``store.manifest`` says how they were computed; ``store.to_numpy()`` reads them all.
    Extra results, when the job made them: ``store.delta`` (completeness delta per
    example), ``store.target`` (the target used), ``store.output`` (the model's output),
    ``store.metrics[name]``; each indexes the same way. Reading an example whose chunk
    is not computed yet (an unfinished job) raises ``ValueError``.

    Args:
      out: the directory a job wrote.

    Example:
      >>> import tempfile, torch, fattr
      >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3)).double()
      >>> data = [(torch.randn(4, dtype=torch.float64), i % 3) for i in range(10)]
      >>> out = tempfile.mkdtemp() + "/ig"
      >>> _ = fattr.attribute_dataset(fattr.integrated_gradients, model, data, out, batch_size=4,
      ...                             target="label", n_steps=8, progress=False)
      >>> store = fattr.AttributionStore(out)
      >>> len(store), store[3].shape, store[[0, 9]].shape, store.target[:4].tolist()
      (10, torch.Size([4]), torch.Size([2, 4]), [0, 1, 2, 0])
    """

    def __init__(self, out: Union[str, "os.PathLike[str]"]) -> None:
        out = os.fspath(out)
        manifest = read_manifest(out)
        if manifest is None:
            fail("out", "a fattr dataset store", Shown(f"{out!r}, which is missing or empty"))
        self.path = out
        self._group = require_zarr().open_group(out, mode="r")
        self._manifest = manifest
        layout = manifest["layout"]
        self._n, self._batch_size = int(layout["n"]), int(layout["batch_size"])
        self._complete = False
        names = list(layout["arrays"])
        attributions = [name for name in names if name.startswith("attributions/")]
        self.attributions = Field(self, "attributions", [self._group[a] for a in attributions],
                                  layout["structure"])
        self._extras = {name: Field(self, name, [self._group[name]], "tensor") for name in EXTRAS if name in names}
        self.metrics: Dict[str, Field] = {
            name.split("/", 1)[1]: Field(self, name, [self._group[name]], "tensor")
            for name in names if name.startswith("metrics/")}

    @property
    def manifest(self) -> Dict[str, Any]:
        """How the store was made: the job's identity (method, settings, model fingerprint, versions,
        ...) and the layout (arrays, shapes, dtypes)."""
        return dict(self._manifest)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: Index) -> Any:
        return self.attributions[index]

    def __repr__(self) -> str:
        return (f"AttributionStore({self.path!r}: {self._manifest['identity']['method']}, {self._n} examples, "
                f"{len(self.missing())} not computed)")

    def _extra(self, name: str, why: str) -> Field:
        if name not in self._extras:
            raise AttributeError(f"this store has no {name}: {why}")
        return self._extras[name]

    delta = property(lambda self: self._extra("delta", "the method was run without return_delta=True, or has no "
                                              "delta"),
                     doc="The completeness delta of each example (``return_delta=True``), ``(N,)`` or ``(N, k)``.")
    target = property(lambda self: self._extra("target", "the job ran with target=None"),
                      doc="The target each example was attributed for, int64 ``(N,)`` (``(N, d)`` for tuple targets).")
    output = property(lambda self: self._extra("output", "the job ran without save_output=True"),
                      doc="The model's output for each example (``save_output=True``).")

    def to_numpy(self) -> Any:
        """All attributions as a numpy array (a tuple of arrays for several inputs)."""
        return self.attributions.to_numpy()

    def missing(self) -> List[int]:
        """The chunks not computed yet (empty once the job has finished)."""
        done = done_chunks(self.path)
        return [c for c in range(sharding.n_chunks(self._n, self._batch_size)) if c not in done]

    @property
    def complete(self) -> bool:
        if not self._complete:
            self._complete = not self.missing()
        return self._complete

    def batches(self, batch_size: Optional[int] = None) -> Iterator[Tuple[torch.Tensor, Any]]:
        """``(indices, attributions)`` chunk by chunk (or ``batch_size`` examples at a time), in index order."""
        step = batch_size or self._batch_size
        for start in range(0, self._n, step):
            yield torch.arange(start, min(self._n, start + step)), self[start:start + step]

    def _check_computed(self, rows: np.ndarray) -> None:
        if self.complete or not rows.size:
            return
        done = done_chunks(self.path)
        missing = [int(c) for c in np.unique(rows // self._batch_size) if int(c) not in done]
        if missing:
            start, stop = sharding.bounds(missing[0], self._n, self._batch_size)
            fail("index", "examples the job has computed", Shown(f"indices {start}..{stop - 1} among others "
                 f"({len(missing)} chunk(s)), not computed yet"),
                 "Run attribute_dataset again with the same arguments to finish the store.")
