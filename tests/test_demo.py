"""python -m fattr.demo: the quick run end to end, the attribution prior, and the demo's pieces."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

import fattr  # noqa: E402
from fattr.demo import attribute, prior  # noqa: E402
from fattr.demo.__main__ import main  # noqa: E402
from fattr.demo.data import Digits, load, one_per_class  # noqa: E402
from fattr.demo.model import LAYER, make_model  # noqa: E402
from fattr.demo.train import accuracy, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_run_writes_its_three_files(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "fattr.demo", "--quick", "--out", str(out)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(r"\[\s*\d+\.\ds\] plain CNN: epoch 1/", run.stdout)  # progress while it works
    for name in ("attributions.png", "prior.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG") and 5_000 < len(data) < 1_000_000
    report = (out / "report.md").read_text()
    for spec in attribute.image_methods():
        assert f"| `{spec.name}` |" in report
    assert "**failed**" not in report
    assert "## Attribution prior" in report and "held-out accuracy" in report
    if "| IntegratedGradients |" in report:  # Captum installed: IG agrees to float32 rounding
        row = next(line for line in report.splitlines() if line.startswith("| `integrated_gradients` |"))
        assert float(row.split("|")[6]) < 1e-4


def test_failure_is_a_clear_message_and_nonzero_exit(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["--quick", "--out", str(blocker / "out")]) == 1
    err = capsys.readouterr().err
    assert "fattr.demo: error: cannot create the output folder" in err and "Traceback" not in err
    assert main(["--quick", "--threads", "0", "--out", str(tmp_path / "x")]) == 1
    assert "--threads: expected a positive int, got 0" in capsys.readouterr().err


# ---------------------------------------------------------------- the attribution prior


@pytest.fixture(scope="module")
def small_digits() -> Digits:
    data = load(seed=0)
    return Digits(data.train_x[:600], data.train_y[:600], data.test_x[:200], data.test_y[:200])


def test_prior_gives_a_smaller_border_share(small_digits):
    plain = make_model(1)
    plain_acc = train(plain, small_digits, epochs=3, seed=2)
    result = prior.run(plain, plain_acc, small_digits, epochs=3, model_seed=1, batch_seed=2, log=lambda m: None)
    assert result.prior_share < 0.5 * result.plain_share
    assert result.plain_accuracy > 0.5 and result.prior_accuracy > 0.5  # both actually learned


def test_prior_penalty_is_differentiable_in_the_parameters(small_digits):
    model = make_model(3)
    x, y = small_digits.train_x[:8], small_digits.train_y[:8]
    x = x + 0.1  # ink on every border pixel, so the penalty is not zero
    value = prior.make_penalty(prior.border_mask(), 1.0, 4)(model, x, y)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    grads = torch.autograd.grad(value, weights)  # (the last bias does not change input gradients)
    assert value > 0 and all(torch.isfinite(g).all() for g in grads)
    assert all(float(g.abs().sum()) > 0 for g in grads)


def test_border_mask_and_share():
    mask = prior.border_mask(8, 1)
    assert int(mask.sum()) == 28 and not mask[1:7, 1:7].any()
    attr = torch.zeros(2, 1, 8, 8)
    attr[0, 0, 0, 0] = -3.0  # border
    attr[1, 0, 4, 4] = 1.0  # centre
    assert prior.border_share(attr, mask) == pytest.approx(0.75)
    assert prior.border_share(torch.zeros(1, 1, 8, 8), mask) == 0.0


# ---------------------------------------------------------------- pieces


def test_seeds_make_runs_repeatable_without_touching_the_global_rng():
    state = torch.random.get_rng_state()
    a, b = make_model(5), make_model(5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(next(make_model(6).parameters()), next(a.parameters()))
    assert torch.equal(torch.random.get_rng_state(), state)
    d1, d2 = load(3), load(3)
    assert torch.equal(d1.test_y, d2.test_y) and not torch.equal(load(4).test_y, d1.test_y)


def test_data_split_and_digits_shown():
    data = load(0)
    assert data.train_x.shape[1:] == (1, 8, 8) and data.train_x.shape[0] + data.test_x.shape[0] == 1797
    assert 0.0 <= float(data.train_x.min()) and float(data.train_x.max()) <= 1.0
    rows = one_per_class(data.test_y)
    assert data.test_y[rows].tolist() == list(range(8))


def test_every_registered_method_is_one_call_with_an_image_sized_picture(small_digits):
    model = make_model(1)
    x, y = small_digits.test_x[:3], small_digits.test_y[:3]
    outcomes = attribute.run_all(model, LAYER, x, y, small_digits.train_x[:4], seed=0, log=lambda m: None)
    assert [o.name for o in outcomes] == [s.name for s in attribute.image_methods()]
    for o in outcomes:
        assert o.error is None, (o.name, o.error, o.note)
        if o.picture is not None:
            assert o.picture.shape == (3, 1, 8, 8), o.name
        if o.spec.delta:
            assert o.delta is not None and o.delta >= 0


def test_picture_sums_channels_and_upsamples_layer_maps():
    layer_attr = torch.randn(2, 32, 4, 4)
    pic, note = attribute.picture(layer_attr, (8, 8))
    assert pic.shape == (2, 1, 8, 8) and "upsampled" in note
    # bilinear upsampling keeps the mean of a 2x upsampled map close to the original's
    torch.testing.assert_close(pic.mean(dim=(2, 3)), layer_attr.sum(1, keepdim=True).mean(dim=(2, 3)),
                               rtol=0.0, atol=0.25)
    same, _ = attribute.picture(torch.randn(2, 1, 8, 8), (8, 8))
    assert same.shape == (2, 1, 8, 8)
    assert attribute.picture((torch.randn(2, 3), torch.randn(2, 3)), (8, 8))[0] is None
    assert attribute.picture(torch.randn(2, 10), (8, 8))[0] is None


def test_trained_model_accuracy_helper(small_digits):
    model = make_model(1)
    before = accuracy(model, small_digits.test_x, small_digits.test_y)
    after = train(model, small_digits, epochs=2, seed=2)
    assert after > before + 0.3
    assert not model.training


def test_report_table_with_and_without_captum():
    from types import SimpleNamespace

    from fattr.demo.captum_ref import Comparison
    from fattr.demo.report import method_table

    spec = SimpleNamespace(layer=False)
    ok = attribute.Outcome("deeplift", spec, seconds=0.01, delta=1e-6)
    broken = attribute.Outcome("other", SimpleNamespace(layer=True), error="ValueError: boom")
    off = Comparison("DeepLift", max_abs_diff=0.7, max_abs=4.8, delta=0.3, seconds=0.009)
    table = method_table([ok, broken], {"deeplift": off}, "conv3", captum=True)
    assert "| DeepLift | 7.00e-01 | 4.8 | 9.0 | 3.00e-01 |" in table
    assert "Captum's error here" in table and "**failed**: ValueError: boom" in table
    assert "| `other` | layer `conv3` | – |" in table
    plain = method_table([ok], {}, "conv3", captum=False)
    assert "Captum" not in plain and plain.splitlines()[2].startswith("| `deeplift` | input pixels | 10.0 | 1.00e-06")
