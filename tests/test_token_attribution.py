"""token_attribution: axioms, references and errors (float64, tiny models).

References written here: a per-output-token loop (one attribution per output token, over
``prompt + target[:i]``, as Captum runs it) for IG, gradient x activation and feature
ablation; completeness; padding invariance (left, right, inside a batch); the causal
structure (output token i does not depend on later target tokens); exact Shapley values
by enumeration; Hypothesis over prompt and target lengths.
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fattr
from fattr._src.quadrature import quadrature
from lm_models import TinyLM, gpt2

V = 12


def ids(b, t, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, V, (b, t), generator=g)


def log_prob_next(lm, e, token):
    """log p(token | sequence embedded as e) at the last position, per row."""
    return torch.log_softmax(lm.from_embeddings(e)[:, -1], -1)[:, token]


def loop_reference(lm, prompt, target, method, n_steps=8, baseline_id=0):
    """One attribution per output token over prompt + target[:i] (Captum's structure), plain autograd."""
    b, n_in = prompt.shape
    rows = []
    alphas, weights = quadrature("gausslegendre", n_steps)
    for i in range(target.shape[1]):
        seq = torch.cat([prompt, target[:, :i]], 1)
        e = lm.embed(seq).detach()
        base = lm.embed(torch.cat([torch.full_like(prompt, baseline_id), target[:, :i]], 1)).detach()
        per_row = []
        for r in range(b):
            if method == "feature_ablation":
                full = log_prob_next(lm, e[r:r + 1], target[r, i])
                cols = []
                for t in range(n_in):
                    ablated = seq[r:r + 1].clone()
                    ablated[0, t] = baseline_id
                    cols.append(full - log_prob_next(lm, lm.embed(ablated), target[r, i]))
                per_row.append(torch.cat(cols).detach())
                continue
            if method == "gradient_x_activation":
                x = e[r:r + 1].clone().requires_grad_()
                (g,) = torch.autograd.grad(log_prob_next(lm, x, target[r, i]).sum(), x)
                per_row.append((g * e[r:r + 1]).sum(-1)[0, :n_in])
                continue
            total = torch.zeros(n_in, dtype=torch.float64)
            for a, w in zip(alphas, weights, strict=True):
                x = (base[r:r + 1] + a * (e[r:r + 1] - base[r:r + 1])).requires_grad_()
                (g,) = torch.autograd.grad(log_prob_next(lm, x, target[r, i]).sum(), x)
                total = total + w * (g * (e[r:r + 1] - base[r:r + 1])).sum(-1)[0, :n_in]
            per_row.append(total)
        rows.append(torch.stack(per_row))
    return torch.stack(rows, 1)  # (B, T_out, T_in)


@pytest.mark.parametrize("method", ["integrated_gradients", "gradient_x_activation", "feature_ablation"])
def test_equals_the_per_token_loop(method):
    lm = TinyLM()
    prompt, target = ids(2, 5, 0), ids(2, 3, 1)
    got = fattr.token_attribution(lm, prompt, target, method=method, n_steps=8)
    expected = loop_reference(lm, prompt, target, method, n_steps=8)
    torch.testing.assert_close(got.token_attr.detach(), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got.seq_attr, got.token_attr.sum(1), rtol=1e-12, atol=1e-12)


@given(n_in=st.integers(1, 6), n_out=st.integers(1, 4), b=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_completeness_over_lengths(n_in, n_out, b, seed):
    """sum_t IG[i, t] = step_i(prompt) - step_i(baseline prompt), for any prompt and target length."""
    lm = TinyLM(seed=seed % 7)
    prompt, target = ids(b, n_in, seed), ids(b, n_out, seed + 1)
    r = fattr.token_attribution(lm, prompt, target, n_steps=64)  # quadrature error well below the tolerance
    base = fattr.token_attribution(lm, torch.zeros_like(prompt), target, method="gradient_x_activation")
    torch.testing.assert_close(r.token_attr.sum(-1), r.values - base.values, rtol=1e-6, atol=1e-6)
    # gradient x activation equals the loop reference for every length too
    gxa = fattr.token_attribution(lm, prompt, target, method="gradient_x_activation")
    torch.testing.assert_close(gxa.token_attr.detach(), loop_reference(lm, prompt, target, "gradient_x_activation"),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["integrated_gradients", "gradient_x_activation", "feature_ablation",
                                    "shapley_value_sampling"])
@pytest.mark.parametrize("model", ["tiny", "gpt2"])
def test_padding_does_not_change_a_prompts_attributions(method, model):
    """A prompt alone, and inside a batch with left padding and with right padding: same attributions.
    (Gradient SHAP draws one alpha per example and sample, so its draws depend on the batch.)"""
    lm = TinyLM() if model == "tiny" else gpt2()
    short, long = ids(1, 3, 5), ids(1, 5, 6)
    target = ids(2, 2, 7)
    kw = dict(method=method, n_steps=8, n_samples=3, stdevs=0.0)

    def run(prompt, mask, tgt):
        return fattr.token_attribution(lm, prompt, tgt, attention_mask=mask,
                                       generator=torch.Generator().manual_seed(0), **kw)

    alone = run(short, None, target[:1])
    left = torch.cat([torch.cat([torch.full((1, 2), 1), short], 1), long])
    left_mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    right = torch.cat([torch.cat([short, torch.full((1, 2), 1)], 1), long])
    right_mask = left_mask.flip(1)
    for prompt, mask, cols in [(left, left_mask, slice(2, 5)), (right, right_mask, slice(0, 3))]:
        r = run(prompt, mask, target)
        if method == "shapley_value_sampling":  # orders are drawn over the batch's features: compare efficiency
            torch.testing.assert_close(r.token_attr[0, :, cols].sum(-1), alone.token_attr[0].sum(-1),
                                       rtol=1e-9, atol=1e-10)
        else:
            torch.testing.assert_close(r.token_attr[0, :, cols], alone.token_attr[0], rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(r.values[0], alone.values[0], rtol=1e-10, atol=1e-10)
        pads = mask[0] == 0
        assert (r.token_attr[0][:, pads] == 0).all()


@pytest.mark.parametrize("method", ["integrated_gradients", "feature_ablation"])
def test_output_token_i_does_not_depend_on_later_targets(method):
    lm = TinyLM()
    prompt, target = ids(2, 4, 8), ids(2, 4, 9)
    changed = target.clone()
    changed[:, 2:] = (changed[:, 2:] + 3) % V  # target tokens 2 and 3
    a = fattr.token_attribution(lm, prompt, target, method=method, n_steps=6)
    b = fattr.token_attribution(lm, prompt, changed, method=method, n_steps=6)
    torch.testing.assert_close(a.token_attr[:, :2], b.token_attr[:, :2], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(a.token_attr[:, 2:], b.token_attr[:, 2:])


def test_shapley_sampling_is_efficient_and_exact_with_every_order():
    lm = TinyLM()
    prompt, target = ids(2, 3, 10), ids(2, 2, 11)
    r = fattr.token_attribution(lm, prompt, target, method="shapley_value_sampling", n_samples=4,
                                generator=torch.Generator().manual_seed(0), perturbations_per_eval=3)
    base = fattr.token_attribution(lm, torch.zeros_like(prompt), target, method="gradient_x_activation")
    torch.testing.assert_close(r.token_attr.sum(-1), r.values - base.values, rtol=1e-10, atol=1e-12)

    # exact Shapley values by enumerating coalitions
    def value(present):
        p = torch.where(torch.tensor(present)[None], prompt, 0)
        return fattr.token_attribution(lm, p, target, method="gradient_x_activation").values

    exact = torch.zeros(2, 2, 3, dtype=torch.float64)
    for j in range(3):
        for coalition in itertools.product([False, True], repeat=3):
            if coalition[j]:
                continue
            with_j = list(coalition)
            with_j[j] = True
            s = sum(coalition)
            weight = math.factorial(s) * math.factorial(3 - s - 1) / math.factorial(3)
            exact[:, :, j] += weight * (value(with_j) - value(list(coalition)))
    many = fattr.token_attribution(lm, prompt, target, method="shapley_value_sampling", n_samples=400,
                                   generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(many.token_attr, exact, rtol=0, atol=0.1 * float(exact.detach().abs().max()))


def test_feature_mask_groups_tokens():
    lm = TinyLM()
    prompt, target = ids(1, 4, 12), ids(1, 2, 13)
    mask = torch.tensor([[7, 7, 3, 3]])
    r = fattr.token_attribution(lm, prompt, target, method="feature_ablation", feature_mask=mask)
    assert torch.equal(r.token_attr[..., 0], r.token_attr[..., 1])
    ablated = torch.tensor([[0, 0, prompt[0, 2], prompt[0, 3]]])
    expected = r.values - fattr.token_attribution(lm, ablated, target, method="gradient_x_activation").values
    torch.testing.assert_close(r.token_attr[..., 0], expected, rtol=1e-12, atol=1e-12)


def test_gradient_shap_is_the_sampled_path_estimate():
    """alphas U(0, 1) (n_samples, B) from the generator; no noise: mean of grad at the sampled points."""
    lm = TinyLM()
    prompt, target = ids(2, 3, 14), ids(2, 2, 15)
    r = fattr.token_attribution(lm, prompt, target, method="gradient_shap", n_samples=3,
                                generator=torch.Generator().manual_seed(4))
    alphas = torch.rand((3, 2), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    expected = torch.zeros_like(r.token_attr)
    for s in range(3):
        for row in range(2):
            seq = torch.cat([prompt[row:row + 1], target[row:row + 1]], 1)
            e = lm.embed(seq).detach()
            base = lm.embed(torch.cat([torch.zeros_like(prompt[row:row + 1]), target[row:row + 1]], 1)).detach()
            x = (base + alphas[s, row] * (e - base)).requires_grad_()
            lp = torch.log_softmax(lm.from_embeddings(x)[0, 2:4], -1).gather(-1, target[row][:, None])[:, 0]
            for i in range(2):
                (g,) = torch.autograd.grad(lp[i], x, retain_graph=True)
                expected[row, i] += (g * (e - base)).sum(-1)[0, :3] / 3
    torch.testing.assert_close(r.token_attr.detach(), expected, rtol=1e-10, atol=1e-12)


def test_steps():
    lm = TinyLM()
    prompt, target, foil = ids(2, 3, 16), ids(2, 2, 17), ids(2, 2, 18)
    lp = fattr.token_attribution(lm, prompt, target, method="gradient_x_activation")
    # log p(foil_i | prompt, target_<i): the foil scored after the target's prefix (k=1 row per example here)
    lp_foil = fattr.token_attribution(lm, prompt, target, method="gradient_x_activation",
                                      step=lambda logits, t: torch.log_softmax(logits, -1).gather(-1, foil[..., None])[..., 0])
    contrast = fattr.token_attribution(lm, prompt, target, method="gradient_x_activation", step="contrast",
                                       foil_ids=foil)
    torch.testing.assert_close(contrast.token_attr, lp.token_attr - lp_foil.token_attr, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(contrast.values, lp.values - lp_foil.values)
    prob = fattr.token_attribution(lm, prompt, target, method="gradient_x_activation", step="prob")
    torch.testing.assert_close(prob.token_attr, lp.token_attr * lp.values.exp()[..., None])  # chain rule
    custom = fattr.token_attribution(lm, prompt, target, method="gradient_x_activation",
                                     step=lambda logits, t: logits.gather(-1, t[..., None])[..., 0])
    logit = fattr.token_attribution(lm, prompt, target, method="gradient_x_activation", step="logit")
    torch.testing.assert_close(custom.token_attr, logit.token_attr)


def test_greedy_decoding_stops_at_eos_per_row():
    class Counter(torch.nn.Module):
        """Next token = last token + 1; token 5 is the end of sequence."""

        config = type("Config", (), {"eos_token_id": 5, "pad_token_id": 0})()

        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(8, 8, _weight=torch.eye(8, dtype=torch.float64))

        def get_input_embeddings(self):
            return self.embed

        def forward(self, ids, attention_mask=None):
            e = self.embed(ids)
            return 20 * torch.roll(e, 1, -1)

    r = fattr.token_attribution(Counter(), torch.tensor([[1, 3], [1, 1]]), method="gradient_x_activation",
                                max_new_tokens=6)
    assert r.target_ids.tolist() == [[4, 5, 0, 0], [2, 3, 4, 5]]
    assert r.target_mask.tolist() == [[True, True, False, False], [True] * 4]
    assert (r.token_attr[0, 2:] == 0).all() and (r.values[0, 2:] == 0).all()


def test_differentiable_and_no_grad_invariant():
    lm = TinyLM()
    prompt, target = ids(2, 3, 19), ids(2, 2, 20)
    r = fattr.token_attribution(lm, prompt, target, n_steps=4)
    (g,) = torch.autograd.grad(r.token_attr.pow(2).sum(), lm.mix.weight)
    assert g.abs().sum() > 0
    with torch.no_grad():
        again = fattr.token_attribution(lm, prompt, target, n_steps=4)
    torch.testing.assert_close(again.token_attr, r.token_attr.detach(), rtol=0, atol=0)
    assert lm.mix.weight.grad is None


class Odd(TinyLM):
    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Linear(2, 2)  # a layer the model never calls
        self.flat = torch.nn.Flatten(1)  # a layer whose output is not one vector per token

    def forward(self, ids, attention_mask=None):
        e = self.embed(ids)
        return self.from_embeddings(e + 0 * self.flat(e).sum(), attention_mask)


@pytest.mark.parametrize("call, kind, match", [
    (lambda lm, p, t: fattr.token_attribution(lm, p.float(), t), TypeError, "input_ids: expected an integer"),
    (lambda lm, p, t: fattr.token_attribution(lm, p, t[:1]), ValueError, "target_ids: expected 2 rows"),
    (lambda lm, p, t: fattr.token_attribution(lm, p + 20, t), ValueError, r"input_ids: expected token ids in \[0, 12\)"),
    (lambda lm, p, t: fattr.token_attribution(lm, p, t + 20), ValueError, r"target_ids: expected token ids in \[0, 12\)"),
    (lambda lm, p, t: fattr.token_attribution(lm, p, t, attention_mask=torch.ones(2, 5)), ValueError,
     r"attention_mask: expected None or a 0/1 tensor of shape \(2, 3\)"),
    (lambda lm, p, t: fattr.token_attribution(lm, p, t, step="contrast"), ValueError, "foil_ids: expected"),
    (lambda lm, p, t: fattr.token_attribution(lm, p, t, method="feature_ablation", baselines=None), ValueError,
     "baselines: expected a token id"),
    (lambda lm, p, t: fattr.token_attribution(lm, p, t, method="lime"), ValueError, "method: expected one of"),
    (lambda lm, p, t: fattr.token_attribution(lambda i, attention_mask: lm(i), p, t), TypeError,
     "model: expected an nn.Module for method='integrated_gradients'"),
    (lambda lm, p, t: fattr.token_attribution(lambda i, attention_mask: lm(i)[:, 1:], p, t,
                                              method="feature_ablation"),
     ValueError, r"model: expected a causal LM returning logits of shape \(2, 5, V\)"),
    (lambda lm, p, t: fattr.token_attribution(lm, p, t, layer=torch.nn.Embedding(12, 8)), ValueError,
     "layer: expected a submodule of the model"),
    (lambda lm, p, t: fattr.token_attribution(lm, p, t, layer=lm.unused), ValueError,
     "layer: expected a layer that runs exactly once"),
    (lambda lm, p, t: fattr.token_attribution(lm, p, t, layer=lm.flat), ValueError,
     r"layer: expected the input-embedding layer: output of shape \(2, 5, E\)"),
])
def test_errors(call, kind, match):
    lm = Odd()
    with pytest.raises(kind, match=match):
        call(lm, ids(2, 3, 21), ids(2, 2, 22))


# ---------------------------------------------------------------- the contract, for every method

from test_contract import CausalView, assert_same_snapshot, make_net, snapshot  # noqa: E402

ALL = ["integrated_gradients", "gradient_x_activation", "gradient_shap", "feature_ablation",
       "shapley_value_sampling"]


def contract_call(model, method, seed=0, **extra):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64)
    prompt, target = (x.abs() * 7).long() % 3, (x[:, :2].abs() * 11).long() % 3
    kw = dict(method=method, n_steps=6, n_samples=3, stdevs=0.1, layer=model.body[0],
              generator=torch.Generator().manual_seed(seed))
    kw.update(extra)
    out = fattr.token_attribution(CausalView(model), prompt, target, **kw)
    return out.token_attr, out.values


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "batchnorm-train"])
@pytest.mark.parametrize("method", ALL)
def test_every_method_is_pure(method, batchnorm):
    model = make_net(batchnorm).train(batchnorm)
    before, rng = snapshot(model), torch.get_rng_state()
    contract_call(model, method)
    assert_same_snapshot(before, snapshot(model))
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("method", ALL)
def test_every_method_no_grad_chunks_and_seeds(method):
    model = make_net()
    expected = contract_call(model, method)
    with torch.no_grad():
        got = contract_call(model, method)
    chunked = contract_call(model, method, chunk_size=2, perturbations_per_eval=2, cotangent_chunk=2)
    for e, g, c in zip(expected, got, chunked, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(c, e, rtol=1e-10, atol=1e-12)
    if method in ("gradient_shap", "shapley_value_sampling"):
        assert not torch.equal(contract_call(model, method, seed=5)[0], expected[0])


@pytest.mark.parametrize("method", ALL)
def test_every_method_is_differentiable(method):
    """Against central finite differences, for a parameter before and after the embedding."""
    model = make_net()
    for param in ("body.0.weight", "head.1.weight"):
        weight = dict(model.named_parameters())[param]
        (grad,) = torch.autograd.grad(contract_call(model, method)[0].pow(2).sum(), weight)
        eps = 1e-6
        shifted = []
        for sign in (1, -1):
            with torch.no_grad():
                weight[0, 1] += sign * eps
                shifted.append(contract_call(model, method)[0].pow(2).sum())
                weight[0, 1] -= sign * eps
        torch.testing.assert_close(grad[0, 1], (shifted[0] - shifted[1]) / (2 * eps), rtol=1e-4, atol=1e-6)


class Kept(TinyLM):
    """TinyLM with Hugging Face's ``logits_to_keep``: logits for the last positions only."""

    def forward(self, ids, attention_mask=None, position_ids=None, logits_to_keep=0):
        self.kept = logits_to_keep
        logits = super().forward(ids, attention_mask, position_ids)
        return logits[:, -logits_to_keep:] if logits_to_keep else logits


@pytest.mark.parametrize("method", ["integrated_gradients", "feature_ablation"])
def test_logits_to_keep_is_used_and_changes_nothing(method):
    plain, kept = TinyLM(), Kept()
    prompt, target = ids(2, 5, 30), ids(2, 3, 31)
    a = fattr.token_attribution(plain, prompt, target, method=method, n_steps=4)
    b = fattr.token_attribution(kept, prompt, target, method=method, n_steps=4)
    assert kept.kept == 4  # T_out + 1
    torch.testing.assert_close(b.token_attr, a.token_attr, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b.values, a.values, rtol=1e-12, atol=1e-12)
    greedy = fattr.token_attribution(kept, prompt, method=method, max_new_tokens=2, n_steps=4)
    assert torch.equal(greedy.target_ids, fattr.token_attribution(plain, prompt, method=method, max_new_tokens=2,
                                                                  n_steps=4).target_ids)
