"""The contract every registered method keeps (optax-style common tests).

Parametrised over ``fattr.methods()``: adding a method to the registry adds it
here. Checked: output structure, purity (model, inputs, flags, hooks, buffers,
global RNG), ``no_grad`` invariance, determinism from a generator, ``chunk_size``
invariance, differentiability w.r.t. parameters on both sides of the attributed
layer (against finite differences), and thread safety.
"""
from __future__ import annotations

import copy
import dataclasses
import threading
import weakref

import numpy as np
import pytest
import torch
from torch import nn

import fattr

SPECS = {spec.name: spec for spec in fattr.methods()}
NAMES = sorted(SPECS)
N, D, C = 4, 6, 3


class Net(nn.Module):
    """Small smooth net; ``body.1`` is the attributed layer for layer methods."""

    def __init__(self, batchnorm: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(D, 8), nn.Linear(8, 8), nn.Tanh())
        self.norm = nn.BatchNorm1d(8) if batchnorm else nn.Identity()
        self.head = nn.Sequential(nn.Tanh(), nn.Linear(8, C))

    def forward(self, x):
        return self.head(self.norm(self.body(x)))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(D, 8), nn.Linear(2, 8)
        self.act = nn.Tanh()
        self.out = nn.Linear(8, C)

    def forward(self, x, y):
        return self.out(self.act(self.a(x) + self.b(y)))


def make_net(batchnorm=False) -> Net:
    torch.manual_seed(0)
    return Net(batchnorm).double()


def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    dist = torch.randn(5, D, generator=g, dtype=torch.float64)
    return x, dist


class AsImages(nn.Module):
    """``model`` on images: each input ``(N, k)`` arrives as ``(N, 1, h, w)`` and is flattened back."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.train(model.training)

    def forward(self, *xs, **kwargs):
        return self.model(*(x.flatten(1) for x in xs), **kwargs)


def _image(x):
    k = x.shape[1]
    h = 2 if k % 2 == 0 and k > 2 else 1
    return x.reshape(x.shape[0], 1, h, k // h)  # no -1: also for a batch of no examples


class CausalView(nn.Module):
    """``Net`` as a causal language model over 3 tokens (for ``inputs="token_ids"`` methods): one-hot ids,
    ``body.0`` as the embedding layer, a causal running mean, the rest of ``Net`` per position."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.train(net.training)

    def forward(self, ids, attention_mask=None):
        h = self.net.body[0](nn.functional.one_hot(ids, D).to(torch.float64))
        h = h.cumsum(1) / torch.arange(1, ids.shape[1] + 1, dtype=h.dtype)[:, None]
        h = self.net.norm(self.net.body[2](self.net.body[1](h)).flatten(0, 1)).unflatten(0, ids.shape)
        return self.net.head(h)


# one view per model and its embedding layer, read by the first call: a thread that reads a submodule attribute
# while another exports the model gets torch.export's stand-in for it (see fattr/_src/layer/locking.py)
_VIEWS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def call(spec, model, x, *, dist=None, seed=0, layer="body.1", **extra):
    """Call any registered method through :meth:`fattr.MethodSpec.call` (an images-only method sees the vectors
    as images; a token-ids method, prompts and targets derived from ``x`` on :class:`CausalView`)."""
    if spec.images:
        shapes = [t.shape for t in (x if isinstance(x, tuple) else (x,))]
        x = tuple(_image(t) for t in x) if isinstance(x, tuple) else _image(x)
        out = call(dataclasses.replace(spec, images=False), AsImages(model), x, dist=dist, seed=seed, layer=layer,
                   **extra)
        return tuple(o.reshape(s) for o, s in zip(out, shapes)) if isinstance(x, tuple) else out.reshape(shapes[0])
    target = extra.pop("target", [0, 1, 2, 0][: x.shape[0]] if isinstance(x, torch.Tensor) else 1)
    generator = torch.Generator().manual_seed(seed)
    if spec.inputs == "token_ids":  # ids < C, the view's vocabulary; a short target list: a batch mismatch
        ids, target_ids = (x.abs() * 7).long() % C, (x[:, :2].abs() * 11).long() % C
        view, embedding = _VIEWS.get(model) or _VIEWS.setdefault(model, (CausalView(model), model.body[0]))
        out = spec.call(view, ids, layer=embedding, target=target_ids[: len(target)],
                        generator=generator, **extra)
        return out.token_attr, out.values
    baselines = dist if spec.baselines == "distribution" else (0.1 if not isinstance(x, tuple) else (0.1, 0.0))
    return spec.call(model, x, layer=layer, baselines=baselines if spec.baselines != "none" else None,
                     target=target, generator=generator, **extra)


def leaves(out):
    return [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def snapshot(model: nn.Module):
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [p.grad for p in model.parameters()],
        "dicts": [sorted(vars(m)) for m in model.modules()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
                   len(getattr(m, "_backward_pre_hooks", {}))) for m in model.modules()],
    }


def assert_same_snapshot(a, b):
    assert a["training"] == b["training"]
    assert a["requires_grad"] == b["requires_grad"]
    assert all(g is None for g in b["grad"])
    assert a["dicts"] == b["dicts"], "attributes were added to or removed from a module"
    assert a["hooks"] == b["hooks"], "hooks were left registered"
    for k in a["state"]:
        torch.testing.assert_close(a["state"][k], b["state"][k], rtol=0, atol=0, msg=f"{k} changed")


@pytest.mark.parametrize("name", NAMES)
def test_structure(name):
    spec = SPECS[name]
    x, dist = data()
    out = call(spec, make_net(), x, dist=dist)
    for t in leaves(out):
        assert t.shape[0] == N and t.dtype == torch.float64
        assert torch.isfinite(t).all()
    if spec.output == "interactions":
        assert isinstance(out, torch.Tensor) and out.shape == x.shape + x.shape[1:]
    elif (not spec.layer or spec.neuron) and spec.inputs == "features":  # neuron methods attribute to the inputs
        assert isinstance(out, torch.Tensor) and out.shape == x.shape


@pytest.mark.parametrize("name", [n for n in NAMES if not SPECS[n].layer and SPECS[n].output == "inputs"
                                  and SPECS[n].inputs == "features"])
def test_tuple_inputs_give_tuple_attributions(name):
    spec = SPECS[name]
    torch.manual_seed(0)
    model = TwoInputs().double()
    g = torch.Generator().manual_seed(3)
    xs = (torch.randn(N, D, generator=g, dtype=torch.float64), torch.randn(N, 2, generator=g, dtype=torch.float64))
    dist = (torch.randn(5, D, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64))
    kwargs = {"target": [0, 1, 2, 0]} if spec.targeted else {}
    out = call(spec, model, xs, dist=dist, **kwargs)
    assert isinstance(out, tuple) and len(out) == 2
    assert out[0].shape == xs[0].shape and out[1].shape == xs[1].shape


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "batchnorm-train"])
@pytest.mark.parametrize("name", NAMES)
def test_purity(name, batchnorm):
    spec = SPECS[name]
    model = make_net(batchnorm)
    model.train(batchnorm)  # BatchNorm in training mode must not update its running stats
    x, dist = data()
    x_before, dist_before = x.clone(), dist.clone()
    before = snapshot(model)
    torch_rng, np_rng = torch.get_rng_state(), np.random.get_state()
    call(spec, model, x, dist=dist)
    assert_same_snapshot(before, snapshot(model))
    assert torch.equal(x, x_before) and torch.equal(dist, dist_before)
    assert not x.requires_grad and x.grad is None
    assert torch.equal(torch.get_rng_state(), torch_rng), "the global torch RNG was used"
    assert np.array_equal(np.random.get_state()[1], np_rng[1]), "numpy's global RNG was used"


@pytest.mark.parametrize("name", NAMES)
def test_no_hooks_left_after_an_error(name):
    spec = SPECS[name]
    model = make_net()
    before = snapshot(model)
    x, dist = data()
    with pytest.raises((ValueError, TypeError)):
        # a batch-size mismatch between inputs and a per-example target fails midway or at the boundary
        call(spec, model, x, dist=dist, **({"target": [0, 1]} if spec.targeted else {"args": (1, 2, 3)}))
    assert_same_snapshot(before, snapshot(model))


@pytest.mark.parametrize("name", NAMES)
def test_no_grad_gives_the_same_result(name):
    spec = SPECS[name]
    model, (x, dist) = make_net(), data()
    expected = call(spec, model, x, dist=dist)
    with torch.no_grad():
        got = call(spec, model, x, dist=dist)
    for e, g in zip(leaves(expected), leaves(got), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in NAMES if SPECS[n].stochastic])
def test_determinism_from_a_generator(name):
    spec = SPECS[name]
    model, (x, dist) = make_net(), data()
    a, b = call(spec, model, x, dist=dist, seed=7), call(spec, model, x, dist=dist, seed=7)
    c = call(spec, model, x, dist=dist, seed=8)
    for ta, tb, tc in zip(leaves(a), leaves(b), leaves(c), strict=True):
        assert torch.equal(ta, tb)
        assert not torch.equal(ta, tc), "a different seed should give different samples"


@pytest.mark.parametrize("name", [n for n in NAMES if SPECS[n].chunked])
@pytest.mark.parametrize("chunk_size", [1, 3, 1000])
def test_chunk_size_does_not_change_results(name, chunk_size):
    spec = SPECS[name]
    model, (x, dist) = make_net(), data()
    expected = call(spec, model, x, dist=dist)
    got = call(spec, model, x, dist=dist, chunk_size=chunk_size)
    for e, g in zip(leaves(expected), leaves(got), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def _loss(spec, model, x, dist):
    return sum((t ** 2).sum() for t in leaves(call(spec, model, x, dist=dist)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("param", ["body.0.weight", "head.1.weight"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_differentiable_wrt_parameters(name, param, training):
    """Autograd through the attribution agrees with central finite differences (float64), whether the
    result was computed without a graph and is recomputed (eval mode) or kept its graph (training mode)."""
    spec = SPECS[name]
    model, (x, dist) = make_net().train(training), data()
    weight = dict(model.named_parameters())[param]
    (grad,) = torch.autograd.grad(_loss(spec, model, x, dist), weight, allow_unused=True)
    if not spec.targeted and spec.layer and param.startswith("head"):
        # an activation depends only on the parameters before its layer
        assert grad is None or not grad.any()
        return
    assert grad is not None, f"attributions of {name} do not depend on {param}"
    eps = 1e-6
    for index in [(0, 0), (1, 2)]:
        shifted = []
        for sign in (1, -1):
            m = copy.deepcopy(model)
            with torch.no_grad():
                dict(m.named_parameters())[param][index] += sign * eps
            shifted.append(_loss(spec, m, x, dist).detach())
        fd = (shifted[0] - shifted[1]) / (2 * eps)
        torch.testing.assert_close(grad[index], fd, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_thread_safety(name):
    spec = SPECS[name]
    model, (x, dist) = make_net(), data()
    expected = leaves(call(spec, model, x, dist=dist))
    results, errors = [None] * 4, []

    def work(i):
        try:
            results[i] = leaves(call(spec, model, x, dist=dist))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for r in results:
        for e, g in zip(expected, r, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in NAMES if SPECS[n].captum is not None])
def test_captum_counterpart_takes_every_option(name):
    """The Captum class named by the registry exists and takes every option of the generic call (an option
    left out would make Captum compute something else), by Captum's name."""
    captum_attr = pytest.importorskip("captum.attr")
    spec = SPECS[name]
    options = dict(spec.options, return_delta=True) if spec.delta else dict(spec.options)
    init, attribute = spec.captum.arguments(captum_attr, options)
    assert len(init) + len(attribute) == len(dict(spec.captum.fixed, **options)), (init, attribute)
    if spec.delta:
        assert attribute.get("return_convergence_delta") is True


def test_bind_refuses_a_chunk_size_the_method_does_not_take():
    spec, model = SPECS["saliency"], make_net()
    with pytest.raises(TypeError, match="saliency takes no chunk_size"):
        spec.bind(model, chunk_size=2)
    bound = SPECS["integrated_gradients"].bind(model, baselines=0.1, target=[0, 1, 2, 0], chunk_size=2)
    x, _ = data()
    torch.testing.assert_close(bound(x), call(SPECS["integrated_gradients"], model, x), rtol=1e-10, atol=1e-12)
