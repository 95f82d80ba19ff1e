"""Every registered method's bound callable has its own code object, so its own Dynamo cache (issue 16).

Dynamo keeps its compiled entries, and counts recompiles against ``recompile_limit``, per code object: with one
shared ``bound`` code, a call tried the guards of other methods' entries first and compiling a ninth callable
hit the limit of eight."""
from __future__ import annotations

import time
from typing import Any, Iterator

import pytest
import torch
import torch._dynamo
from torch import nn
from torch._dynamo.eval_frame import _debug_get_cache_entry_list
from torch._dynamo.testing import CompileCounter

import fattr


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _spec(name: str) -> fattr.MethodSpec:
    return {s.name: s for s in fattr.methods()}[name]


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def test_each_method_has_its_own_cache_and_no_recompiles() -> None:
    model, x = _model(), torch.randn(5, 3)
    names = ("saliency", "input_x_gradient", "integrated_gradients")
    bound = [_spec(n).bind(model, target=0) for n in names]
    counters = [CompileCounter() for _ in names]
    compiled = [torch.compile(b, backend=c, fullgraph=True) for b, c in zip(bound, counters)]
    for _ in range(3):  # interleaved, same shapes: each compiled once
        for f, b in zip(compiled, bound):
            torch.testing.assert_close(f(x), b(x))
    assert [c.frame_count for c in counters] == [1, 1, 1]
    assert [len(_debug_get_cache_entry_list(b.__code__)) for b in bound] == [1, 1, 1]
    assert len({b.__code__ for b in bound}) == 3
    assert _spec("saliency").bind(model, target=1).__code__ is bound[0].__code__  # one code per method


def test_one_method_does_not_count_against_anothers_recompile_limit() -> None:
    model, x = _model(), torch.randn(5, 3)
    first = torch.compile(_spec("saliency").bind(model, target=0), backend="eager", fullgraph=True)
    first(x)
    # the old shared code: compiling a second method was a recompile, over a limit of 1 (FailOnRecompileLimitHit)
    second = torch.compile(_spec("input_x_gradient").bind(model, target=0), backend="eager", fullgraph=True,
                           recompile_limit=1)
    torch.testing.assert_close(second(x), fattr.input_x_gradient(model, x, target=0))


def test_harness_times_blocks_of_fast_calls_alike() -> None:
    """A sample of a fast row is a block of calls, the same number for every implementation (the harness timed
    single cold calls)."""
    from benchmarks import timing

    calls = {"fast": 0, "slow": 0}

    def call(name: str, seconds: float) -> Any:
        def f() -> None:
            calls[name] += 1
            time.sleep(seconds)
        return f

    fns = {"fast": call("fast", 0.0005), "slow": call("slow", 0.0015)}
    got = timing.interleaved(fns, runs=3, min_sample_s=0.02)
    block = got["fast"].calls
    assert got["slow"].calls == block > 1
    assert calls["slow"] == 1 + 1 + 3 * block  # warm-up, calibration, 3 timed blocks
    assert block * got["fast"].min >= 0.01 and got["slow"].median > got["fast"].median
    assert {t.calls for t in timing.interleaved(fns, runs=1).values()} == {1}
