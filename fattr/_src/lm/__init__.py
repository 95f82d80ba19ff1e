"""Causal language models: token-by-token attribution of generated text (``token_attribution``)."""
