"""Tiny causal language models for the token_attribution tests, built in code (no download).

``gpt2`` and ``llama``: random Hugging Face ``GPT2LMHeadModel`` / ``LlamaForCausalLM`` (2 layers,
hidden 32) in float64; ``tokenizer``: a WordLevel tokenizer over :data:`WORDS`; ``TinyLM``: a
plain ``nn.Module`` causal LM (embedding, causal running mean, MLP) for fast property tests.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

WORDS = ["[UNK]", "[PAD]", "[EOS]"] + [f"w{i}" for i in range(21)]
VOCAB = len(WORDS)  # 24
PAD, EOS = 1, 2


def _quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import transformers
        transformers.logging.set_verbosity_error()
        return fn()


def gpt2(seed: int = 0) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel
    config = GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=EOS,
                        eos_token_id=EOS, pad_token_id=PAD, attn_pdrop=0.0, embd_pdrop=0.0, resid_pdrop=0.0)
    torch.manual_seed(seed)
    return _scaled(_quiet(lambda: GPT2LMHeadModel(config)).double().eval())


def llama(seed: int = 0) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD)
    torch.manual_seed(seed)
    return _scaled(_quiet(lambda: LlamaForCausalLM(config)).double().eval())


def _scaled(model: nn.Module) -> nn.Module:
    """Random init is tiny (std 0.02): scale the matrices so the logits depend visibly on the prompt."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5.0)
    return model


def tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = WhitespaceSplit()
    return _quiet(lambda: PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                                  eos_token="[EOS]"))


class TinyLM(nn.Module):
    """``ids -> logits``: embedding, causal running mean with learned position offsets, tanh MLP."""

    def __init__(self, vocab: int = 12, dim: int = 8, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, vocab)
        self.pos = nn.Parameter(torch.zeros(32, dim))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.double()

    def get_input_embeddings(self):
        return self.embed

    def forward(self, ids, attention_mask=None, position_ids=None):
        return self.from_embeddings(self.embed(ids), attention_mask, position_ids)

    def from_embeddings(self, e, attention_mask=None, position_ids=None):
        if position_ids is None:
            position_ids = torch.arange(e.shape[1])[None].expand(e.shape[:2])
        mask = torch.ones(e.shape[:2], dtype=torch.long) if attention_mask is None else attention_mask
        h = torch.tanh(e + 0.3 * self.pos[position_ids]) * mask[..., None]
        mean = h.cumsum(1) / mask.cumsum(1).clamp(min=1)[..., None]
        return self.out(torch.tanh(self.mix(mean)))
