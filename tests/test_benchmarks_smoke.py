"""The benchmark harness runs end to end (tiny models, one timed run), so it cannot rot.

Speed is not asserted here (timings on a shared CI machine are noise); what is
asserted is that every pair either agrees with its references or is reported as
skipped / not applicable, that the JSON records have the documented keys, and
that the chunk_size memory measurement produces numbers.
"""
from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("captum")

from benchmarks import pairs, run  # noqa: E402

KEYS = {"case", "method", "impl", "median_s", "min_s", "max_s", "peak_mem_mb"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "records.json"
    out = []

    class Tee:  # capture the table without capsys (module-scoped fixture)
        def write(self, s):
            out.append(s)

        def flush(self):
            pass

    stdout, sys.stdout = sys.stdout, Tee()
    try:
        status = run.main(["--smoke", "--json", str(path)])
    finally:
        sys.stdout = stdout
    return status, "".join(out), json.loads(path.read_text())


def test_exit_status_and_table(smoke):
    status, table, _ = smoke
    assert status == 0, table
    assert "| case | method | fattr ms |" in table
    assert "**error**" not in table, table
    assert "**mismatch**" not in table, table


def test_every_registered_method_is_paired_or_listed(smoke):
    _, table, _ = smoke
    for name in pairs.unpaired_methods():
        assert name in table.split("without a benchmark pair:")[-1]


def test_records(smoke):
    _, _, records = smoke
    assert records
    for r in records:
        assert KEYS <= set(r), r
    timed = [r for r in records if r["median_s"] is not None]
    assert all(r["min_s"] <= r["median_s"] <= r["max_s"] for r in timed)
    impls = {(r["case"], r["impl"]) for r in records if r["method"] == "integrated_gradients"}
    assert {("cnn", "fattr"), ("cnn", "captum"), ("cnn", "floor")} <= impls
    memory = [r for r in records if r["method"].startswith("integrated_gradients[")]
    assert len(memory) == 3 and all(r["peak_mem_mb"] is not None and r["peak_mem_mb"] >= 0 for r in memory)


def test_unknown_method_is_refused():
    with pytest.raises(SystemExit, match="unknown method"):
        pairs.select(["no_such_method"])


def test_compiled_over_eager_as_called_and_under_no_grad(tmp_path, capsys):
    """With --compile, a row reports compiled/eager as called and under no_grad, and the floor's compiled/eager,
    in the table and the JSON."""
    path = tmp_path / "records.json"
    status = run.main(["--smoke", "--cases", "mlp_tiny", "--methods", "saliency", "--compile", "all",
                       "--no-memory", "--json", str(path)])
    table = capsys.readouterr().out
    assert status == 0, table
    assert "| compiled/eager | compiled/eager no_grad | floor compiled/eager |" in table
    row = next(line for line in table.splitlines() if line.startswith("| mlp_tiny | saliency |"))
    as_called, no_grad, floor = row.split("|")[9:12]
    assert float(as_called) > 0 and float(no_grad) > 0 and float(floor) > 0, row
    records = {r["impl"]: r for r in json.loads(path.read_text())}
    assert {"fattr", "fattr_compiled", "fattr_no_grad", "fattr_compiled_no_grad", "floor_compiled"} <= set(records)
    for compiled, eager in (("fattr_compiled", "fattr"), ("fattr_compiled_no_grad", "fattr_no_grad"),
                            ("floor_compiled", "floor")):
        rec = records[compiled]
        assert rec["compile_s"] > 0
        assert rec["compiled_over_eager"] == pytest.approx(rec["median_s"] / records[eager]["median_s"])


def test_overhead_against_a_revision_times_its_own_copy():
    """``benchmarks.overhead --against REV`` imports REV's fattr as a separate package and times it beside this
    tree's: one row against HEAD prints both times and their paired ratio (a subprocess: the copy stays out of
    this process's modules)."""
    import re
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "benchmarks.overhead", "saliency", "--against", "HEAD"], cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    match = re.search(r"new\s+([\d.]+) us\s+HEAD\s+([\d.]+) us\s+floor\s+([\d.]+) us.*new/HEAD ([\d.]+)", line)
    assert match is not None, line
    assert all(float(v) > 0 for v in match.groups()), line
