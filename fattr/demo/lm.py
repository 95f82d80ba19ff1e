"""The language-model part of the demo: positional recall, explained token by token.

A tiny causal transformer learns to recall tokens by position: the prompt lists six tokens and
asks for the ones at two positions, ``v3 v7 v1 v9 v0 v4 ; @2 @0 ->``, and the answer is ``v1 v3``.
Each output token is decided by one known prompt token (the one at the asked position).
(Key-value recall, ``k2 v7 k0 v3 ; k0 ->``, needs a two-step induction circuit: this model trained on
it for 90 s, 18,500 steps, stayed on a loss plateau at 22% accuracy; a lookup by position is learned
in a few hundred steps.) Every ``fattr.token_attribution`` method explains held-out prompts; the report gives, per
method, how often the top-attributed prompt token is the deciding one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import torch
from torch import nn

import fattr
from fattr._src.lm.token_attribution import METHODS  # every method of token_attribution

N_ITEMS, N_VALUES, N_QUERIES = 6, 10, 2
SEP, ARROW = N_VALUES + N_ITEMS, N_VALUES + N_ITEMS + 1
VOCAB = N_VALUES + N_ITEMS + 2
T_IN = N_ITEMS + 1 + N_QUERIES + 1  # items, ';', asked positions, '->'


def make_batch(n: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(prompts (n, T_in), answers (n, 2), deciding prompt position (n, 2))``."""
    items = torch.randint(N_VALUES, (n, N_ITEMS), generator=generator)
    where = torch.argsort(torch.rand(n, N_ITEMS, generator=generator), dim=1)[:, :N_QUERIES]
    prompts = torch.cat([items, torch.full((n, 1), SEP), N_VALUES + where, torch.full((n, 1), ARROW)], 1)
    return prompts, items.gather(1, where), where


class RecallLM(nn.Module):
    """Embedding + learned positions, 2 pre-norm causal transformer layers (d 32), a linear read-out."""

    def __init__(self, seed: int, d: int = 32) -> None:
        super().__init__()
        torch.manual_seed(seed)  # the demo's model is built from its seed (the demo owns the process)
        self.embed = nn.Embedding(VOCAB, d)
        self.pos = nn.Embedding(T_IN + N_QUERIES, d)
        layer = nn.TransformerEncoderLayer(d, 2, 2 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.out = nn.Linear(d, VOCAB)

    def get_input_embeddings(self) -> nn.Module:
        return self.embed

    def forward(self, ids: torch.Tensor, attention_mask: Any = None) -> torch.Tensor:
        t = ids.shape[1]
        h = self.embed(ids) + self.pos(torch.arange(t, device=ids.device))
        causal = torch.triu(torch.full((t, t), float("-inf"), device=ids.device), 1)
        return self.out(self.body(h, mask=causal, is_causal=True))


def train(model: RecallLM, seconds: float, steps: int, seed: int, log: Callable[[str], None]) -> float:
    """Teacher-forced cross-entropy on the answer tokens; returns held-out answer accuracy."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        prompts, answers, _ = make_batch(64, g)
        logits = model(torch.cat([prompts, answers], 1))[:, T_IN - 1:T_IN - 1 + N_QUERIES]
        loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), answers.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            log(f"recall LM: step {step}, loss {loss.item():.3f} ({time.perf_counter() - start:.1f} s)")
        if time.perf_counter() - start > seconds or loss.item() < 1e-3:  # out of time, or learned
            break
    model.eval()
    return accuracy(model, seed + 1)


def accuracy(model: RecallLM, seed: int) -> float:
    prompts, answers, _ = make_batch(1000, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = fattr.token_attribution(model, prompts, method="gradient_x_activation", max_new_tokens=N_QUERIES)
    return float((out.target_ids == answers).all(1).float().mean())


@dataclass
class LMOutcome:
    method: str
    value_hits: float  # the top prompt token is the recalled one
    hits: float  # the top prompt token is the recalled one or the position asking for it
    seconds: float


def evaluate(model: RecallLM, n: int, seed: int) -> Tuple[List[LMOutcome], Dict[str, Any]]:
    prompts, answers, deciding = make_batch(n, torch.Generator().manual_seed(seed))
    outcomes, results = [], {}
    for method in METHODS:
        start = time.perf_counter()
        with torch.no_grad():
            r = fattr.token_attribution(model, prompts, answers, method=method, n_steps=32, n_samples=8,
                                        baselines=SEP, generator=torch.Generator().manual_seed(seed))
        seconds = time.perf_counter() - start
        top = r.token_attr.argmax(-1)  # (n, 2)
        asking = N_ITEMS + 1 + torch.arange(N_QUERIES)[None]  # where output token i's position is asked
        outcomes.append(LMOutcome(method, float((top == deciding).float().mean()),
                                  float(((top == deciding) | (top == asking)).float().mean()), seconds))
        results[method] = r
    return outcomes, {"prompts": prompts, "answers": answers, "results": results}


def picture(path: Path, evaluated: Dict[str, Any], example: int = 0) -> None:
    from matplotlib.figure import Figure

    from fattr.viz import token_matrix
    names = [f"v{i}" for i in range(N_VALUES)] + [f"@{i}" for i in range(N_ITEMS)] + [";", "->"]
    tokens_in = [names[i] for i in evaluated["prompts"][example].tolist()]
    tokens_out = [names[i] for i in evaluated["answers"][example].tolist()]
    fig = Figure(figsize=(3.2 * len(METHODS), 2.6))
    for i, method in enumerate(METHODS):
        ax = fig.add_subplot(1, len(METHODS), i + 1)
        token_matrix(evaluated["results"][method], tokens_in, tokens_out, ax=ax, example=example)
        ax.set_title(method.replace("_", " "), fontsize=9)
        if i:
            ax.set_ylabel("")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(out: Path, quick: bool, seed: int, log: Callable[[str], None]) -> str:
    """Train, explain, draw ``lm.png``; return the report's section."""
    model = RecallLM(seed)
    t0 = time.perf_counter()
    acc = train(model, seconds=3.0 if quick else 30.0, steps=200 if quick else 5000, seed=seed, log=log)
    train_seconds = time.perf_counter() - t0
    log(f"recall LM: held-out accuracy {acc:.1%} ({train_seconds:.1f} s)")
    n = 8 if quick else 200
    outcomes, evaluated = evaluate(model, n, seed + 7)
    picture(out / "lm.png", evaluated)
    rows = "\n".join(f"| `token_attribution(method=\"{o.method}\")` | {o.hits:.1%} | {o.value_hits:.1%} "
                     f"| {o.seconds * 1e3:.0f} |" for o in outcomes)
    return f"""
## Language model: positional recall
A causal transformer (2 layers, d 32) trained for {train_seconds:.1f} s on prompts such as
`v3 v7 v1 v9 v0 v4 ; @2 @0 ->` whose answer is `v1 v3` (the tokens at positions 2 and 0): **held-out
accuracy {acc:.1%}** (both answer tokens right, greedy decoding). {n} held-out prompts explained with every
`fattr.token_attribution` method (teacher-forced on the true answer, baseline token `;`, 32 IG steps,
8 samples). Two prompt tokens decide each output token: the recalled token and the position token asking
for it (the value and the key of key-value recall). Hit rate: how often the top-attributed prompt token of
an output token is one of them (chance {2 / T_IN:.0%}); and how often it is the recalled token itself
(chance {1 / T_IN:.0%}).

| call | top token decides | top token is the recalled one | time for {n} prompts (ms) |
|---|---:|---:|---:|
{rows}

`lm.png`: the first prompt, output tokens (rows) x prompt tokens (columns), one panel per method.
"""
