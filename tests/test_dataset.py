"""``attribute_dataset`` and ``AttributionStore`` in one process: results, extras, resumption,
refusals, bad input, progress. The multi-process runs are in ``test_dataset_distributed.py``."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import TensorDataset

pytest.importorskip("zarr")

import fattr  # noqa: E402
from fattr._src.dataset import sharding  # noqa: E402
from conftest import make_cnn, make_mlp, make_two_input, randn  # noqa: E402

N, D, C = 22, 5, 3


def mlp_data(n=N, labels=True):
    x = randn(n, D, seed=5)
    y = torch.arange(n) % C
    return TensorDataset(x, y) if labels else [x[i] for i in range(n)]


def run(out, method=fattr.integrated_gradients, model=None, data=None, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("batch_size", 8)
    return fattr.attribute_dataset(method, model if model is not None else make_mlp(), data if data is not None
                                   else mlp_data(), out, **kwargs)


class Flaky(torch.utils.data.Dataset):
    """``mlp_data`` that raises on index ``fail_at`` while ``armed``, and records what it served."""

    def __init__(self, fail_at=None):
        self.data, self.fail_at, self.armed, self.served = mlp_data(), fail_at, True, []

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        if self.armed and i == self.fail_at:
            raise RuntimeError("killed")
        self.served.append(i)
        return self.data[i]


# ----------------------------------------------------------------------------- results

def test_store_holds_the_method_applied_to_each_batch(tmp_path):
    model, data = make_mlp(), mlp_data()
    store = run(tmp_path / "s", model=model, data=data, target="label", n_steps=16, return_delta=True,
                save_output=True)
    x, y = data.tensors
    assert len(store) == N and store.complete and store.missing() == []
    for start in range(0, N, 8):  # each chunk is exactly one call of the method on its batch
        attr, delta = fattr.integrated_gradients(model, x[start:start + 8], n_steps=16, target=y[start:start + 8],
                                                 return_delta=True)
        assert torch.equal(store[start:start + 8], attr)
        assert torch.equal(store.delta[start:start + 8], delta)
    whole = fattr.integrated_gradients(model, x, n_steps=16, target=y)  # and batches do not matter
    torch.testing.assert_close(store[:], whole, rtol=0, atol=1e-12)
    assert torch.equal(store.target[:], y)
    torch.testing.assert_close(store.output[:], model(x).detach(), rtol=0, atol=1e-12)
    assert store[3].shape == (D,) and torch.equal(store[3], store[[3]][0]) and torch.equal(store[-1], store[N - 1])
    picked = store[torch.tensor([5, 1, 5, 21])]  # any order, repeats allowed
    assert all(torch.equal(picked[k], store[i]) for k, i in enumerate([5, 1, 5, 21])) and store[[]].shape == (0, D)
    assert torch.equal(store[::3], store[:][::3])
    assert np.array_equal(store.to_numpy(), store[:].numpy())
    ident = store.manifest["identity"]
    assert ident["method"] == "integrated_gradients" and ident["options"]["n_steps"] == 16
    assert ident["versions"] == {"fattr": fattr.__version__, "torch": torch.__version__}
    assert store.manifest["layout"]["arrays"]["attributions/0"] == {"shape": [D], "dtype": "float64"}
    assert "integrated_gradients" in repr(store)
    reopened = fattr.AttributionStore(str(tmp_path / "s"))
    assert torch.equal(reopened[:], store[:]) and reopened.manifest == store.manifest


def test_model_and_data_are_left_alone_and_grad_mode_does_not_matter(tmp_path):
    model, data = make_cnn(), [(randn(2, 6, 6, seed=i), i % 4) for i in range(10)]
    model.train()  # training flags, buffers and parameters must all stay as they are
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    copies = [(x.clone(), y) for x, y in data]
    a = run(tmp_path / "a", method=fattr.integrated_gradients, model=model, data=data, target="label", n_steps=4)
    with torch.no_grad():
        b = run(tmp_path / "b", method=fattr.integrated_gradients, model=model, data=data, target="label",
                n_steps=4)
    assert torch.equal(a[:], b[:])
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())
    assert all(torch.equal(x, c) and y == d for (x, y), (c, d) in zip(data, copies, strict=True))


@pytest.mark.parametrize("rule", ["predicted", 1, "callable"])
def test_target_rules(tmp_path, rule):
    model, data = make_mlp(), mlp_data()
    x = data.tensors[0]
    target = (lambda output, batch: output.argmin(1)) if rule == "callable" else rule
    store = run(tmp_path / "s", model=model, data=data, target=target, method=fattr.saliency)
    expected = {"predicted": model(x).argmax(1), 1: torch.ones(N, dtype=torch.long),
                "callable": model(x).argmin(1)}[rule]
    assert torch.equal(store.target[:], expected)
    assert torch.equal(store[:], fattr.saliency(model, x, target=expected))


def test_multi_input_items_and_layer_methods(tmp_path):
    model = make_two_input()
    x1, x2, scale = randn(N, 4, seed=1), randn(N, 2, 3, seed=2), torch.ones(1, 1, dtype=torch.float64)
    items = [((x1[i], x2[i]), i % 3) for i in range(N)]
    store = run(tmp_path / "s", model=model, data=items, target="label", args=(scale,), baselines=(0.0, 0.1),
                n_steps=8)
    attr = fattr.integrated_gradients(model, (x1[:8], x2[:8]), (0.0, 0.1), n_steps=8, target=[i % 3 for i in range(8)],
                                      args=(scale,))
    got = store[0:8]
    assert isinstance(got, tuple) and len(got) == 2 and all(torch.equal(a, b) for a, b in zip(got, attr, strict=True))
    assert isinstance(store[2], tuple) and store[2][1].shape == (2, 3)
    assert isinstance(store.to_numpy(), tuple)
    cnn, images = make_cnn(), randn(N, 2, 6, 6, seed=3)
    layered = run(tmp_path / "l", method=fattr.layer_integrated_gradients, model=cnn, data=list(images),
                  target=2, layer=cnn.conv2, n_steps=8)
    direct = fattr.layer_integrated_gradients(cnn, "conv2", images[16:], target=2, n_steps=8)
    assert layered[16:].shape == (N - 16, 4, 4, 4) and torch.equal(layered[16:], direct)
    assert layered.manifest["identity"]["options"]["layer"] == {"module": "conv2"}


class Masked(torch.nn.Module):
    """``f(x, mask=...)``: a model with a per-example keyword argument (an attention mask, say)."""

    def __init__(self):
        super().__init__()
        self.net = make_mlp()

    def forward(self, x, mask=None, scale=1.0):
        return self.net(x * mask) * scale


def test_items_carry_per_example_keyword_arguments(tmp_path):
    model, x = Masked(), randn(N, D, seed=6)
    mask = (randn(N, D, seed=7) > 0).double()
    items = [{"inputs": x[i], "label": i % C, "kwargs": {"mask": mask[i]}} for i in range(N)]
    store = run(tmp_path / "s", model=model, data=items, target="label", n_steps=8, kwargs={"scale": 2.0},
                save_output=True)
    y = torch.arange(N) % C
    for start in (0, 8, 16):
        direct = fattr.integrated_gradients(model, x[start:start + 8], n_steps=8, target=y[start:start + 8],
                                            kwargs={"mask": mask[start:start + 8], "scale": 2.0})
        assert torch.equal(store[start:start + 8], direct)
    torch.testing.assert_close(store.output[:], model(x, mask=mask, scale=2.0).detach(), rtol=0, atol=1e-12)
    assert (store[:][mask == 0] == 0).all()  # masked features get nothing: the mask reached every path step
    with pytest.raises(TypeError, match=r"kwargs: expected names the dataset's items do not give, got \['mask'\]"):
        run(tmp_path / "t", model=model, data=items, target="label", kwargs={"mask": torch.ones(1, D)})
    with pytest.raises(TypeError, match=r"dataset: expected an item's kwargs to be per-example tensors \('mask'"):
        run(tmp_path / "t", model=model, data=[{"inputs": x[i], "kwargs": {"mask": "all"}} for i in range(N)])
    with pytest.raises(TypeError, match=r"dataset: expected items that are .* a dict with keys inputs, label, "
                                        r"kwargs, got a dict with keys \['image', 'label'\]"):
        run(tmp_path / "t", model=model, data=[{"image": x[i], "label": 0} for i in range(N)])


def test_metrics_hook(tmp_path):
    model, data = make_mlp(), mlp_data()

    def complete(model, inputs, attributions, target):
        return fattr.completeness_delta(model, inputs, None, attributions, target=target)

    store = run(tmp_path / "s", model=model, data=data, target="label", n_steps=16, return_delta=True,
                metrics={"delta": complete, "total": lambda m, x, a, t: a.sum(1)})
    torch.testing.assert_close(store.metrics["delta"][:], store.delta[:], rtol=0, atol=1e-12)
    torch.testing.assert_close(store.metrics["total"][:], store[:].sum(1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", [fattr.noise_tunnel(fattr.saliency, n_samples=3, stdevs=0.2), "gradient_shap"])
def test_stochastic_methods_draw_per_chunk_from_seed(tmp_path, method):
    extra = {"baselines": randn(4, D, seed=9), "n_samples": 3, "stdevs": 0.1} if method == "gradient_shap" else {}
    same = [randn(1, D, seed=4)[0]] * N  # every example the same: only the noise tells chunks apart
    a = run(tmp_path / "a", method=method, data=same, target=0, seed=3, **extra)
    b = run(tmp_path / "b", method=method, data=same, target=0, seed=3, **extra)
    c = run(tmp_path / "c", method=method, data=same, target=0, seed=4, **extra)
    assert torch.equal(a[:], b[:]) and not torch.equal(a[:], c[:])
    assert not torch.equal(a[0:8], a[8:16])  # chunks do not repeat each other's noise
    name = a.manifest["identity"]["method"]
    assert name == ("gradient_shap" if method == "gradient_shap" else "noise_tunnel(saliency)")
    if method != "gradient_shap":
        assert a.manifest["identity"]["noise_tunnel"]["dict"]["n_samples"] == 3


# ----------------------------------------------------------------------------- resumption

@pytest.mark.parametrize("method", ["integrated_gradients", "smoothgrad"])
def test_interrupted_job_resumes_to_the_same_store(tmp_path, method):
    reference = run(tmp_path / "ref", method=method, data=Flaky(), target="label")
    flaky = Flaky(fail_at=13)  # chunk 1 of [0, 8), [8, 16), [16, 22)
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path / "s", method=method, data=flaky, target="label")
    assert fattr.AttributionStore(tmp_path / "s").missing() == [1, 2]
    flaky.armed, flaky.served = False, []
    store = run(tmp_path / "s", method=method, data=flaky, target="label")
    assert sorted(flaky.served) == list(range(8, N))  # chunk 0 was not computed again
    assert store.complete and torch.equal(store[:], reference[:])
    assert torch.equal(store.target[:], reference.target[:])


def test_restart_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "s"
    run(out, target="label", n_steps=8)
    cases = [
        (dict(target="label", n_steps=9), ValueError, r"n_steps: expected 8, .* got 9"),
        (dict(target="label", method=fattr.saliency), ValueError, r"method: expected 'integrated"),
        (dict(target="label", n_steps=8, model=make_mlp(seed=7)), ValueError, r"model: expected"),
        (dict(target=0, n_steps=8), ValueError, r"target: expected 'label'"),
        (dict(target="label", n_steps=8, batch_size=4), ValueError, r"batch_size: expected 8"),
        (dict(target="label", n_steps=8, baselines=0.5), ValueError, r"baselines: expected None, .* got 0.5"),
        (dict(target="label", n_steps=8, method="integrated_gradients", baselines=torch.zeros(1, D)), ValueError,
         r"baselines: expected None, .* got a torch.float32 tensor of shape \(1, 5\) \(sha256 "),
        (dict(target="label", n_steps=8, data=mlp_data(n=N + 1)), ValueError, r"dataset: expected \{\"class\": .*\"length\": 22\}"),
        (dict(target="label", n_steps=8, resume=False), ValueError, r"resume: expected True"),
    ]
    for kwargs, kind, message in cases:
        kwargs = dict(kwargs)
        with pytest.raises(kind, match=message):
            run(out, method=kwargs.pop("method", fattr.integrated_gradients), model=kwargs.pop("model", None),
                data=kwargs.pop("data", None), **kwargs)
    # the same settings still resume, defaults given or not, the method by function or by name
    assert run(out, method="integrated_gradients", target="label", n_steps=8, baselines=None).complete


# ----------------------------------------------------------------------------- bad input

def test_bad_input_names_the_argument(tmp_path):
    model = make_mlp()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    cases = [
        (lambda: run(tmp_path / "a", method=lambda f, inputs: inputs), TypeError, ["method", "registered"]),
        (lambda: run(tmp_path / "a", method="integrated_gradient"), ValueError, ["method", "integrated_gradients"]),
        (lambda: run(tmp_path / "a", method=fattr.noise_tunnel(lambda f, inputs, target=None: inputs)), TypeError,
         ["method", "noise_tunnel of a registered"]),
        (lambda: run(tmp_path / "a", data=[{"x": torch.zeros(D)}] * 4), TypeError, ["dataset", "dict"]),
        (lambda: run(tmp_path / "a", data=[(torch.zeros(D), 0, 1)] * 4), TypeError, ["dataset", "tuple of 3"]),
        (lambda: run(tmp_path / "a", data=["text"] * 4), TypeError, ["dataset", "str"]),
        (lambda: run(tmp_path / "a", data=mlp_data(labels=False), target="label"), ValueError,
         ["target", "(inputs, label)", "float64 tensor of shape (5,)"]),
        (lambda: run(tmp_path / "a", data=[(torch.zeros(D), 0.5)] * 4, target="label"), TypeError,
         ["target", "integer labels", "float64"]),
        (lambda: run(tmp_path / "a", data=[]), ValueError, ["dataset", "empty"]),
        (lambda: run(tmp_path / "a", data=5), TypeError, ["dataset", "map-style"]),
        (lambda: run(other), ValueError, ["out", "other files"]),
        (lambda: run(tmp_path / "a", target="labels"), ValueError, ["target", "'predicted'"]),
        (lambda: run(tmp_path / "a", target=[0, 1]), TypeError, ["target", "from the dataset"]),
        (lambda: run(tmp_path / "a", n_step=8), TypeError, ["n_step", "n_steps"]),
        (lambda: run(tmp_path / "a", generator=torch.Generator()), TypeError, ["generator", "seed="]),
        (lambda: run(tmp_path / "a", inputs=torch.zeros(1, D)), TypeError, ["inputs", "passes it itself"]),
        (lambda: run(tmp_path / "a", baselines=torch.zeros(8, D)), ValueError, ["baselines", "(8, 5)", "dataset"]),
        (lambda: run(tmp_path / "a", method="gradient_shap"), TypeError, ["baselines", "distribution"]),
        (lambda: run(tmp_path / "a", method="layer_activation", model=model), TypeError, ["layer"]),
        (lambda: run(tmp_path / "a", method="layer_activation", layer="0", target=1), ValueError,
         ["target", "None"]),
        (lambda: run(tmp_path / "a", batch_size=0), ValueError, ["batch_size", "positive"]),
        (lambda: run(tmp_path / "a", progress=1), TypeError, ["progress", "True or False"]),
        (lambda: run(tmp_path / "a", metrics=[len]), TypeError, ["metrics", "dict"]),
        (lambda: fattr.attribute_dataset(fattr.saliency, model, mlp_data(), None), TypeError, ["out", "path"]),
        (lambda: fattr.AttributionStore(tmp_path / "nothing"), ValueError, ["out", "missing or empty"]),
        (lambda: fattr.AttributionStore(other), ValueError, ["out", "other files"]),
    ]
    for make, kind, words in cases:
        with pytest.raises(kind) as info:
            make()
        for word in words:
            assert word in str(info.value), (words, str(info.value))
    assert not (tmp_path / "a").exists()  # nothing was written by a refused call


def test_examples_of_other_shapes_are_refused(tmp_path):
    items = [torch.zeros(D, dtype=torch.float64)] * 8 + [torch.zeros(D + 1, dtype=torch.float64)] * 8
    with pytest.raises(ValueError, match=r"dataset: expected examples of one shape"):
        run(tmp_path / "s", model=lambda x: x.sum(1), data=items, batch_size=8)


def test_store_reads_are_checked(tmp_path):
    store = run(tmp_path / "s", method=fattr.saliency, model=lambda x: (x * x).sum(1))
    with pytest.raises(IndexError, match=r"index: expected an index in \[-22, 22\)"):
        store[22]
    with pytest.raises(TypeError, match="index"):
        store[np.zeros((2, 2), dtype=np.int64)]
    with pytest.raises(AttributeError, match="no delta"):
        store.delta
    with pytest.raises(AttributeError, match="no target"):
        store.target


# ----------------------------------------------------------------------------- progress

def test_progress_bar_counts_the_whole_job(tmp_path, capfd, monkeypatch):
    run(tmp_path / "tqdm", method=fattr.saliency, target=0, progress=True)
    assert "22/22" in capfd.readouterr().err
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # no tqdm: a plain line
    run(tmp_path / "line", method=fattr.saliency, target=0, progress=True)
    err = capfd.readouterr().err
    assert "fattr saliency: 22/22 examples (100.0%)" in err and "examples/s" in err and "ETA" in err
    run(tmp_path / "quiet", method=fattr.saliency, target=0, progress=False)
    assert capfd.readouterr().err == ""


# ----------------------------------------------------------------------------- properties

@given(pending=st.lists(st.integers(0, 500), unique=True, max_size=60).map(sorted), world=st.integers(1, 9))
def test_shards_are_disjoint_and_cover_every_chunk_once(pending, world):
    shards = [sharding.assign(pending, r, world) for r in range(world)]
    assert sorted(c for s in shards for c in s) == pending
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced


@given(n=st.integers(1, 40), batch=st.integers(1, 12))
def test_chunks_tile_the_indices(n, batch):
    spans = [sharding.bounds(c, n, batch) for c in range(sharding.n_chunks(n, batch))]
    assert [i for a, b in spans for i in range(a, b)] == list(range(n))
    assert all(0 < b - a <= batch for a, b in spans)


@given(n=st.integers(1, 12), batch=st.integers(1, 5), seed=st.integers(0, 3))
def test_store_equals_the_method_on_the_whole_dataset(tmp_path_factory, n, batch, seed):
    model, x = make_mlp(seed=seed), randn(n, D, seed=seed)
    y = torch.arange(n) % C
    store = run(tmp_path_factory.mktemp("p") / "s", model=model, data=TensorDataset(x, y), batch_size=batch,
                target="label", n_steps=8)
    torch.testing.assert_close(store[:], fattr.integrated_gradients(model, x, n_steps=8, target=y),
                               rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- command line

def test_command_line_in_process(tmp_path, monkeypatch, capsys):
    from fattr import dataset as cli
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    out = tmp_path / "s"
    assert cli.main(["smoothgrad", "--model", "_dataset_jobs:model", "--dataset", "_dataset_jobs:Images",
                     "--out", str(out), "--batch-size", "16", "--target", "predicted", "--option", "abs=False",
                     "--save-output", "--seed", "5", "--no-progress"]) == 0
    store = fattr.AttributionStore(out)
    ident = store.manifest["identity"]
    assert ident["method"] == "noise_tunnel(saliency)" and ident["options"]["abs"] is False and ident["seed"] == 5
    assert torch.equal(store.target[:], store.output[:].argmax(1))
    assert "44 examples of noise_tunnel(saliency)" in capsys.readouterr().err
    assert cli.value("(0, 1.5)") == (0, 1.5) and cli.value("conv2") == "conv2"
    assert cli.value("_dataset_jobs:N") == 44
    with pytest.raises(SystemExit, match="--model: expected module:attribute"):
        cli.main(["saliency", "--model", "nomodule", "--dataset", "_dataset_jobs:Images", "--out", str(out)])
    with pytest.raises(SystemExit, match="--dataset: cannot import"):
        cli.main(["saliency", "--model", "_dataset_jobs:model", "--dataset", "_dataset_jobs:Nope", "--out", str(out)])
    with pytest.raises(SystemExit, match="--option: expected KEY=VALUE"):
        cli.main(["saliency", "--model", "_dataset_jobs:model", "--dataset", "_dataset_jobs:Images", "--out",
                  str(out), "--option", "n_steps"])
