"""A kept graph differentiated again carries no structural zeros through ReLU and max-pooling (issue 16).

Where fattr keeps an attribution's graph to be differentiated (a model in training mode: an attribution
prior in a training loss), ReLU and 2-D max-pooling run in forms (``fattr._src.twice``) with the native
values and gradients whose backward reads the input only as a mask or as indices. The native backward
ops are differentiable in their input with a derivative that is structurally zero, which a second
differentiation carried back through every layer below (and, compiled, Inductor decomposed the
max-pool backward into a scatter): ``benchmarks/train_step.py``. References are the native ops.
"""
from __future__ import annotations

import collections
from typing import Any, Callable, Dict, List

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

from fattr._src.twice import twice_differentiable
from fattr.demo.model import make_model
from fattr.demo.prior import border_mask, make_penalty

POOLS: List[Dict[str, Any]] = [
    {"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1}, {"kernel_size": 2, "stride": 1},
    {"kernel_size": (2, 3), "stride": (1, 2), "dilation": 2}, {"kernel_size": 3, "stride": 2, "ceil_mode": True}]


def _both(fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> Any:
    native = fn(x)
    with twice_differentiable():
        return native, fn(x)


@pytest.mark.parametrize("options", POOLS, ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (3, 8, 8)], ids=str)
def test_max_pool_form_has_the_native_values_indices_and_gradients(options: Dict[str, Any], shape: Any) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, generator=g).relu().requires_grad_()  # ties: zero windows
    native, form = _both(lambda t: F.max_pool2d(t, **options), x)
    assert form.grad_fn is not None and "MaxPool" not in type(form.grad_fn).__name__  # the form ran
    assert torch.equal(form, native)
    cotangent = torch.randn(native.shape, dtype=torch.float64, generator=g)
    want = torch.autograd.grad((native * cotangent).sum(), x)[0]
    got = torch.autograd.grad((form * cotangent).sum(), x)[0]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-15)  # (overlapping windows: summed in another order)
    for fn in (nn.MaxPool2d(return_indices=True, **options), lambda t: F.max_pool2d(t, return_indices=True, **options)):
        (n_out, n_idx), (f_out, f_idx) = _both(fn, x)
        assert torch.equal(f_out, n_out) and torch.equal(f_idx, n_idx)


@pytest.mark.parametrize("fn", [F.relu, torch.relu, torch.Tensor.relu, nn.ReLU(), lambda t: nn.ReLU(inplace=True)(t * 1),
                                lambda t: F.relu(t * 1, inplace=True), lambda t: torch.relu_(t * 1),
                                lambda t: (t * 1).relu_()],
                         ids=["F", "torch", "method", "module", "module_inplace", "F_inplace", "torch_", "method_"])
def test_relu_form_has_the_native_values_and_gradients(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    x = torch.tensor([-1.0, -0.0, 0.0, 2.0, float("nan"), float("inf")], dtype=torch.float64, requires_grad=True)
    native, form = _both(fn, x)
    assert "MaskedFill" in type(form.grad_fn).__name__  # the form ran
    torch.testing.assert_close(form, native, equal_nan=True, rtol=0, atol=0)
    torch.testing.assert_close(torch.autograd.grad(form.sum(), x)[0], torch.autograd.grad(native.sum(), x)[0],
                               rtol=0, atol=0)


def test_the_gradient_does_not_depend_on_the_input_through_relu_or_max_pool() -> None:
    """d/dx of the input gradient of ``sum(c * pool(relu(w * x)))``: natively a tensor of zeros (the zero
    chain), in the forms no dependence at all; the derivative in ``w`` is the same."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 3, 3, 3, dtype=torch.float64, generator=g)

    def second(keep: bool) -> Any:
        with twice_differentiable() if keep else torch.enable_grad():
            out = (c * F.max_pool2d(F.relu(w * x), 2)).sum()
            (dx,) = torch.autograd.grad(out, x, create_graph=True)
        return torch.autograd.grad(dx.square().sum(), (x, w), allow_unused=True)

    (native_x, native_w), (form_x, form_w) = second(False), second(True)
    assert native_x is not None and not native_x.any()  # the zero chain
    assert form_x is None
    torch.testing.assert_close(form_w, native_w, rtol=1e-12, atol=0)


def test_compiled_attribution_prior_differentiates_no_native_relu_or_max_pool_backward() -> None:
    """The demo's IG prior alone as a loss, compiled (AOTAutograd's graphs, no Inductor): before, the
    graphs held 12 ReLU and 2 max-pool backward ops and 6 convolution backwards (the second
    differentiation's zeros through every layer); now none of the first two and 3 convolution backwards,
    and the same gradients as eager; a parameter that reaches the prior only through ReLU masks (the
    convolutions' biases) gets none, where eagerly it gets zeros."""
    graphs: List[torch.fx.GraphModule] = []

    def keep(gm: torch.fx.GraphModule, _: Any) -> Any:
        graphs.append(gm)
        return make_boxed_func(gm)

    torch._dynamo.reset()
    penalty = make_penalty(border_mask(8), weight=1.0, n_steps=2)
    x, y = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 3, 5, 9])
    models = [make_model(0), make_model(0)]  # training mode: the graph is kept

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        penalty(model, x, y).backward()
        return torch.zeros(())

    loss(models[0], x, y)
    torch.compile(loss, backend=aot_autograd(fw_compiler=keep, bw_compiler=keep))(models[1], x, y)
    moved = 0
    for a, b in zip(models[1].parameters(), models[0].parameters(), strict=True):
        if a.grad is None:  # reaches the prior only through ReLU masks (a bias): eagerly no gradient or zeros
            assert b.grad is None or not b.grad.any()
            continue
        assert b.grad is not None
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)
        moved += bool(b.grad.any())
    assert moved == 5  # every weight
    ops = collections.Counter(n.target for gm in graphs for n in gm.graph.nodes if n.op == "call_function")
    aten = torch.ops.aten
    assert ops[aten.threshold_backward.default] == 0 and ops[aten.max_pool2d_with_indices_backward.default] == 0
    assert ops[aten.convolution_backward.default] == 3
    torch._dynamo.reset()
