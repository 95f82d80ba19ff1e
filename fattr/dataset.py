"""``python -m fattr.dataset``: :func:`fattr.attribute_dataset` from the command line.

The model and the dataset are ``module:attribute`` import paths (an object, or a
function called with no arguments that returns it), so a job runs on one process::

    python -m fattr.dataset integrated_gradients --model mypkg.models:build --dataset mypkg.data:val \\
        --out ig_val --target label --option n_steps=32 --option return_delta=True

or on N processes (each one its shard), unchanged::

    torchrun --nproc_per_node=N -m fattr.dataset integrated_gradients --model ... --dataset ... --out ...

Each ``--option KEY=VALUE`` is one keyword argument of the method; ``VALUE`` is a
Python literal (``32``, ``0.1``, ``True``, ``(0, 1)``), else a ``module:attribute``
import path, else a string (a layer's dotted name).
"""
from __future__ import annotations

import argparse
import ast
import importlib
import os
import sys
from typing import Any, Dict, List, Optional

from torch import nn


def load(path: str, what: str, *, build: bool = True) -> Any:
    """The object at ``module:attribute`` (``attribute`` may be dotted); called when it is a builder."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise SystemExit(f"fattr.dataset: --{what}: expected module:attribute, got {path!r}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise SystemExit(f"fattr.dataset: --{what}: cannot import {path!r}: {e}") from None
    if build and (isinstance(obj, type) or (callable(obj) and not isinstance(obj, nn.Module)
                                             and not hasattr(obj, "__getitem__"))):
        obj = obj()
    return obj


def value(text: str) -> Any:
    """A Python literal, else a ``module:attribute`` import path, else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    return load(text, "option", build=False) if ":" in text else text


def options(pairs: List[str]) -> Dict[str, Any]:
    found: Dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise SystemExit(f"fattr.dataset: --option: expected KEY=VALUE, got {pair!r}")
        found[key] = value(text)
    return found


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fattr.dataset",
        description="Attribute every example of a dataset with a fattr method into a resumable zarr store; "
                    "under torchrun each rank computes its own shard.",
        epilog="Example: torchrun --nproc_per_node=2 -m fattr.dataset integrated_gradients "
               "--model mypkg.models:build --dataset mypkg.data:val --out ig_val --target label "
               "--option n_steps=32")
    p.add_argument("method", help="a registered method's name (fattr.methods()), or module:attribute of a "
                                  "fattr.noise_tunnel of one")
    p.add_argument("--model", required=True, help="module:attribute of the model, or of a function returning it")
    p.add_argument("--dataset", required=True, help="module:attribute of a map-style dataset, or of a function "
                                                    "returning it")
    p.add_argument("--out", required=True, help="directory of the store (an existing store is resumed)")
    p.add_argument("--batch-size", type=int, default=32, help="examples per call and per chunk (default 32)")
    p.add_argument("--target", default=None, help="an int, 'label', 'predicted', or module:attribute of a "
                                                  "callable (output, batch) -> target (default: none)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a keyword argument of the method (repeat): n_steps=32, layer=features.3, ...")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers per rank (default 0)")
    p.add_argument("--device", default=None, help="device of each rank (default: cuda:LOCAL_RANK under "
                                                  "torchrun with CUDA, else the model's)")
    p.add_argument("--seed", type=int, default=0, help="seed of stochastic methods (default 0)")
    p.add_argument("--save-output", action="store_true", help="also store the model's output")
    p.add_argument("--no-resume", dest="resume", action="store_false", help="refuse an existing store at --out")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    from fattr._src.dataset.runner import attribute_dataset

    method: Any = load(args.method, "method", build=False) if ":" in args.method else args.method
    target = None if args.target is None else value(args.target)  # 'label' and 'predicted' stay strings
    store = attribute_dataset(method, load(args.model, "model"), load(args.dataset, "dataset"), args.out,
                              batch_size=args.batch_size, target=target, num_workers=args.num_workers,
                              resume=args.resume, progress=args.progress, device=args.device,
                              save_output=args.save_output, seed=args.seed, **options(args.option))
    if os.environ.get("RANK", "0") == "0":
        print(f"fattr.dataset: {len(store)} examples of {store.manifest['identity']['method']} in {args.out}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
