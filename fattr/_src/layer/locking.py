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
itself (a model whose forward calls a fattr layer method).
"""
from __future__ import annotations

import contextlib
import threading
from typing import ContextManager, Iterator

from ..compiled import dynamo_tracing

_condition = threading.Condition(threading.Lock())
_readers = 0
_writing = False
_local = threading.local()


def reading() -> ContextManager[None]:
    """Run modules: many threads at once, never while a trace is in progress (no lock under Dynamo)."""
    return contextlib.nullcontext() if dynamo_tracing() else _reading()


@contextlib.contextmanager
def _reading() -> Iterator[None]:
    global _readers
    with _condition:
        while _writing:
            _condition.wait()
        _readers += 1
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        with _condition:
            _readers -= 1
            _condition.notify_all()


@contextlib.contextmanager
def writing() -> Iterator[None]:
    """Trace: alone, after every running head and tail has finished."""
    global _writing
    mine = getattr(_local, "depth", 0)
    with _condition:
        while _writing or _readers > mine:
            _condition.wait()
        _writing = True
    try:
        yield
    finally:
        with _condition:
            _writing = False
            _condition.notify_all()
