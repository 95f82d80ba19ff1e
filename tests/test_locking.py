"""The reader/writer lock around tracing (fattr/_src/layer/locking.py): a trace runs alone, after every
other thread's reads; reads nest; a thread may trace while it holds reads itself."""
from __future__ import annotations

import threading
import time

from fattr._src.layer import locking

WAIT = 5.0  # seconds: generous on a loaded machine; a deadlock fails the test instead of hanging it


def _in_thread(fn):
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def test_a_trace_waits_for_the_reads_of_other_threads_and_reads_wait_for_the_trace():
    reading, release, events = threading.Event(), threading.Event(), []

    def reader():
        with locking.reading():
            with locking.reading():  # nested: still one read of this thread
                reading.set()
                release.wait(WAIT)
                events.append("read done")

    def writer():
        with locking.writing():
            events.append("write")
            time.sleep(0.05)
            events.append("write done")

    r = _in_thread(reader)
    assert reading.wait(WAIT)
    w = _in_thread(writer)
    time.sleep(0.05)
    assert events == []  # the trace waits for the read
    release.set()
    r.join(WAIT)
    w.join(WAIT)
    assert events == ["read done", "write", "write done"]

    started, later = threading.Event(), []

    def late_reader():
        started.set()
        with locking.reading():
            later.append("read")

    def long_writer():
        with locking.writing():
            _in_thread(late_reader)
            assert started.wait(WAIT)
            time.sleep(0.05)
            later.append("write done")

    t = _in_thread(long_writer)
    t.join(WAIT)
    deadline = time.monotonic() + WAIT
    while len(later) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert later == ["write done", "read"]  # a read waits for the trace


def test_a_thread_traces_while_it_holds_reads_and_leaves_no_read_behind():
    done = []

    def nested():
        with locking.reading(), locking.reading(), locking.writing():
            done.append("traced")
        with locking.writing():  # the reads above were all released
            done.append("again")

    t = _in_thread(nested)
    t.join(WAIT)
    assert done == ["traced", "again"]
    assert locking._readers == 0 and not locking._writing and locking._local.depth == 0
