"""Layer methods on Hugging Face transformers: fattr against Captum and the floor.

``python -m benchmarks.transformers_bench [--quick] [--cases bert gpt2] [--runs 5]``

Cases (random weights, eval mode, float32, built from configs: no download):

* ``bert``: ``BertForSequenceClassification``, hidden 256, 4 layers, 4 heads, sequence 128, batch 8,
  attention mask passed with ``kwargs`` (a quarter of each row padded);
* ``gpt2``: ``GPT2LMHeadModel``, n_embd 256, 4 layers, sequence 128, batch 4, the last position's logit.

Rows: layer IG at the word embeddings and at the last block, layer gradient x activation at the last
block, layer conductance at the last block (on ``inputs_embeds``: conductance interpolates the inputs, which
token ids cannot do) and layer feature ablation over tokens at the word embeddings. Each row is timed
interleaved (fattr, Captum, floor) after a warm-up call; the first call's time (with fattr's capture by
``torch.export``) is reported separately, and ``captures`` counts exports during the timed calls (must be 0).

Floors (plain torch, the same arithmetic, nothing a library could skip): layer IG at the word embeddings is
the embedding lookup once, then one batched forward and backward of ``model(inputs_embeds=...)`` over the
``n_steps * B`` path points. For the other rows no floor is written (splitting a Hugging Face model by hand
is what the library is for); the table says n/a.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time
import warnings
from typing import Any, Callable, Dict, List, Optional

import torch

import fattr

from .timing import interleaved

N_STEPS = 20


def _bert(quick: bool) -> Dict[str, Any]:
    import transformers
    hidden, layers, length, batch = (64, 2, 32, 4) if quick else (256, 4, 128, 8)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=1000, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=4 * hidden, max_position_embeddings=length, num_labels=2)).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 1000, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[:, 3 * length // 4:] = 0
    return {"model": model, "ids": ids, "mask": mask, "target": torch.arange(batch) % 2,
            "f": lambda ids, attention_mask: model(ids, attention_mask=attention_mask).logits,
            "f_embeds": lambda e, attention_mask: model(inputs_embeds=e, attention_mask=attention_mask).logits,
            "word": model.bert.embeddings.word_embeddings, "last": model.bert.encoder.layer[-1],
            "embed": lambda ids: model.bert.embeddings.word_embeddings(ids)}


def _gpt2(quick: bool) -> Dict[str, Any]:
    import transformers
    hidden, layers, length, batch = (64, 2, 32, 2) if quick else (256, 4, 128, 4)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=1000, n_embd=hidden, n_layer=layers, n_head=4, n_positions=length,
        bos_token_id=0, eos_token_id=0)).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 1000, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    return {"model": model, "ids": ids, "mask": mask, "target": torch.randint(0, 1000, (batch,), generator=g),
            "f": lambda ids, attention_mask: model(ids, attention_mask=attention_mask, use_cache=False).logits[:, -1],
            "f_embeds": lambda e, attention_mask: model(inputs_embeds=e, attention_mask=attention_mask,
                                                        use_cache=False).logits[:, -1],
            "word": model.transformer.wte, "last": model.transformer.h[-1],
            "embed": lambda ids: model.transformer.wte(ids)}


CASES: Dict[str, Callable[[bool], Dict[str, Any]]] = {"bert": _bert, "gpt2": _gpt2}


def _gauss_legendre(n: int) -> Any:
    import numpy as np
    x, w = np.polynomial.legendre.leggauss(n)
    return torch.tensor((x + 1) / 2, dtype=torch.float32), torch.tensor(w / 2, dtype=torch.float32)


def _rows(c: Dict[str, Any]) -> Dict[str, Dict[str, Callable[[], Any]]]:
    from captum import attr as ca
    f, ids, mask, target, kw = c["f"], c["ids"], c["mask"], c["target"], {"attention_mask": c["mask"]}
    base = torch.zeros_like(ids)
    alphas, weights = _gauss_legendre(N_STEPS)

    def floor_lig_word() -> Any:
        with torch.no_grad():
            e, e0 = c["embed"](ids), c["embed"](base)
        pts = (e0 + alphas.reshape(-1, 1, 1, 1) * (e - e0)).reshape((-1,) + tuple(e.shape[1:])).requires_grad_()
        out = c["f_embeds"](pts, mask.repeat(N_STEPS, 1)).gather(1, target.repeat(N_STEPS)[:, None]).sum()
        g, = torch.autograd.grad(out, pts)
        return (weights.reshape(-1, 1, 1, 1) * g.reshape((N_STEPS,) + tuple(e.shape))).sum(0) * (e - e0)

    with torch.no_grad():
        embeds = c["embed"](ids)
    token_mask = torch.arange(ids.shape[1]).reshape(1, -1, 1)
    lig_word = ca.LayerIntegratedGradients(f, c["word"])
    lig_last = ca.LayerIntegratedGradients(f, c["last"])
    gxa = ca.LayerGradientXActivation(f, c["last"])
    cond = ca.LayerConductance(c["f_embeds"], c["last"])
    abl = ca.LayerFeatureAblation(f, c["word"])
    one = int(target[0])  # Captum 0.9's LayerFeatureAblation takes one target for the whole batch
    return {
        "layer_integrated_gradients[word_embeddings]": {
            "fattr": lambda: fattr.layer_integrated_gradients(f, c["word"], ids, base, N_STEPS, target=target, kwargs=kw),
            "captum": lambda: lig_word.attribute(ids, base, target=target, additional_forward_args=(mask,),
                                                 n_steps=N_STEPS),
            "floor": floor_lig_word},
        "layer_integrated_gradients[last_block]": {
            "fattr": lambda: fattr.layer_integrated_gradients(f, c["last"], ids, base, N_STEPS, target=target, kwargs=kw),
            "captum": lambda: lig_last.attribute(ids, base, target=target, additional_forward_args=(mask,),
                                                 n_steps=N_STEPS)},
        "layer_gradient_x_activation[last_block]": {
            "fattr": lambda: fattr.layer_gradient_x_activation(f, c["last"], ids, target=target, kwargs=kw),
            "captum": lambda: gxa.attribute(ids, target=target, additional_forward_args=(mask,))},
        "layer_conductance[last_block]": {
            "fattr": lambda: fattr.layer_conductance(c["f_embeds"], c["last"], embeds, n_steps=N_STEPS,
                                                     target=target, args=(mask,)),
            "captum": lambda: cond.attribute(embeds, n_steps=N_STEPS, target=target, additional_forward_args=(mask,))},
        "layer_feature_ablation[tokens]": {
            "fattr": lambda: fattr.layer_feature_ablation(f, c["word"], ids, target=one, kwargs=kw,
                                                          layer_mask=token_mask, perturbations_per_eval=16),
            "captum": lambda: abl.attribute(ids, target=one, additional_forward_args=(mask,),
                                            layer_mask=token_mask, perturbations_per_eval=16)},
    }


def _agreement(a: Any, b: Any) -> float:
    a, b = (a[0] if isinstance(a, (tuple, list)) else a), (b[0] if isinstance(b, (tuple, list)) else b)
    a, b = a.detach().double().reshape(b.shape), b.detach().double()
    return float((a - b).abs().max() / max(float(b.abs().max()), 1e-12))


def run(cases: List[str], quick: bool, runs: int) -> List[Dict[str, Any]]:
    results = []
    real_export = torch.export.export
    count = [0]

    def counting(*a: Any, **k: Any) -> Any:
        count[0] += 1
        return real_export(*a, **k)

    torch.export.export = counting  # type: ignore[assignment]
    try:
        for name in cases:
            c = CASES[name](quick)
            for row, fns in _rows(c).items():
                with torch.enable_grad():
                    start = time.perf_counter()
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always", fattr.CaptureWarning)
                        first = fns["fattr"]()
                    first_s = time.perf_counter() - start
                    agree = _agreement(first, fns["captum"]())
                    before = count[0]
                    timings = interleaved(fns, runs=runs, warmup=1)
                results.append({
                    "case": name, "method": row, "first_call_s": first_s, "captures_in_timed_calls": count[0] - before,
                    "fallback": [str(w.message) for w in caught if issubclass(w.category, fattr.CaptureWarning)],
                    "agreement_vs_captum": agree,
                    **{f"{k}_ms": 1e3 * t.median for k, t in timings.items()},
                })
                r = results[-1]
                ratio = r["fattr_ms"] / r["captum_ms"]
                floor = f"{r['fattr_ms'] / r['floor_ms']:.2f}" if "floor_ms" in r else "n/a"
                print(f"{name:5s} {row:45s} fattr {r['fattr_ms']:8.1f} ms  captum {r['captum_ms']:8.1f} ms  "
                      f"fattr/captum {ratio:5.2f}  fattr/floor {floor:>5s}  first {first_s:6.2f} s  "
                      f"captures {r['captures_in_timed_calls']}  agree {agree:.1e}"
                      + ("  FALLBACK" if r["fallback"] else ""), flush=True)
    finally:
        torch.export.export = real_export  # type: ignore[assignment]
    return results


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--quick", action="store_true", help="tiny configs (seconds)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=pathlib.Path, default=None, help="write the results as JSON")
    a = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = run(a.cases, a.quick, a.runs)
    if a.out:
        a.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
