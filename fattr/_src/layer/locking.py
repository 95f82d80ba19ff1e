"""A process-wide reader/writer lock around torch.fx tracing.

``torch.fx`` symbolic tracing patches ``torch.nn.Module.__call__`` (and some
functions) for the whole process while it runs, so a module called from another
thread during a trace would be traced instead of run. fattr therefore traces
under the writer side of this lock and runs every head and tail under the reader
side: fattr's own calls are safe across threads (many heads and tails run at
once; a trace waits for them to finish). Code outside fattr that calls modules
in another thread while fattr traces is not protected; that is a property of
``torch.fx`` itself. The same holds for reading a submodule attribute: while
``torch.export`` traces, ``nn.Module.__getattr__`` returns stand-ins for
submodules in every thread, so fattr also resolves layers under the reader side.

Readers have priority (a waiting trace does not block new readers), so nested
reads in one thread never deadlock, and a thread may trace while it holds reads
itself (a model whose forward calls a fattr layer method). A thread holds one read
however deeply it nests them: a nested read costs an increment of its own counter.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, ContextManager, Iterator

from ..compiled import dynamo_tracing

_lock = threading.Lock()
_condition = threading.Condition(_lock)  # readers take ``_lock`` itself: a C context manager, no Python frames
_readers = 0  # threads holding a read
_writing = False
_waiting = 0  # traces waiting for the readers to finish


class _Local(threading.local):
    depth = 0  # this thread's nested reads


_local = _Local()


class _Reading:
    """The reader side, a plain context manager (it runs several times per attribution call)."""

    def __enter__(self) -> None:
        global _readers
        if not _local.depth:
            with _lock:
                while _writing:
                    _condition.wait()
                _readers += 1
        _local.depth += 1

    def __exit__(self, *exc: Any) -> None:
        global _readers
        _local.depth -= 1
        if not _local.depth:
            with _lock:
                _readers -= 1
                if _waiting:  # (notify_all is Python code: only when a trace waits)
                    _condition.notify_all()


_READING, _NOTHING = _Reading(), contextlib.nullcontext()


def reading() -> ContextManager[None]:
    """Run modules: many threads at once, never while a trace is in progress (no lock under Dynamo)."""
    return _NOTHING if dynamo_tracing() else _READING


@contextlib.contextmanager
def writing() -> Iterator[None]:
    """Trace: alone, after every running head and tail has finished."""
    global _writing, _waiting
    mine = 1 if _local.depth else 0  # this thread's own read
    with _condition:
        _waiting += 1
        try:
            while _writing or _readers > mine:
                _condition.wait()
        finally:
            _waiting -= 1
        _writing = True
    try:
        yield
    finally:
        with _condition:
            _writing = False
            _condition.notify_all()
