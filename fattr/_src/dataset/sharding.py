"""Ranks and chunks: who computes which examples (the sharding :func:`fattr.attribute_dataset`'s
docstring defines: chunks of ``batch_size`` indices, the unit of work, of storage and of resumption).

Coordination is a handful of small objects (the list, an error, barriers), sent
over gloo: a group of its own when the default group is not gloo (NCCL), the
default group otherwise. Under ``torchrun`` without an initialised group, one is
initialised from the environment and destroyed at the end.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple

import torch
import torch.distributed as dist


def n_chunks(n: int, batch_size: int) -> int:
    return (n + batch_size - 1) // batch_size


def bounds(chunk: int, n: int, batch_size: int) -> Tuple[int, int]:
    """``[start, stop)`` of a chunk's dataset indices."""
    start = chunk * batch_size
    return start, min(n, start + batch_size)


def assign(pending: Sequence[int], share: int, world: int) -> List[int]:
    """Share ``share`` of ``world`` of the pending chunks (round robin: disjoint, complete, the first
    shares at most one chunk larger than the last)."""
    return list(pending[share::world])


@dataclass
class Ranks:
    """This process's place in the job: ``rank`` of ``world``.

    Attributes:
      rank, world: from the default process group (0 and 1 without one).
      local_rank: the rank on this machine (``LOCAL_RANK``), for picking a GPU.
      group: the gloo group used for coordination (None: the default group).
      created: the default group was initialised here (and is destroyed by :meth:`close`).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    group: Any = None
    created: bool = False

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0 if self.group is None else dist.get_global_rank(self.group, 0),
                                   group=self.group)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier(group=self.group)

    def close(self) -> None:
        """Destroy what :func:`join` created: the gloo group, the default group."""
        if self.group is not None:
            dist.destroy_process_group(self.group)
        if self.created:
            dist.destroy_process_group()


def join() -> Ranks:
    """The :class:`Ranks` of this process: the initialised default group, ``torchrun``'s environment, or one process."""
    if not dist.is_available():  # a build without distributed support
        return Ranks()
    created = not dist.is_initialized()
    if created:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "MASTER_ADDR" not in os.environ:
            return Ranks()
        dist.init_process_group(backend="gloo")
    world = dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world == 1:
        return Ranks(0, 1, local, None, created)
    group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None  # NCCL: coordinate over gloo
    return Ranks(dist.get_rank(), world, local, group, created)


def default_device(model: Any, ranks: Ranks) -> torch.device:
    """Where a rank computes when ``device=None``: its own GPU under a process group with CUDA,
    otherwise where the model's parameters are (CPU for a function)."""
    if ranks.distributed and torch.cuda.is_available():
        return torch.device("cuda", ranks.local_rank % torch.cuda.device_count())
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")
