"""Hugging Face transformers (tiny random configs, no download): captured by torch.export, against Captum.

Each model is attributed through a plain function (``lambda ids, mask: model(ids, attention_mask=mask).logits``),
so these tests also cover layer methods on callables and ``kwargs``. A ``CaptureWarning`` is an error here:
every layer below must be captured (the prefix runs once, the tail per step), and a repeat call must not
export again.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest
import torch

import fattr

transformers = pytest.importorskip("transformers")
captum_attr = pytest.importorskip("captum.attr")

V, T_LEN, B = 40, 7, 3
RTOL = 1e-6  # Captum keeps its quadrature weights in float32


def _text_inputs(seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, V, (B, T_LEN), generator=g)
    mask = torch.ones(B, T_LEN, dtype=torch.long)
    mask[0, 5:] = 0  # a padded example
    return ids, mask


def _bert() -> Any:
    return transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, num_labels=3))


def _distilbert() -> Any:
    return transformers.DistilBertForSequenceClassification(transformers.DistilBertConfig(
        vocab_size=V, dim=16, n_layers=2, n_heads=2, hidden_dim=32, max_position_embeddings=32, num_labels=3))


def _roberta() -> Any:
    return transformers.RobertaForSequenceClassification(transformers.RobertaConfig(
        vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=40, num_labels=3, pad_token_id=1))


def _gpt2() -> Any:
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=V, n_embd=16, n_layer=2, n_head=2, n_positions=32, bos_token_id=0, eos_token_id=0))


def _llama() -> Any:
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=32, bos_token_id=0, eos_token_id=0))


def _vit() -> Any:
    return transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=8, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, num_labels=3))


def _swin() -> Any:
    return transformers.SwinForImageClassification(transformers.SwinConfig(
        image_size=8, patch_size=2, num_channels=3, embed_dim=8, depths=[2, 1], num_heads=[2, 2], window_size=2,
        num_labels=3))


def _convnext() -> Any:
    return transformers.ConvNextForImageClassification(transformers.ConvNextConfig(
        num_channels=3, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=3))


# model name -> (factory, kind, layers: name -> getter (embedding-like first, then a later one))
Getter = Callable[[Any], torch.nn.Module]
MODELS: Dict[str, Tuple[Callable[[], Any], str, Dict[str, Getter]]] = {
    "bert": (_bert, "classifier", {
        "embeddings": lambda m: m.bert.embeddings, "word_embeddings": lambda m: m.bert.embeddings.word_embeddings,
        "block": lambda m: m.bert.encoder.layer[1], "attention_dense": lambda m: m.bert.encoder.layer[0].attention.output.dense,
        "final_norm": lambda m: m.bert.encoder.layer[1].output.LayerNorm}),
    "distilbert": (_distilbert, "classifier", {
        "embeddings": lambda m: m.distilbert.embeddings,
        "word_embeddings": lambda m: m.distilbert.embeddings.word_embeddings,
        "block": lambda m: m.distilbert.transformer.layer[1], "mlp": lambda m: m.distilbert.transformer.layer[0].ffn,
        "final_norm": lambda m: m.distilbert.transformer.layer[1].output_layer_norm}),
    "roberta": (_roberta, "classifier", {
        "embeddings": lambda m: m.roberta.embeddings, "word_embeddings": lambda m: m.roberta.embeddings.word_embeddings,
        "block": lambda m: m.roberta.encoder.layer[1], "mlp": lambda m: m.roberta.encoder.layer[0].intermediate,
        "final_norm": lambda m: m.roberta.encoder.layer[1].output.LayerNorm}),
    "gpt2": (_gpt2, "lm", {
        "word_embeddings": lambda m: m.transformer.wte, "block": lambda m: m.transformer.h[1],
        "mlp": lambda m: m.transformer.h[0].mlp, "final_norm": lambda m: m.transformer.ln_f}),
    "llama": (_llama, "lm", {
        "word_embeddings": lambda m: m.model.embed_tokens, "block": lambda m: m.model.layers[1],
        "mlp": lambda m: m.model.layers[0].mlp, "final_norm": lambda m: m.model.norm}),
    "vit": (_vit, "image", {
        "embeddings": lambda m: m.vit.embeddings, "patch_embeddings": lambda m: m.vit.embeddings.patch_embeddings,
        "block": lambda m: m.vit.layers[1], "mlp": lambda m: m.vit.layers[0].mlp,
        "final_norm": lambda m: m.vit.layernorm}),
    "swin": (_swin, "image", {
        "embeddings_norm": lambda m: m.swin.embeddings.norm, "mlp": lambda m: m.swin.encoder.layers[0].blocks[0].mlp,
        "block_norm": lambda m: m.swin.encoder.layers[1].blocks[0].layernorm_after,
        "final_norm": lambda m: m.swin.layernorm}),
    "convnext": (_convnext, "image", {
        "embeddings": lambda m: m.convnext.embeddings, "stage": lambda m: m.convnext.encoder.stages[1],
        "mlp": lambda m: m.convnext.encoder.stages[0].layers[0].pwconv1, "final_norm": lambda m: m.convnext.layernorm}),
}

_built: Dict[str, Any] = {}


def _model(name: str) -> Any:
    if name not in _built:
        torch.manual_seed(0)
        _built[name] = MODELS[name][0]().eval().double()
    return _built[name]


def _function(name: str) -> Tuple[Callable[..., torch.Tensor], Tuple[torch.Tensor, ...], Dict[str, Any]]:
    """``(f, inputs, kwargs)``: a tensor-returning function of the model, its inputs and keyword arguments."""
    model, kind = _model(name), MODELS[name][1]
    if kind == "image":
        x = torch.randn(B, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        return (lambda pixels: model(pixels).logits), (x,), {}
    ids, mask = _text_inputs(1)
    if kind == "lm":  # the next token's logits at the last position
        return (lambda ids, attention_mask: model(ids, attention_mask=attention_mask, use_cache=False).logits[:, -1]), \
            (ids,), {"attention_mask": mask}
    return (lambda ids, attention_mask: model(ids, attention_mask=attention_mask).logits), (ids,), {"attention_mask": mask}


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> List[int]:
    """Counts calls of torch.export.export."""
    count = [0]
    real = torch.export.export

    def counting(*a: Any, **k: Any) -> Any:
        count[0] += 1
        return real(*a, **k)

    monkeypatch.setattr(torch.export, "export", counting)
    return count




def _captum_forward(f: Callable[..., torch.Tensor], kwargs: Dict[str, Any]) -> Callable[..., torch.Tensor]:
    names = list(kwargs)
    return lambda *a: f(*a[:len(a) - len(names)], **dict(zip(names, a[len(a) - len(names):], strict=True)))


TWO_LAYERS = {"bert": ("word_embeddings", "block"), "distilbert": ("embeddings", "mlp"),
              "roberta": ("word_embeddings", "final_norm"), "gpt2": ("word_embeddings", "block"),
              "llama": ("word_embeddings", "block"), "vit": ("embeddings", "block"),
              "swin": ("embeddings_norm", "mlp"), "convnext": ("embeddings", "stage")}
AGAINST_CAPTUM = [(name, layer) for name, layers in TWO_LAYERS.items() for layer in layers]
# the other layers: captured (the Captum tests above also fail on a CaptureWarning)
CAPTURE_CASES = [(name, layer) for name, (_, _, layers) in MODELS.items() for layer in layers
                 if layer not in TWO_LAYERS[name]]


@pytest.mark.parametrize("name,layer", CAPTURE_CASES)
def test_captured_exactly_and_once(name: str, layer: str, exports: List[int]) -> None:
    f, xs, kwargs = _function(name)
    module = MODELS[name][2][layer](_model(name))
    with warnings.catch_warnings():
        warnings.simplefilter("error", fattr.CaptureWarning)
        s = fattr.split(f, module)
        act, rest = s.head(*xs, **kwargs)
        assert s.captured and s.reason is None
        torch.testing.assert_close(s.tail(act, rest), f(*xs, **kwargs), rtol=1e-12, atol=1e-12)
        n = exports[0]
        fattr.layer_gradient_x_activation(f, module, xs, target=1, kwargs=kwargs)
        fattr.layer_gradient_x_activation(f, module, xs, target=1, kwargs=kwargs)  # a repeat call
    assert exports[0] == n, "a repeat call exported the model again"


@pytest.mark.parametrize("name,layer", AGAINST_CAPTUM)
def test_layer_methods_match_captum(name: str, layer: str) -> None:
    f, xs, kwargs = _function(name)
    module = MODELS[name][2][layer](_model(name))
    extra = tuple(kwargs.values())
    forward = _captum_forward(f, kwargs)
    # token id 0 / a dim noise image (an all-zero image makes some models' norms degenerate at the baseline)
    base = torch.zeros_like(xs[0]) if not xs[0].is_floating_point() else \
        0.1 * torch.randn(xs[0].shape, generator=torch.Generator().manual_seed(5), dtype=xs[0].dtype)
    target = torch.tensor([0, 2, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", fattr.CaptureWarning)
        ours, delta = fattr.layer_integrated_gradients(f, module, xs, base, n_steps=8, target=target,
                                                       kwargs=kwargs, return_delta=True)
        gxa = fattr.layer_gradient_x_activation(f, module, xs, target=target, kwargs=kwargs)
    theirs = captum_attr.LayerIntegratedGradients(forward, module).attribute(
        xs, base, target=target, additional_forward_args=extra, n_steps=8, method="gausslegendre")
    torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=RTOL * float(theirs.abs().max()))
    theirs = captum_attr.LayerGradientXActivation(forward, module).attribute(
        xs, target=target, additional_forward_args=extra)
    torch.testing.assert_close(gxa, theirs, rtol=1e-10, atol=1e-10 * float(theirs.abs().max()))
    # completeness at quadrature level: the attributions add up to the tail's change along the path
    # (the activation moves, everything else the tail reads stays at the input's values)
    fine = fattr.layer_integrated_gradients(f, module, xs, base, n_steps=48, target=target, kwargs=kwargs)
    s = fattr.split(f, module)
    act_x, rest_x = s.head(*xs, **kwargs)
    act_b, _ = s.head(base, **kwargs)
    with torch.no_grad():
        change = (s.tail(act_x, rest_x) - s.tail(act_b, rest_x)).gather(1, target[:, None])[:, 0]
    total, scale = fine.detach().reshape(B, -1).sum(1), fine.detach().reshape(B, -1).abs().sum(1)
    assert bool(((total - change).abs() <= 1e-2 * scale + 1e-9).all()), (total, change, scale)


CONDUCTANCE = [("vit", "block"), ("swin", "mlp"), ("convnext", "stage")]


@pytest.mark.parametrize("name,layer", CONDUCTANCE)
def test_layer_conductance_matches_captum(name: str, layer: str) -> None:
    f, xs, _ = _function(name)
    module = MODELS[name][2][layer](_model(name))
    with warnings.catch_warnings():
        warnings.simplefilter("error", fattr.CaptureWarning)
        ours = fattr.layer_conductance(f, module, xs, n_steps=6, method="riemann_trapezoid", target=1)
    theirs = captum_attr.LayerConductance(f, module).attribute(xs, n_steps=6, method="riemann_trapezoid", target=1)
    torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=RTOL * float(theirs.abs().max()))


def test_bert_conductance_on_input_embeddings_matches_captum() -> None:
    model = _model("bert")
    ids, mask = _text_inputs(2)
    with torch.no_grad():
        embeds = model.bert.embeddings.word_embeddings(ids)
    f = lambda e, m: model(inputs_embeds=e, attention_mask=m).logits  # noqa: E731
    layer = model.bert.encoder.layer[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", fattr.CaptureWarning)
        ours = fattr.layer_conductance(f, layer.output.dense, embeds, n_steps=5, target=2, args=(mask,))
    theirs = captum_attr.LayerConductance(f, layer.output.dense).attribute(
        embeds, n_steps=5, target=2, additional_forward_args=(mask,), method="gausslegendre")
    torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=RTOL * float(theirs.abs().max()))


def test_a_new_sequence_length_exports_once_more(exports: List[int]) -> None:
    f, (ids,), kwargs = _function("bert")
    layer = _model("bert").bert.encoder.layer[1]
    fattr.layer_gradient_x_activation(f, layer, ids, target=0, kwargs=kwargs)
    n = exports[0]
    short = {"attention_mask": kwargs["attention_mask"][:, :5]}
    fattr.layer_gradient_x_activation(f, layer, ids[:, :5], target=0, kwargs=short)
    fattr.layer_gradient_x_activation(f, layer, ids[:2, :5], target=0, kwargs={"attention_mask": short["attention_mask"][:2]})
    assert exports[0] == n + 1  # the batch size is dynamic; the length is not


def test_padding_is_respected_through_kwargs() -> None:
    """A padded example gives the same attributions on its real tokens as the same text unpadded."""
    f, (ids,), kwargs = _function("bert")
    layer = _model("bert").bert.embeddings
    full = fattr.layer_integrated_gradients(f, layer, ids, n_steps=8, target=0, kwargs=kwargs)
    alone = fattr.layer_integrated_gradients(f, layer, ids[:1, :5], n_steps=8, target=0,
                                             kwargs={"attention_mask": kwargs["attention_mask"][:1, :5]})
    torch.testing.assert_close(full[:1, :5], alone, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_a_block_given_the_generation_cache_is_captured(name: str) -> None:
    """Called as users call a causal LM (``use_cache`` on: a cache object reaches every block), the block is
    cut where its hidden states leave it, and layer IG matches Captum."""
    model = _model(name)
    ids, mask = _text_inputs(3)
    f = lambda ids, attention_mask: model(ids, attention_mask=attention_mask).logits[:, -1]  # noqa: E731
    block = MODELS[name][2]["block"](model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fattr.CaptureWarning)
        ours = fattr.layer_integrated_gradients(f, block, ids, n_steps=4, target=3, kwargs={"attention_mask": mask})
    theirs = captum_attr.LayerIntegratedGradients(lambda i, m: f(i, attention_mask=m), block).attribute(
        ids, torch.zeros_like(ids), target=3, additional_forward_args=(mask,), n_steps=4)
    torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=RTOL * float(theirs.abs().max()))


def _layer_ig_by_hooks(f: Callable[..., torch.Tensor], layer: torch.nn.Module, ids: torch.Tensor,
                       mask: torch.Tensor, n_steps: int, target: int) -> torch.Tensor:
    """Layer IG (Gauss-Legendre, zero ids as baseline) in plain torch, a loop over the steps, every graph kept:
    the layer's output is replaced by a forward hook while the model runs on the real inputs (Captum's
    semantics), so the parameters' gradients of a loss on it are an independent reference."""
    seen: List[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda m, i, out: seen.append(out))
    try:
        f(ids, attention_mask=mask), f(torch.zeros_like(ids), attention_mask=mask)
    finally:
        handle.remove()
    a_x, a_b = seen
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    total = torch.zeros_like(a_x)
    for alpha, w in zip((nodes + 1) / 2, weights / 2, strict=True):
        point = a_b + float(alpha) * (a_x - a_b)
        handle = layer.register_forward_hook(lambda m, i, out: point)
        try:
            out = f(ids, attention_mask=mask)[:, target].sum()
        finally:
            handle.remove()
        total = total + float(w) * torch.autograd.grad(out, point, create_graph=True)[0]
    return total * (a_x - a_b)


def test_differentiable_with_respect_to_parameters_through_a_capture() -> None:
    """A training loss on layer IG: the parameters' gradients (before, in and after the layer) through the
    exported head and tail equal those of the same loss on a plain-torch layer IG (hooks, a loop over the
    steps). Eager attention: torch has no double backward for CPU flash attention."""
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, num_labels=3, attn_implementation="eager")).eval().double()
    ids, mask = _text_inputs(4)
    f = lambda ids, attention_mask: model(ids, attention_mask=attention_mask).logits  # noqa: E731
    layer = model.bert.encoder.layer[0]
    watched = [model.classifier.weight, model.bert.encoder.layer[1].output.dense.weight,
               layer.attention.self.query.weight, model.bert.embeddings.word_embeddings.weight]

    def grads(attribute: Callable[[], torch.Tensor]) -> List[torch.Tensor]:
        model.zero_grad()
        (attribute() ** 2).sum().backward()
        return [p.grad.clone() for p in watched]

    with warnings.catch_warnings():
        warnings.simplefilter("error", fattr.CaptureWarning)
        captured = grads(lambda: fattr.layer_integrated_gradients(f, layer, ids, n_steps=6, target=1,
                                                                  kwargs={"attention_mask": mask}))
    reference = grads(lambda: _layer_ig_by_hooks(f, layer, ids, mask, 6, 1))
    assert len(captured) == len(reference) == 4
    for a, b in zip(captured, reference, strict=True):
        assert float(b.abs().max()) > 0
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_model_itself_is_captured(name: str) -> None:
    """The Hugging Face module itself (its forward returns a ModelOutput), not a function of it: its layer
    activation and split are captured (torch.fx cannot trace these models; torch.export does), and the
    activation is the one a forward hook sees."""
    model, kind = _model(name), MODELS[name][1]
    module = MODELS[name][2]["block" if "block" in MODELS[name][2] else "mlp"](model)
    xs = _function(name)[1]
    kwargs = {"use_cache": False} if kind == "lm" else {}
    seen: List[Any] = []
    handle = module.register_forward_hook(lambda m, a, out: seen.append(out))
    try:
        model(*xs, **kwargs)
    finally:
        handle.remove()
    with warnings.catch_warnings():
        warnings.simplefilter("error", fattr.CaptureWarning)
        ours = fattr.layer_activation(model, module, xs, kwargs=kwargs)
        s = fattr.split(model, module)
        s.head(*xs, **kwargs)
    assert s.captured
    torch.testing.assert_close(ours, seen[0], rtol=0, atol=0)
