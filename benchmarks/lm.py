"""The ``lm`` case: ``fattr.token_attribution`` against Captum's LLM classes and the floor.

``python -m benchmarks.lm [--quick] [--n-steps N] [--runs N] [--json PATH]`` (needs ``transformers``,
``tokenizers`` and Captum: ``pip install 'fattr[bench]'``).

Models: random ``LlamaForCausalLM`` and ``GPT2LMHeadModel`` (hidden 256, 4 layers, 4 heads, vocabulary
1000; float32, eval mode); prompts of 64 tokens, 16 target tokens (teacher-forced), batch 1 and 4.
Captum takes a batch of one, so it is called once per prompt. Implementations per method:

* ``fattr``: ``fattr.token_attribution(model, ids, target, method=...)``: every output token from
  one forward per path point, all prompts in one batch.
* ``captum``: ``LLMGradientAttribution(LayerIntegratedGradients / LayerGradientXActivation)`` and
  ``LLMAttribution(FeatureAblation)`` (timed on its default call, cached decoding, and with
  ``use_cached_outputs=False``; agreement is checked against the latter: with transformers 5.x the
  cached path gives wrong log-probs after the first output token).
* ``floor``: the computation written by hand with plain autograd on ``inputs_embeds``: one forward
  over prompt + target for all path points of all prompts, then T_out backward passes over the
  retained graph (gradient methods); every ablation of every prompt in one forward (feature
  ablation). It skips fattr's argument checks, the split and differentiability on demand.

Agreement: ``max |fattr - captum| / max |captum|`` over ``token_attr``. Times (wall clock, one torch
thread unless ``OMP_NUM_THREADS`` says otherwise): at batch 1 the median of ``--runs`` interleaved runs
(``benchmarks.timing``) after a warm-up; at batch 4 one run each (Captum's time is the sum of four
single-prompt calls; everything is warm by then). Captum's default (cached) feature ablation call is
timed at batch 1.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import Any, Callable, Dict, List

import torch

import fattr

from .timing import interleaved

HIDDEN, LAYERS, HEADS, VOCAB = 256, 4, 4, 1000
T_IN, T_OUT = 64, 16


def models(small: bool = False) -> Dict[str, torch.nn.Module]:
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
    transformers.logging.set_verbosity_error()
    hidden, layers = (64, 2) if small else (HIDDEN, LAYERS)
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden,
                                         num_hidden_layers=layers, num_attention_heads=HEADS,
                                         num_key_value_heads=HEADS, max_position_embeddings=128,
                                         bos_token_id=1, eos_token_id=2, pad_token_id=0))
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=128, n_embd=hidden, n_layer=layers,
                                      n_head=HEADS, bos_token_id=1, eos_token_id=2, pad_token_id=0))
    return {"llama": llama.eval(), "gpt2": gpt2.eval()}


def tokenizer() -> Any:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast
    words = ["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(3, VOCAB)]  # specials match no word
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<unk>", eos_token="</s>")


# ---------------------------------------------------------------- implementations

def captum_call(model: Any, tok: Any, method: str, ids: torch.Tensor, target: torch.Tensor, n_steps: int,
                cached: bool = False) -> torch.Tensor:
    """Captum, one prompt at a time: ``(B, T_out, T_in)``."""
    from captum.attr import (FeatureAblation, LayerGradientXActivation, LayerIntegratedGradients,
                             LLMAttribution, LLMGradientAttribution, TextTokenInput)
    rows = []
    for b in range(ids.shape[0]):
        inp = TextTokenInput(" ".join(f"w{i}" for i in ids[b].tolist()), tok, baselines=0)
        if method == "feature_ablation":
            explainer = LLMAttribution(FeatureAblation(model), tok)
            r = explainer.attribute(inp, target=target[b], use_cached_outputs=cached)
        elif method == "integrated_gradients":
            explainer = LLMGradientAttribution(LayerIntegratedGradients(model, model.get_input_embeddings()), tok)
            r = explainer.attribute(inp, target=target[b], n_steps=n_steps)
        else:
            explainer = LLMGradientAttribution(LayerGradientXActivation(model, model.get_input_embeddings()), tok)
            r = explainer.attribute(inp, target=target[b])
        rows.append(r.token_attr)
    return torch.stack(rows)


def fattr_call(model: Any, method: str, ids: torch.Tensor, target: torch.Tensor, n_steps: int) -> torch.Tensor:
    with torch.no_grad():  # explaining, not training (fattr is differentiable on demand either way)
        return fattr.token_attribution(model, ids, target, method=method, n_steps=n_steps,
                                       perturbations_per_eval=16).token_attr


def _log_probs(model: Any, embeds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = model(inputs_embeds=embeds).logits[:, T_IN - 1:T_IN - 1 + target.shape[1]]
    return torch.log_softmax(logits, -1).gather(-1, target[..., None])[..., 0]


def floor_call(model: Any, method: str, ids: torch.Tensor, target: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Plain autograd: one forward for every path point of every prompt, T_out backwards over it."""
    emb = model.get_input_embeddings()
    b = ids.shape[0]
    full = torch.cat([ids, target], 1)
    if method == "feature_ablation":
        with torch.no_grad():
            e = emb(full)
            original = _log_probs(model, e, target)  # (B, T_out)
            eye = torch.eye(T_IN, dtype=torch.bool)
            ablated = torch.where(eye[:, None, :], torch.zeros_like(ids)[None], ids[None])  # (T_in, B, T_in)
            seq = torch.cat([ablated.reshape(-1, T_IN), target.repeat(T_IN, 1)], 1)
            out = torch.cat([_log_probs(model, emb(s), t) for s, t in
                             zip(seq.split(16 * b), target.repeat(T_IN, 1).split(16 * b))])
            return (original[None] - out.reshape(T_IN, b, -1)).permute(1, 2, 0)
    with torch.no_grad():
        e = emb(full)
        base = emb(torch.cat([torch.zeros_like(ids), target], 1))
    if method == "integrated_gradients":
        alphas, weights = fattr.quadrature("gausslegendre", n_steps, dtype=e.dtype)
    else:
        alphas, weights = torch.ones(1), torch.ones(1)
        base = torch.zeros_like(e)
    k = alphas.shape[0]
    delta = e - base
    delta[:, T_IN:] = 0
    points = (e[None] - (1 - alphas)[:, None, None, None] * delta[None]).reshape(k * b, *e.shape[1:])
    points.requires_grad_()
    lp = _log_probs(model, points, target.repeat(k, 1))  # (k*B, T_out)
    rows = []
    for i in range(target.shape[1]):
        (g,) = torch.autograd.grad(lp[:, i].sum(), points, retain_graph=i < target.shape[1] - 1)
        g = (g.reshape(k, b, *e.shape[1:]) * weights[:, None, None, None]).sum(0)
        rows.append((g * (delta if method == "integrated_gradients" else e)).sum(-1)[:, :T_IN])
    return torch.stack(rows, 1).detach()


# ---------------------------------------------------------------- the table

def _once(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


METHODS = ["integrated_gradients", "gradient_x_activation", "feature_ablation"]


def run(quick: bool, n_steps: int, runs: int, small: bool = False, methods: Any = None) -> List[Dict[str, Any]]:
    tok = tokenizer()
    records = []
    methods = methods or METHODS
    batches = [1] if quick else [1, 4]
    g = torch.Generator().manual_seed(0)
    for name, model in models(small).items():
        for b in batches:
            ids = torch.randint(3, VOCAB, (b, T_IN), generator=g)
            target = torch.randint(3, VOCAB, (b, T_OUT), generator=g)
            for method in methods:
                fns: Dict[str, Callable[[], Any]] = {
                    "fattr": lambda: fattr_call(model, method, ids, target, n_steps),
                    "captum": lambda: captum_call(model, tok, method, ids, target, n_steps),
                    "floor": lambda: floor_call(model, method, ids, target, n_steps),
                }
                default_error = None
                if method == "feature_ablation" and b == 1:  # Captum's default call: timed at batch 1 only
                    fns["captum_default"] = lambda: captum_call(model, tok, method, ids, target, n_steps,
                                                                cached=True)
                    try:
                        fns["captum_default"]()
                    except Exception as e:  # GPT-2 + transformers 5.x: the cache overruns the positions
                        default_error = f"{type(e).__name__}: {e}"[:120]
                        del fns["captum_default"]
                ours, theirs, floor = fns["fattr"](), fns["captum"](), fns["floor"]()
                err = float((ours - theirs.to(ours.dtype)).abs().max() / theirs.abs().max())
                err_floor = float((ours - floor).abs().max() / floor.abs().max())
                if b == 1:
                    timing = {k: t.median for k, t in interleaved(fns, runs=runs, warmup=1).items()}
                else:  # warm from batch 1 and the calls above; Captum's time grows with the batch: one run each
                    timing = {k: _once(fn) for k, fn in fns.items()}
                rec = {"case": f"lm_{name}", "batch": b, "method": method, "n_steps": n_steps,
                       "max_rel_err_vs_captum": err, "max_rel_err_vs_floor": err_floor,
                       **{f"{impl}_ms": t * 1e3 for impl, t in timing.items()}}
                if default_error:
                    rec["captum_default_error"] = default_error
                rec["fattr/captum"] = rec["fattr_ms"] / rec["captum_ms"]
                if "captum_default_ms" in rec:
                    rec["fattr/captum_default"] = rec["fattr_ms"] / rec["captum_default_ms"]
                rec["fattr/floor"] = rec["fattr_ms"] / rec["floor_ms"]
                records.append(rec)
                print(f"{rec['case']} B={b} {method}: " + ", ".join(
                    f"{k}={v:.3g}" for k, v in rec.items() if isinstance(v, float)), file=sys.stderr, flush=True)
    return records


def table(records: List[Dict[str, Any]]) -> str:
    lines = ["| case | batch | method | fattr ms | Captum ms | floor ms | fattr/Captum | fattr/floor "
             "| Captum default ms | fattr/Captum default | max rel diff vs Captum |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        default = r.get("captum_default_ms")
        if r.get("captum_default_error"):
            shown, ratio = "fails", "–"
        elif default is None:
            shown, ratio = "–", "–"
        else:
            shown, ratio = f"{default:.0f}", f"{r['fattr/captum_default']:.3f}x"
        lines.append(f"| `{r['case']}` | {r['batch']} | `{r['method']}` | {r['fattr_ms']:.0f} | {r['captum_ms']:.0f} "
                     f"| {r['floor_ms']:.0f} | {r['fattr/captum']:.2f}x | {r['fattr/floor']:.2f}x | {shown} | {ratio} "
                     f"| {r['max_rel_err_vs_captum']:.1e} |")
    return "\n".join(lines)


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lm", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 1 only")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tiny models, one run
    parser.add_argument("--n-steps", type=int, default=16, help="IG path points (default 16)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default=None)
    parser.add_argument("--methods", nargs="*", choices=METHODS, default=None)
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = run(args.quick or args.smoke, 4 if args.smoke else args.n_steps, 1 if args.smoke else args.runs,
                      small=args.smoke, methods=args.methods)
    print(table(records))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
