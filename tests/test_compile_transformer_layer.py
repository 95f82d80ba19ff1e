"""``torch.compile`` through torch's own transformer layers (issue #16).

``nn.TransformerEncoderLayer`` and ``nn.MultiheadAttention`` have inference fast paths: fused kernels
without a derivative, taken when nothing they read requires grad. Inside ``torch.func.grad`` eager code
sees the transform's inputs as requiring grad, but Dynamo (torch 2.13) did not, so compiled attributions
whose gradient starts at such a layer (layer IG with the tail starting at the encoder; a frozen model)
failed with "derivative for aten::_transformer_encoder_layer_fwd is not implemented". Compiled calls
now match eager in values and, differentiated, in parameter gradients.

The ``eager`` backend keeps compile time to seconds: the failure was in Dynamo's trace (which also
traces the backward of the compiled call's recomputing node), before AOTAutograd and Inductor; with
Inductor these calls were checked once by hand (values and gradients match to 4e-7).
"""
from __future__ import annotations

from typing import Any, List

import pytest
import torch
from torch import nn

import fattr
from fattr._src.compiled import marked

N_STEPS = 2
BACKEND = "eager"


class _Attention(nn.Module):
    """Embedding, self-attention (``need_weights=False``: the fast path's call), a linear read-out."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.attend = nn.MultiheadAttention(8, 2, batch_first=True)
        self.out = nn.Linear(32, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        return self.out(self.attend(h, h, h, need_weights=False)[0].flatten(1))


def _model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "attention":
        return _Attention().eval()
    return nn.Sequential(nn.Embedding(20, 8), nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
                         nn.Flatten(), nn.Linear(32, 2)).eval()


def _weights(model: nn.Module) -> List[torch.Tensor]:
    """Parameters before, inside and after the attention."""
    if isinstance(model, _Attention):
        return [model.attend.in_proj_weight, model.attend.out_proj.weight, model.out.weight]
    return [model[1].self_attn.in_proj_weight, model[1].linear1.weight, model[3].weight]


def _ids() -> torch.Tensor:
    return torch.randint(0, 20, (2, 4), generator=torch.Generator().manual_seed(1))


def _layer_ig(model: nn.Module) -> Any:
    embedding = model.embed if isinstance(model, _Attention) else model[0]  # the tail starts at the attention
    return lambda ids: fattr.layer_integrated_gradients(model, embedding, ids, target=1, n_steps=N_STEPS)


@pytest.mark.parametrize("kind", ["encoder", "attention"])
def test_layer_ig_through_attention_compiles_and_matches_eager_with_its_gradients(kind: str) -> None:
    model = _model(kind)
    call, ids = _layer_ig(model), _ids()
    got = torch.compile(call, fullgraph=True, backend=BACKEND)(ids)
    want = call(ids)
    torch.testing.assert_close(got, want)
    weights = _weights(model)
    got_grads = torch.autograd.grad(got.square().sum(), weights)
    want_grads = torch.autograd.grad(want.square().sum(), weights)
    assert all(g.abs().sum() > 0 for g in want_grads)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
def test_layer_ig_through_a_frozen_encoder_layer_compiles(grad: bool) -> None:
    model = _model("encoder").requires_grad_(False)  # nothing requires grad but the transform's inputs
    call, ids = _layer_ig(model), _ids()
    with torch.enable_grad() if grad else torch.no_grad():
        got = torch.compile(call, fullgraph=True, backend="eager")(ids)
        want = call(ids)
    torch.testing.assert_close(got, want)
    assert not got.requires_grad


def test_integrated_gradients_of_a_frozen_encoder_compiles() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), nn.Flatten(),
                          nn.Linear(32, 2)).eval().requires_grad_(False)
    x = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(1))

    def call(x: torch.Tensor) -> torch.Tensor:
        return fattr.integrated_gradients(model, x, target=0, n_steps=N_STEPS)

    torch.testing.assert_close(torch.compile(call, fullgraph=True, backend="eager")(x), call(x))


def test_marked_inputs_read_as_requiring_grad_under_dynamo_as_eagerly() -> None:
    def scaled(y: torch.Tensor) -> torch.Tensor:
        (y,) = marked((y,))
        return y.sum() * (2.0 if y.requires_grad else 3.0)  # 2 eagerly: the transform's input requires grad

    def call(x: torch.Tensor) -> torch.Tensor:
        return torch.func.grad(scaled)(x)

    x = torch.randn(3)
    xs = (x,)
    assert marked(xs) is xs  # eagerly nothing is made
    torch.testing.assert_close(call(x), torch.full((3,), 2.0))
    torch.testing.assert_close(torch.compile(call, fullgraph=True, backend="eager")(x), torch.full((3,), 2.0))
