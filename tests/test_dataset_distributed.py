"""``attribute_dataset`` under ``torchrun --nproc_per_node=2`` (gloo, CPU), launched from the test.

Two ranks give the same store as one process, bit for bit (float64), with every dataset
index loaded once; a job whose rank 1 dies mid-run, restarted (from a script that initialises
the process group itself), computes only the missing chunks and ends with the same store; a
restart with another ``n_steps`` is refused.
Each launch uses ``--standalone`` (a free port) and has a timeout.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections import Counter

import pytest
import torch

pytest.importorskip("zarr")

import fattr  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
sys.path.insert(0, str(TESTS))
import _dataset_jobs as jobs  # noqa: E402

BATCH = 8
JOB = ["integrated_gradients", "--model", "_dataset_jobs:model", "--dataset", "_dataset_jobs:Images",
       "--batch-size", str(BATCH), "--target", "label", "--option", "n_steps=8", "--option", "return_delta=True"]
TIMEOUT = 100


def torchrun(out, log=None, fail_at=None, nproc=2, progress=False, script=False):
    """``python -m fattr.dataset`` under torchrun, or (``script``) ``_dataset_jobs.main``, which
    initialises the process group itself."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]))
    env.pop("FATTR_TEST_FAIL_AT", None)
    env.pop("FATTR_TEST_LOG", None)
    if log is not None:
        os.makedirs(log, exist_ok=True)
        env["FATTR_TEST_LOG"] = str(log)
    if fail_at is not None:
        env["FATTR_TEST_FAIL_AT"] = str(fail_at)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    if script:
        command += ["-m", "_dataset_jobs", str(out)]
    else:
        command += ["-m", "fattr.dataset", *JOB, "--out", str(out)] + ([] if progress else ["--no-progress"])
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)


def accessed(log):
    """Indices each process loaded: {pid: [indices]}."""
    return {p.name: [int(line) for line in p.read_text().split()] for p in pathlib.Path(log).iterdir()}


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The reference: the same job in this process, on one thread like the ranks."""
    out = tmp_path_factory.mktemp("single") / "store"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fattr.attribute_dataset(fattr.integrated_gradients, jobs.model(), jobs.Images(), out,
                                       batch_size=BATCH, target="label", n_steps=8, return_delta=True,
                                       progress=False)
    finally:
        torch.set_num_threads(threads)


def assert_same_store(a, b):
    assert a.complete and b.complete
    assert a.manifest["identity"] == b.manifest["identity"]
    assert a.manifest["layout"] == b.manifest["layout"]
    for name in ("attributions", "delta", "target"):
        x, y = getattr(a, name).to_numpy(), getattr(b, name).to_numpy()
        assert x.dtype == y.dtype and x.shape == y.shape
        assert (x == y).all(), name  # bit for bit


def test_two_ranks_equal_one_process(single, tmp_path):
    run = torchrun(tmp_path / "store", log=tmp_path / "log")
    assert run.returncode == 0, run.stderr[-3000:]
    assert_same_store(fattr.AttributionStore(tmp_path / "store"), single)
    loads = accessed(tmp_path / "log")
    assert len(loads) == 2 and all(loads.values())             # both ranks worked
    counts = Counter(i for indices in loads.values() for i in indices)
    assert sorted(counts) == list(range(jobs.N)) and set(counts.values()) == {1}  # every index once
    assert float(single.delta.to_numpy().__abs__().max()) < 1e-2  # IG's completeness, sanity


def test_killed_rank_restarts_where_it_stopped(single, tmp_path):
    out = tmp_path / "store"
    # chunks: rank 0 makes chunk 0 while creating the store, then the ranks share [1..5]: rank 1 takes
    # 1, 3, 5 and rank 0 takes 2, 4. Rank 1 dies while loading chunk 3 (index 24).
    failed = torchrun(out, log=tmp_path / "log1", fail_at=3 * BATCH)
    assert failed.returncode != 0
    assert "injected failure at index 24" in failed.stderr + failed.stdout
    partial = fattr.AttributionStore(out)
    missing = partial.missing()
    assert 3 in missing and {0, 1}.isdisjoint(missing)
    with pytest.raises(ValueError, match="not computed yet"):
        partial[3 * BATCH]
    # another n_steps is refused, naming it; the store is left as it was
    with pytest.raises(ValueError, match=r"n_steps: expected 8, the value of the store .* got 16"):
        fattr.attribute_dataset(fattr.integrated_gradients, jobs.model(), jobs.Images(), out, batch_size=BATCH,
                                target="label", n_steps=16, return_delta=True, progress=False)
    assert partial.missing() == missing
    resumed = torchrun(out, log=tmp_path / "log2", script=True)  # the user's own process group this time
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "fattr integrated_gradients" in resumed.stderr and f"{jobs.N}/{jobs.N}" in resumed.stderr  # rank 0's bar
    loads = Counter(i for indices in accessed(tmp_path / "log2").values() for i in indices)
    expected = [i for c in missing for i in range(c * BATCH, min(jobs.N, (c + 1) * BATCH))]
    assert sorted(loads) == expected and set(loads.values()) == {1}  # only what was missing, once
    assert_same_store(fattr.AttributionStore(out), single)
    assert not list(pathlib.Path(out).rglob("*.partial"))


def test_command_line_help():
    run = subprocess.run([sys.executable, "-m", "fattr.dataset", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert run.returncode == 0
    assert "torchrun --nproc_per_node" in run.stdout and "--option" in run.stdout
