"""Attributions through attention are differentiable again: fused attention has no second derivative.

A training loss through an attribution differentiates its gradients again. PyTorch's fused CPU
attention kernel cannot be differentiated twice, so recomputations (and passes keeping their graph)
run attention as composite operations (``fattr._src.twice``). References here are independent: the
same weights with Hugging Face's "eager" attention (plain operations), or PyTorch's math kernel chosen
globally (``sdpa_kernel``: one thread, in the test only).
"""
from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import fattr
from fattr._src.twice import twice_differentiable

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("options", [{}, {"is_causal": True}, {"scale": 0.3}, {"mask": True}], ids=str)
def test_composite_attention_matches_the_fused_kernel_and_is_twice_differentiable(options: Any) -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 4, dtype=torch.float64, generator=g, requires_grad=True) for _ in range(3))
    if options.pop("mask", False):
        mask = torch.rand(5, 5, generator=g) > 0.4
        mask[:, 0] = True  # every query attends somewhere
        options = {"attn_mask": mask}
    expected = F.scaled_dot_product_attention(q, k, v, **options)
    with twice_differentiable():
        got = F.scaled_dot_product_attention(q, k, v, **options)
        aten = torch.ops.aten.scaled_dot_product_attention.default(q, k, v, **options)
        assert torch.autograd.gradgradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, **options),
                                            (q, k, v))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(aten, expected)


def test_multi_head_attention_keeps_its_outputs() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(2, 5, 8)
    for need_weights in (False, True):
        expected = mha(x, x, x, need_weights=need_weights)
        with twice_differentiable():
            got = mha(x, x, x, need_weights=need_weights)
        torch.testing.assert_close(got[0], expected[0])
        assert (got[1] is None) == (expected[1] is None)


def test_multi_head_attention_forward_keeps_its_outputs_with_positional_arguments() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2).eval()
    x = torch.randn(5, 2, 8)
    for need_weights in (False, True):
        positional = (x, x, x, 8, 2, mha.in_proj_weight, mha.in_proj_bias, None, None, False, 0.0,
                      mha.out_proj.weight, mha.out_proj.bias, False, None, need_weights)
        expected = F.multi_head_attention_forward(*positional)
        with twice_differentiable():
            got = F.multi_head_attention_forward(*positional)
        torch.testing.assert_close(got[0], expected[0])
        assert (got[1] is None) == (expected[1] is None)


def _bert(attention: str, layers: int = 2, **config: Any) -> Any:
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=30, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, num_labels=3, attn_implementation=attention, **config)).eval()


def _ids() -> Any:
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[0, 5:] = 0
    return torch.randint(3, 30, (2, 8), generator=g), mask


def _loss_gradient(model: Any, compile: bool = False) -> Any:
    ids, mask = _ids()
    logits = lambda i, m: model(i, attention_mask=m).logits  # noqa: E731 (outside the compiled function)

    def call(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return fattr.layer_integrated_gradients(logits, model.bert.embeddings, ids, args=(mask,), target=0, n_steps=4)

    attr = (torch.compile(call, fullgraph=True) if compile else call)(ids, mask)
    return attr, torch.autograd.grad(attr.pow(2).sum(), [model.classifier.weight, model.bert.pooler.dense.weight])


def test_layer_ig_through_bert_sdpa_is_differentiable_like_plain_attention() -> None:
    """The default (SDPA) model's attribution loss differentiates like the same weights with plain attention."""
    attr, grads = _loss_gradient(_bert("sdpa"))
    ref_attr, ref_grads = _loss_gradient(_bert("eager"))
    torch.testing.assert_close(attr, ref_attr, rtol=1e-4, atol=1e-6)
    for got, expected in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_compiled_layer_ig_through_bert_is_differentiable_like_eager() -> None:
    """Compiled as called (fullgraph; the split is a torch.export plan, the mask a head output). One encoder
    layer: a second one adds nothing new to trace and a third of the compile time."""
    torch._dynamo.reset()
    model = _bert("sdpa", layers=1)
    attr, grads = _loss_gradient(model)
    got_attr, got_grads = _loss_gradient(model, compile=True)
    torch.testing.assert_close(got_attr, attr, rtol=1e-5, atol=1e-6)
    for got, expected in zip(got_grads, grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_torch_encoder_layer_attribution_is_differentiable() -> None:
    """nn.TransformerEncoderLayer (nn.MultiheadAttention: the fused kernel by default); reference: the math
    kernel chosen for the whole computation."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(50, 16), nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True),
                          nn.Flatten(), nn.Linear(16 * 6, 2)).eval()
    ids = torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(2))

    def loss_gradient() -> Any:
        attr = fattr.layer_integrated_gradients(model, "0", ids, target=0, n_steps=4)
        return torch.autograd.grad(attr.pow(2).sum(), model[3].weight)[0]

    got = loss_gradient()
    with sdpa_kernel(SDPBackend.MATH):
        expected = loss_gradient()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_integrated_hessians_through_attention() -> None:
    """Integrated Hessians differentiate twice: through nn.MultiheadAttention (fused kernel by default, no
    second derivative) it needs the composite attention; reference: the math kernel chosen globally."""
    torch.manual_seed(0)
    attention, out = nn.MultiheadAttention(4, 2, batch_first=True).double().eval(), nn.Linear(12, 2).double()

    def f(x: torch.Tensor) -> torch.Tensor:
        return out(attention(x, x, x, need_weights=False)[0].flatten(1))

    x = torch.randn(2, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    mask = torch.arange(3).repeat_interleave(4).reshape(3, 4)  # one feature per token

    def run() -> Any:
        return fattr.integrated_hessians(f, x, target=1, n_steps=4, feature_mask=mask, return_delta=True)

    got, delta = run()
    with sdpa_kernel(SDPBackend.MATH):
        expected, _ = run()
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    assert got.shape == (2, 3, 3) and bool(got.abs().max() > 0)


def _entered(monkeypatch: pytest.MonkeyPatch) -> list:
    """Counts the passes that run under the composite mode (``recompute``'s use of it)."""
    from fattr._src import recompute
    entered: list = []

    def counted() -> Any:
        entered.append(1)
        return twice_differentiable()

    monkeypatch.setattr(recompute, "twice_differentiable", counted)
    return entered


def test_a_model_without_attention_keeps_its_graph_without_the_composite_mode(monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:
    """The mode costs a Python call per operation (it more than doubled a small training-mode call); a model
    without attention never needs it, and its attribution still differentiates as before."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2)).double()  # training mode: graph at once
    x = torch.randn(3, 5, dtype=torch.float64)
    entered = _entered(monkeypatch)
    attr = fattr.integrated_gradients(model, x, target=1, n_steps=8)
    layer = fattr.layer_integrated_gradients(model, "1", x, target=1, n_steps=8)
    (g,) = torch.autograd.grad((attr.pow(2).sum() + layer.pow(2).sum()), model[0].weight)
    assert entered == []
    w = model[0].weight.detach().requires_grad_()

    def reference(w: torch.Tensor) -> torch.Tensor:  # the same attributions written with torch.func
        def f(v: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(model, {"0.weight": w}, (v,))[:, 1].sum()

        nodes, weights = fattr.quadrature("gausslegendre", 8, dtype=torch.float64)
        grads = sum(wk * torch.func.grad(f)(a * x) for a, wk in zip(nodes, weights))
        pre = lambda v: torch.tanh(torch.nn.functional.linear(v, w, model[0].bias))  # noqa: E731
        tail = lambda h: model[2](h)[:, 1].sum()  # noqa: E731
        act = pre(x)
        layer_grads = sum(wk * torch.func.grad(tail)(a * act + (1 - a) * pre(torch.zeros_like(x)))
                          for a, wk in zip(nodes, weights))
        return (grads * x).pow(2).sum() + (layer_grads * (act - pre(torch.zeros_like(x)))).pow(2).sum()

    torch.testing.assert_close(g, torch.autograd.grad(reference(w), w)[0])


def test_attention_in_training_mode_reruns_under_the_composite_mode_with_the_same_dropout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A training-mode BERT (dropout on its hidden states; none on attention, which would take the math
    kernel): its kept graph holds the fused kernel's backward, so the pass runs again under the composite
    mode, drawing the same dropout masks; from then on the model runs under the mode at once. Reference:
    the math kernel chosen globally, from the same random state."""
    model = _bert("sdpa", attention_probs_dropout_prob=0.0).train()
    entered = _entered(monkeypatch)

    def loss_gradient() -> Any:
        torch.manual_seed(5)
        return _loss_gradient(model)

    got_attr, got_grads = loss_gradient()
    after = torch.rand(1)
    assert len(entered) >= 1
    first = len(entered)
    with sdpa_kernel(SDPBackend.MATH):
        attr, grads = loss_gradient()
        expected_after = torch.rand(1)
    torch.testing.assert_close(got_attr, attr, rtol=1e-4, atol=1e-6)
    for got, expected in zip(got_grads, grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    assert torch.equal(after, expected_after)  # the rerun left the random state as one run would
    again_attr, _ = loss_gradient()
    torch.testing.assert_close(again_attr, got_attr)
    assert len(entered) - first >= 1
