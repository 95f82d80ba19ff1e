"""A tensor requiring grad that ``forward`` reads from outside the model (a closed-over ``w``, not a
parameter) gets its gradient through every method's result, as it would if the model owned it.

Graph-free passes name what they read (:func:`fattr._src.recompute.reads`); one that assumed a model
reads only its own tensors would route no gradient to ``w``, silently. The reference is the same method
on a twin that registers ``w`` as an ``nn.Parameter`` (the same values, so the same attributions): the
recomputation finds a model's own parameters by scanning the model, not by what the pass read.
Default calls: eval mode, grad mode on, parameters requiring grad.
"""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import fattr

TOL = dict(rtol=1e-9, atol=1e-11)
# (LRP refuses the net's Sigmoid module, as Captum does: tests/test_lrp.py checks its outside reads)
SPECS = {s.name: s for s in fattr.methods() if s.inputs == "features" and not s.images
         and s.name not in ("lrp", "layer_lrp")}
# (method, where w is read, how the layer methods' head is captured: torch.fx, or the fallback running the model)
CASES = [(name, where, capture) for name, spec in sorted(SPECS.items()) for where in ("before", "after")
         for capture in (("fx", "fallback") if spec.layer else ("fx",))]
# ... and read as ``w * 1.5``, computed before the call (a tensor with a graph of its own: the graph is kept)
DERIVED = ["deeplift", "integrated_gradients", "layer_conductance", "layer_deeplift", "layer_feature_ablation",
           "layer_gradient_x_activation", "neuron_gradient", "saliency"]


def net(where: str, capture: str, w: torch.Tensor, owned: bool, scale: float = 1.0) -> nn.Module:
    """``b(sigmoid(act(a(x @ w))))`` (``where="before"`` the layer ``act``) or ``b(sigmoid(act(a(x)) @ w))``
    (``"after"``); ``w`` a parameter of the model (``owned``: a copy, read as ``w * scale``) or the tensor
    itself, closed over. ``capture="fallback"``: a data-dependent branch, so a split runs the whole model."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.a, self.act, self.out, self.b = nn.Linear(3, 4), nn.Tanh(), nn.Sigmoid(), nn.Linear(4, 2)
            if owned:
                self.w = nn.Parameter(w.detach().clone())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            v = self.w * scale if owned else w
            h = self.act(self.a(x @ v if where == "before" else x))
            if capture == "fallback" and float(h.detach().sum()) > -1e9:  # data-dependent: neither torch.fx nor export
                h = h * 1.0
            return self.b(self.out(h @ v if where == "after" else h))

    return Net().double().eval()


def attributions(name: str, model: nn.Module, x: torch.Tensor, bases: object, **options: object) -> tuple:
    spec = SPECS[name]
    steps = {"n_steps": 3, **options} if "n_steps" in dict(spec.options) else {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "fattr could not capture")
        out = spec.call(model, x, layer="act", baselines=bases, target=0, generator=torch.Generator().manual_seed(1),
                        **steps)
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


@pytest.mark.parametrize("name, where, capture", CASES)
def test_a_tensor_read_from_outside_the_model_gets_its_gradient(name, where, capture):
    check(name, where, capture, derived=False)


@pytest.mark.parametrize("name", DERIVED)
def test_a_tensor_computed_before_the_call_gets_its_gradient(name):
    check(name, "before", "fx", derived=True)


@pytest.mark.parametrize("name", [name for name, spec in sorted(SPECS.items()) if spec.chunked])
def test_a_chunked_method_routes_the_gradient_of_a_tensor_read_from_outside(name):
    check(name, "before", "fx", derived=False, chunk_size=2)  # (3 steps: two checkpoints)


def check(name: str, where: str, capture: str, derived: bool, **options: object) -> None:
    torch.manual_seed(2)
    w = torch.randn(*((3, 3) if where == "before" else (4, 4)), dtype=torch.float64, requires_grad=True)
    x = 2 * torch.randn(4, 3, dtype=torch.float64)
    bases = torch.randn(3, 3, dtype=torch.float64) if SPECS[name].baselines == "distribution" else None
    scale = 1.5 if derived else 1.0
    twin = net(where, capture, w, owned=True, scale=scale)
    model = net(where, capture, w * scale if derived else w, owned=False)
    want_out, got_out = attributions(name, twin, x, bases, **options), attributions(name, model, x, bases, **options)
    assert len(got_out) == len(want_out)
    for a, b in zip(got_out, want_out):
        torch.testing.assert_close(a, b, **TOL)
    (want,) = torch.autograd.grad(sum(t.pow(2).sum() for t in want_out), twin.w, allow_unused=True,
                                  materialize_grads=True)
    (got,) = torch.autograd.grad(sum(t.pow(2).sum() for t in got_out), w, allow_unused=True, materialize_grads=True)
    # w after the layer: the activation (and a neuron's attributions, functions of the head) do not depend on it
    head_only = where == "after" and (SPECS[name].neuron or name == "layer_activation")
    assert head_only or want.abs().sum() > 0
    torch.testing.assert_close(got, want, **TOL)
