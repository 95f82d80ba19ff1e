"""Benchmark pairs of layer-wise relevance propagation (``lrp``, ``layer_lrp``), appended to
:data:`benchmarks.pairs.PAIRS`.

Default rules (epsilon for Linear, Conv and max pooling; ReLU and Flatten pass relevance through). The
floor keeps the forward's activations and walks the layers back once in plain autograd: per ruled layer
one vector-Jacobian product of ``z = layer(a)`` with ``r / (z + eps sign z)``, times ``a``. Captum refuses
``nn.Flatten`` (no rule), so its side runs the same modules with the flattening done in ``forward``
(:class:`_Unflattened`). ``resnet`` (its shortcuts are empty ``nn.Sequential`` leaves, residual additions
without Captum's ``Addition_Module``) and ``transformer`` (LayerNorm, attention) have no LRP rules.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from .cases import Case
from .pairs import TOKENS, Builder, Fn, Pair, Settings

_EPS = 1e-9  # Captum's and fattr's default epsilon
_PASS = (nn.ReLU, nn.Flatten, nn.Dropout)
NO_RULE = "leaf modules without an LRP rule in fattr and Captum (empty nn.Sequential shortcuts, LayerNorm, attention)"


class _Unflattened(nn.Module):
    """``model`` (an ``nn.Sequential``) with its ``nn.Flatten`` children applied in ``forward``: the same
    modules, which Captum's LRP accepts."""

    def __init__(self, model: nn.Sequential) -> None:
        super().__init__()
        self.layers = nn.ModuleList([m for m in model if not isinstance(m, nn.Flatten)])
        self.flat = [isinstance(m, nn.Flatten) for m in model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        it = iter(self.layers)
        for flat in self.flat:
            x = x.flatten(1) if flat else next(it)(x)
        return x


def _floor(stop: int) -> Builder:
    """The relevance reaching the output of child ``stop`` (-1: the inputs)."""
    def build(c: Case, s: Settings) -> Fn:
        layers = list(c.model)

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                acts = [x]
                for layer in layers:
                    acts.append(layer(acts[-1]))
                out = acts[-1].gather(1, c.target.reshape(-1, 1))
                r = torch.zeros_like(acts[-1]).scatter(1, c.target.reshape(-1, 1), 1.0)
            for k in range(len(layers) - 1, stop, -1):
                a = acts[k]
                if isinstance(layers[k], _PASS):
                    r = r.reshape(a.shape)
                    continue
                with torch.enable_grad():
                    leaf = a.detach().requires_grad_(True)
                    z = layers[k](leaf)
                    (g,) = torch.autograd.grad(z, leaf, r / (z + _EPS * torch.where(z >= 0, 1.0, -1.0)))
                r = a * g
            return r * out.reshape((-1,) + (1,) * (r.dim() - 1))
        return run
    return build


def _floor_layer(c: Case, s: Settings) -> Fn:
    return _floor(c.index(c.layer))(c, s)


def _captum(pair: Pair) -> Builder:
    def build(c: Case, s: Settings) -> Fn:
        import captum.attr
        model = _Unflattened(c.model)
        if pair.method == "lrp":
            return lambda x: captum.attr.LRP(model).attribute(x, target=c.target)
        # the case's layer is a ReLU, which has no rule in Captum (LayerLRP fails on it); relevance passes a
        # ReLU unchanged, so its output's relevance is that of the layer before it, where Captum has a rule
        explainer = captum.attr.LayerLRP(model, c.module(str(c.index(c.layer) - 1)))
        return lambda x: explainer.attribute(x, target=c.target)
    return build


_NOT_FOR = (("resnet", NO_RULE), ("transformer", TOKENS))


def lrp_pairs() -> List[Pair]:
    pairs = [Pair("lrp", "lrp", _floor(-1), not_for=_NOT_FOR), Pair("layer_lrp", "layer_lrp", _floor_layer,
                                                                     not_for=_NOT_FOR)]
    return [Pair(p.name, p.method, p.floor, not_for=p.not_for, captum=_captum(p)) for p in pairs]
