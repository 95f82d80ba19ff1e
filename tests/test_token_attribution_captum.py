"""token_attribution against Captum 0.9's LLM classes on tiny random Hugging Face models (float64).

Captum: ``LLMGradientAttribution(LayerIntegratedGradients / LayerGradientXActivation)`` on the input
embeddings, and ``LLMAttribution(FeatureAblation)`` with ``use_cached_outputs=False`` (with
transformers 5.x its default cached decoding gives wrong log-probs after the first output
token). Captum runs one attribution per output token; fattr one forward per path point for all.
Tolerances: IG 1e-7 relative (measured ~1e-9) (Captum keeps its quadrature weights in float32), gradient x
activation 1e-10 (measured 0); feature ablation 1e-6 (measured 0) (Captum accumulates it in float32). Llama computes RMSNorm
and RoPE in float32 even in a float64 model: float32-level agreement is all the test asks there (1e-5; measured ~1e-9).
"""
from __future__ import annotations

import pytest
import torch

import fattr
from lm_models import gpt2, llama, tokenizer

captum_attr = pytest.importorskip("captum.attr")
pytest.importorskip("transformers")

PROMPT = "w3 w7 w1 w12 w5 w9"
TARGET = torch.tensor([4, 11, 17])
MODELS = {"gpt2": gpt2, "llama": llama}


def relative(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max())


def captum_gradient(model, tok, cls, **kwargs):
    inp = captum_attr.TextTokenInput(PROMPT, tok)
    explainer = captum_attr.LLMGradientAttribution(cls(model, model.get_input_embeddings()), tok)
    return explainer.attribute(inp, target=TARGET, **kwargs)


@pytest.fixture(scope="module")
def tok():
    return tokenizer()


@pytest.mark.parametrize("name", list(MODELS))
def test_integrated_gradients_matches_captum(name, tok):
    model = MODELS[name]()
    ids = tok.encode(PROMPT, return_tensors="pt")
    expected = captum_gradient(model, tok, captum_attr.LayerIntegratedGradients, n_steps=16)
    got = fattr.token_attribution(model, ids, TARGET[None], n_steps=16)
    tol = 1e-7 if name == "gpt2" else 1e-5
    assert relative(got.token_attr[0], expected.token_attr) < tol
    assert relative(got.seq_attr[0], expected.seq_attr) < tol
    assert got.token_attr.abs().max() > 0.05  # not trivially small


@pytest.mark.parametrize("name", list(MODELS))
def test_gradient_x_activation_matches_captum(name, tok):
    model = MODELS[name]()
    ids = tok.encode(PROMPT, return_tensors="pt")
    expected = captum_gradient(model, tok, captum_attr.LayerGradientXActivation)
    got = fattr.token_attribution(model, ids, TARGET[None], method="gradient_x_activation")
    tol = 1e-10 if name == "gpt2" else 1e-5
    assert relative(got.token_attr[0], expected.token_attr) < tol
    assert relative(got.seq_attr[0], expected.seq_attr) < tol


@pytest.mark.parametrize("name", list(MODELS))
def test_feature_ablation_matches_captum(name, tok):
    model = MODELS[name]()
    ids = tok.encode(PROMPT, return_tensors="pt")
    inp = captum_attr.TextTokenInput(PROMPT, tok, baselines=0)
    explainer = captum_attr.LLMAttribution(captum_attr.FeatureAblation(model), tok)
    expected = explainer.attribute(inp, target=TARGET, use_cached_outputs=False)
    got = fattr.token_attribution(model, ids, TARGET[None], method="feature_ablation", perturbations_per_eval=4)
    assert relative(got.token_attr[0].float(), expected.token_attr) < 1e-6
    assert relative(got.seq_attr[0].float(), expected.seq_attr) < 1e-6


def test_greedy_targets_match_generate(tok):
    model = gpt2()
    ids = tok.encode(PROMPT, return_tensors="pt")
    got = fattr.token_attribution(model, ids, method="gradient_x_activation", max_new_tokens=5)
    expected = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                              pad_token_id=1)[:, ids.shape[1]:]
    n = got.target_ids.shape[1]
    assert torch.equal(got.target_ids[got.target_mask], expected[:, :n][got.target_mask])
