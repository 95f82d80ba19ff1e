"""A training step with an attribution prior, eager against ``torch.compile`` (issue 16).

The step is the demo's (:func:`fattr.demo.train.make_step`): the demo CNN, cross-entropy
plus the border prior on integrated gradients (:func:`fattr.demo.prior.make_penalty`),
backward, one Adam step. ``compiled`` is ``torch.compile`` of that whole function (Dynamo
breaks the graph at ``zero_grad`` and ``backward``: the loss is one graph, its backward is
compiled with it, the optimizer step is a second graph). Both run on the same batch from
the same initial weights, interleaved (:func:`benchmarks.timing.interleaved`), and the
median per step is reported with compiled/eager.

* ``train`` mode (what the demo does): fattr keeps IG's graph at once, so AOTAutograd
  compiles one training graph with the double backward. ReLU and max-pooling run there in forms
  whose backward reads their input only as a mask or indices (:mod:`fattr._src.twice`), so the
  second differentiation carries no structural zeros back through the IG batch's layers and
  Inductor's scatter decomposition of max-pool backward is left to the plain forward's loss.
* ``eval`` mode (``--modes train eval``; reference only): the compiled cost model of
  :mod:`fattr._src.compiled` (an inference graph, recomputed in backward), against eager's
  recomputing node.
* ``--inductor-variant``: one more compiled step, compiled with Inductor's scatter
  decomposition of max-pool backward removed and without its layout optimisation, to show
  what the compiled training step costs without those two Inductor choices (see
  ``benchmarks/README.md``). It edits Inductor's tables for that compile only.
* ``--layout-off``: one more compiled step, ``torch.compile(step, options={"layout_optimization": False})``:
  the one of those two choices ``torch.compile``'s options reach.
* ``--own-backend``: one more compiled step, both choices made for that compile only, without editing
  Inductor's tables: ``torch.compile(step, backend=`` :func:`own_backend` ``)``, Inductor's ``compile_fx``
  with its decomposition table less the max-pool backward and ``layout_optimization=False``.

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.train_step [--modes train eval] [--runs 40]``.
"""
from __future__ import annotations

import argparse
import contextlib
import time
from typing import Any, Callable, Dict, Iterator, List

import torch

from fattr.demo.model import make_model
from fattr.demo.prior import border_mask, make_penalty
from fattr.demo.train import make_step

from .timing import interleaved


@contextlib.contextmanager
def inductor_variant() -> Iterator[None]:
    """Inductor without its max-pool-backward decomposition (``scatter_add``; its own lowering is used
    instead) and without layout optimisation, no compile caches (the cache key does not see the table)."""
    from torch._inductor import config, decomposition

    key = torch.ops.aten.max_pool2d_with_indices_backward.default
    tables = [decomposition.decompositions, decomposition.fast_random_decomps()]
    saved = [table.pop(key, None) for table in tables]
    try:
        with config.patch(layout_optimization=False, force_disable_caches=True):
            yield
    finally:
        for table, value in zip(tables, saved):
            if value is not None:
                table[key] = value


def own_backend(gm: torch.fx.GraphModule, example_inputs: List[torch.Tensor]) -> Any:
    """Inductor as the variant above, for one compile: a caller's backend, no global table edited."""
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    table = dict(select_decomp_table())
    table.pop(torch.ops.aten.max_pool2d_with_indices_backward.default, None)
    return compile_fx(gm, example_inputs, decompositions=table,
                      config_patches={"layout_optimization": False, "force_disable_caches": True})


def steps(training: bool, batch: int, n_steps: int, variant: bool,
          layout_off: bool = False, own: bool = False) -> Dict[str, Callable[[], object]]:
    """name -> a zero-argument training step on a fixed batch: eager, compiled (and the Inductor variant).
    Each is compiled (and checked against eager's first step) here."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(batch, 1, 8, 8, generator=g), torch.randint(0, 10, (batch,), generator=g)
    penalty = make_penalty(border_mask(8), weight=1.0, n_steps=n_steps)
    names = (["eager", "compiled"] + (["compiled_inductor_variant"] if variant else [])
             + (["compiled_layout_off"] if layout_off else []) + (["compiled_own_backend"] if own else []))
    out: Dict[str, Callable[[], object]] = {}
    first: Dict[str, List[torch.Tensor]] = {}
    for name in names:
        model = make_model(0).train(training)
        step = make_step(model, torch.optim.Adam(model.parameters(), lr=1e-3), penalty)
        options = {"layout_optimization": False} if name == "compiled_layout_off" else None
        backend: Any = own_backend if name == "compiled_own_backend" else "inductor"
        fn = step if name == "eager" else torch.compile(step, backend=backend, options=options)
        context = inductor_variant() if name.endswith("variant") else contextlib.nullcontext()
        start = time.perf_counter()
        with context:
            fn(x, y)  # compiles
        print(f"  {name}: first step {time.perf_counter() - start:.1f} s", flush=True)
        first[name] = [p.detach().clone() for p in model.parameters()]
        out[name] = lambda fn=fn: fn(x, y)
    for name in names[1:]:  # one Adam step from the same weights: the same parameters after it
        for a, b in zip(first[name], first["eager"], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    return out


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", nargs="+", choices=("train", "eval"), default=["train"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--n-steps", type=int, default=2, help="IG steps in the prior")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--inductor-variant", action="store_true")
    parser.add_argument("--layout-off", action="store_true")
    parser.add_argument("--own-backend", action="store_true")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch}, "
          f"IG n_steps={args.n_steps}, {args.runs} interleaved runs, {args.clock} clock")
    for mode in args.modes:
        print(f"{mode} mode:")
        timings = interleaved(steps(mode == "train", args.batch, args.n_steps, args.inductor_variant,
                                    args.layout_off, args.own_backend),
                              runs=args.runs, warmup=2, clock=args.clock)
        eager = timings["eager"].median
        for name, t in timings.items():
            print(f"  {name:28s} {t.median * 1e3:7.2f} ms/step  compiled/eager {t.median / eager:.2f}")


if __name__ == "__main__":
    main()
