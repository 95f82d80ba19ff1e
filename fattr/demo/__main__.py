"""``python -m fattr.demo [--out DIR] [--quick] [--seed N] [--threads N] [--timeout S]``."""
from __future__ import annotations

import argparse
import faulthandler
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional

MIN_ACCURACY = 0.95


class DemoError(RuntimeError):
    """A failure with a message for the user (no traceback needed)."""


def parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fattr.demo", description=__doc__)
    parser.add_argument("--out", default="demo_out", type=Path, help="output folder (default: ./demo_out)")
    parser.add_argument("--quick", action="store_true", help="short training, for tests (seconds)")
    parser.add_argument("--seed", default=0, type=int, help="seed of every random draw (default: 0)")
    parser.add_argument("--threads", default=1, type=int,
                        help="torch CPU threads (default: 1; the model is tiny, and one thread is the fastest "
                             "and steadiest on a busy machine)")
    parser.add_argument("--timeout", default=600.0, type=float,
                        help="abort with a traceback after this many seconds (default: 600)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:5.1f}s] {message}", flush=True)

    log("loading torch, fattr, matplotlib, scikit-learn")
    try:
        import matplotlib  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as e:
        raise DemoError(f"{e.name} is missing: the demo needs pip install 'fattr[demo]' (or run make demo)")
    import torch

    if args.threads < 1:
        raise DemoError(f"--threads: expected a positive int, got {args.threads}")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        _steps(args, log, start)
    finally:
        torch.set_num_threads(threads)


def _steps(args: argparse.Namespace, log: Callable[[str], None], start: float) -> None:
    import torch

    import fattr

    from . import captum_ref, figures, lm, metrics, prior, report
    from .attribute import image_methods, run_all
    from .data import load, one_per_class
    from .model import LAYER, make_model
    from .train import train

    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DemoError(f"cannot create the output folder {out}: {e}")
    seed, quick = args.seed, args.quick
    epochs, prior_epochs = (3, 2) if quick else (10, 6)

    data = load(seed)
    log(f"digits: {data.train_x.shape[0]} training and {data.test_x.shape[0]} held-out images of 8x8 pixels")
    model_seed, batch_seed = seed + 1, seed + 2
    model = make_model(model_seed)
    t0 = time.perf_counter()
    accuracy = train(model, data, epochs=epochs, seed=batch_seed, log=log, name="plain CNN")
    train_seconds = time.perf_counter() - t0
    log(f"plain CNN: held-out accuracy {accuracy:.1%}")
    if not quick and accuracy < MIN_ACCURACY:
        raise DemoError(f"the CNN reached {accuracy:.1%} held-out accuracy, below {MIN_ACCURACY:.0%}")

    rows = one_per_class(data.test_y)
    x, y = data.test_x[rows], data.test_y[rows]
    with torch.no_grad():
        predictions = model(x).argmax(1)
    pick = torch.randperm(data.train_x.shape[0], generator=torch.Generator().manual_seed(seed + 3))[:16]
    distribution = data.train_x[pick]
    names = [spec.name for spec in image_methods()]
    log(f"attributing {x.shape[0]} held-out digits with {len(names)} registered methods: {', '.join(names)}")
    repeats = 1 if quick else 3
    outcomes = run_all(model, LAYER, x, y, distribution, seed + 4, log=log, repeats=repeats)

    comparisons = {}
    captum = captum_ref.available()
    if captum:
        log("comparing with Captum")
        for o in outcomes:
            if o.error is None:
                try:
                    comparisons[o.name] = captum_ref.compare(o.spec, o.attributions, model, LAYER, x, y,
                                                             distribution, repeats=repeats)
                except Exception as e:  # Captum failing is a note in the report, not a demo failure
                    comparisons[o.name] = captum_ref.Comparison(captum_ref.captum_class(o.spec),
                                                                note=f"Captum failed: {type(e).__name__}: {e}")
    else:
        log("Captum not installed: skipping the comparison")

    log(f"training a second copy with an attribution prior ({prior_epochs} epochs)")
    result = prior.run(model, accuracy, data, epochs=prior_epochs, model_seed=model_seed, batch_seed=batch_seed,
                       log=log)
    log(f"attribution prior: border share {result.plain_share:.1%} -> {result.prior_share:.1%}, "
        f"accuracy {result.plain_accuracy:.1%} -> {result.prior_accuracy:.1%}")

    log("evaluating the attributions (deletion, insertion, infidelity)")
    metrics_table = metrics.table(model, x, y, outcomes, seed + 5)

    log("drawing")
    figures.attributions_png(out / "attributions.png", x, y, predictions, outcomes, LAYER)
    with torch.no_grad():
        plain_ig = fattr.integrated_gradients(model, x, n_steps=32, target=y)
        prior_ig = fattr.integrated_gradients(result.prior_model, x, n_steps=32, target=y)
    figures.prior_png(out / "prior.png", x, plain_ig, prior_ig, result)
    report.write(out / "report.md", quick=quick, seed=seed, accuracy=accuracy, train_seconds=train_seconds,
                 epochs=epochs, n_digits=x.shape[0], outcomes=outcomes, comparisons=comparisons, captum=captum,
                 layer=LAYER, prior=result, prior_epochs=prior_epochs, total_seconds=time.perf_counter() - start,
                 repeats=repeats, metrics=metrics_table)
    log(f"wrote {out / 'attributions.png'}, {out / 'prior.png'}, {out / 'report.md'}")
    # language models: a tiny causal transformer explained token by token (fattr.token_attribution)
    log("language model: training a tiny causal transformer on positional recall")
    with open(out / "report.md", "a") as f:
        f.write(lm.run(out, quick, seed, log))
    log(f"wrote {out / 'lm.png'} and the report's language-model section")
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        details = "\n".join(f"  {o.name}: {o.error}" for o in failed)
        raise DemoError(f"{len(failed)} method(s) failed (the report marks them):\n{details}\n"
                        f"the first one's traceback:\n{failed[0].note}")
    log(f"done in {time.perf_counter() - start:.1f} s")


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    if args.timeout > 0:  # never hang, even inside a C call: dump the stacks and exit
        try:
            faulthandler.dump_traceback_later(args.timeout, exit=True, file=sys.__stderr__)  # type: ignore[arg-type]
        except (AttributeError, ValueError, OSError):  # no real stderr (embedded interpreters)
            pass
    try:
        run(args)
    except DemoError as e:
        print(f"fattr.demo: error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("fattr.demo: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        import traceback

        traceback.print_exc()
        print(f"fattr.demo: error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        faulthandler.cancel_dump_traceback_later()
    return 0


if __name__ == "__main__":
    sys.exit(main())
