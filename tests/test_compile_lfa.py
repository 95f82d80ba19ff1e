"""Layer feature ablation compiled as called (grad on, parameters requiring grad) with a counted mask."""
import torch
from torch import nn

import fattr

counters = torch._dynamo.utils.counters


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def test_counted_mask_breaks_only_outside_the_checkpoint_and_stays_differentiable():
    # ids neither from 0 nor contiguous, shared across the groups: counted (torch.unique, a graph break)
    model, x = _model(), torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    mask, target = torch.tensor([[7, 7, 3, 3, 3, 9, 9, 9]]), torch.tensor([0, 1, 2, 0])

    def fn(x_):
        return fattr.layer_feature_ablation(model, model[3], x_, target=target, layer_mask=mask,
                                            perturbations_per_eval=2)

    expected = fn(x)
    (g_expected,) = torch.autograd.grad(expected.square().sum(), model[0].weight)
    torch._dynamo.reset()
    counters.clear()
    got = torch.compile(fn)(x)
    # the count's graph break is taken before the checkpoint: inside its recomputed pass (a context
    # manager that cannot break) it split the call into many graphs, 3x slower than eager
    # (one break, counted once per frame it unwinds)
    reasons = list(counters["graph_break"])
    assert len(reasons) == 1 and "aten._unique2" in reasons[0], reasons
    torch.testing.assert_close(got, expected)
    assert got.requires_grad
    (g_got,) = torch.autograd.grad(got.square().sum(), model[0].weight)
    torch.testing.assert_close(g_got, g_expected)
