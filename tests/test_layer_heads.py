"""Layer IG runs the head once over the inputs' and the baselines' rows (a module in eval mode):
the same attributions as one head call per batch (training mode, no dropout or batch norm here)."""
import pytest
import torch
from torch import nn

import fattr


class Skip(nn.Module):
    """A skip connection around the layer (per-example ``rest``) and a shared extra argument."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.layer, self.out = nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)

    def forward(self, x, shift):
        h = self.a(x)
        return self.out(self.layer(h) + h + shift.sum(0))


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("shared_rows", [1, 2])
def test_one_head_call_gives_the_two_calls_attributions(n, shared_rows):
    torch.manual_seed(0)
    model = Skip().double()
    x = torch.randn(n, 4, dtype=torch.float64, requires_grad=True)
    shift = torch.randn(shared_rows, 6, dtype=torch.float64)  # 2 rows at n=1: shared, must not be split
    args = (shift,) if shared_rows != n else (shift.sum(0, keepdim=True).expand(n, 6).clone(),)

    def attr(training):
        model.train(training)
        return fattr.layer_integrated_gradients(model, "layer", x, 0.5, n_steps=7, target=2, args=args,
                                                return_delta=True)

    (got, got_delta), (want, want_delta) = attr(False), attr(True)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_delta, want_delta, rtol=1e-12, atol=1e-12)
    (g1,) = torch.autograd.grad(got.sum(), x)
    model.train(True)
    (g2,) = torch.autograd.grad(attr(True)[0].sum(), x)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)


class Spy(nn.Linear):
    """Counts its calls."""

    calls = 0

    def forward(self, x):
        type(self).calls += 1
        return super().forward(x)


@pytest.mark.parametrize("method", ["lig", "lgshap"])
@pytest.mark.parametrize("n", [1, 2])
def test_a_sequential_head_runs_once_with_the_separate_calls_results(method, n):
    torch.manual_seed(1)
    model = nn.Sequential(Spy(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.randn(n, 4, dtype=torch.float64, requires_grad=True)
    dist = torch.randn(5, 4, dtype=torch.float64)

    def attr(training):
        model.train(training)
        Spy.calls = 0
        if method == "lig":
            out = fattr.layer_integrated_gradients(model, "1", x, dist[:1], n_steps=6, target=[1] * n,
                                                   return_delta=True)
        else:
            out = fattr.layer_gradient_shap(model, "1", x, dist, n_samples=4, stdevs=0.1, target=1,
                                            generator=torch.Generator().manual_seed(3), return_delta=True)
        calls = Spy.calls  # before the gradient (eval: the head reruns for it)
        (grad,) = torch.autograd.grad(out[0].pow(2).sum(), x)
        return out, grad, calls

    (got, got_grad, got_calls), (want, want_grad, want_calls) = attr(False), attr(True)
    assert (got_calls, want_calls) == ((1, 2) if method == "lig" else (1, 3))
    for g, w in zip(got + (got_grad,), want + (want_grad,)):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
