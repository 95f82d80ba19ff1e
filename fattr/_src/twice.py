"""Passes whose graph is differentiated twice: fused attention kernels swapped for their composite form.

An attribution is made of gradients; differentiating it (a training loss, an attribution prior)
differentiates those gradients again. PyTorch's fused CPU attention kernel (the flash kernel
``scaled_dot_product_attention`` picks: torch's ``nn.MultiheadAttention`` and Hugging Face models
call it) has no derivative of its backward, so that second derivative fails ("derivative for
aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented"), eagerly when the
result is differentiated and under ``torch.compile`` already when the call is compiled.

:func:`twice_differentiable` runs a block with every attention call computed by PyTorch's own
composite ("math") implementation instead: the same values up to rounding, made of matrix products
and a softmax, so differentiable any number of times. It is a ``TorchFunctionMode`` (per thread,
alive for the block only; the global kernel switches of ``torch.nn.attention.sdpa_kernel`` would
reach other threads). :mod:`.recompute` uses it where a graph is kept to be differentiated: a
recomputation in backward, a pass keeping its graph at once.
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, Tuple

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_ATTENTION = (F.scaled_dot_product_attention, torch.ops.aten.scaled_dot_product_attention.default)
_MATH = torch.ops.aten._scaled_dot_product_attention_math.default
_SDPA = ("attn_mask", "dropout_p", "is_causal")  # after query, key, value; scale and enable_gqa by keyword
_NEED_WEIGHTS = list(inspect.signature(F.multi_head_attention_forward).parameters).index("need_weights")


class _Composite(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: Tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _ATTENTION:
            q, k, v, *rest = args
            options: Dict[str, Any] = dict(zip(_SDPA, rest), **kwargs)
            mask = options.get("attn_mask")
            if mask is not None and mask.dtype == torch.bool:  # additive, as the dispatcher makes it for any kernel
                options["attn_mask"] = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(
                    ~mask, float("-inf"))
            return _MATH(q, k, v, **options)[0]
        if func is F.multi_head_attention_forward:  # torch's MHA: its weights path is plain operations
            # (by position, not ``inspect.Signature.bind``, which Dynamo cannot trace)
            if len(args) > _NEED_WEIGHTS:
                wanted = args[_NEED_WEIGHTS]
                args = args[:_NEED_WEIGHTS] + (True,) + args[_NEED_WEIGHTS + 1:]
            else:
                wanted = kwargs.get("need_weights", True)
                kwargs = {**kwargs, "need_weights": True}
            out, weights = func(*args, **kwargs)
            return out, weights if wanted else None
        return func(*args, **kwargs)


def twice_differentiable() -> TorchFunctionMode:
    """A context in which attention is computed by composite operations (see the module docstring).

    Example:
      >>> import torch
      >>> from fattr._src.twice import twice_differentiable
      >>> q = torch.randn(1, 2, 4, 8, requires_grad=True)
      >>> with twice_differentiable():
      ...     out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
      ...     (g,) = torch.autograd.grad(out.sum(), q, create_graph=True)
      >>> torch.autograd.grad(g.pow(2).sum(), q)[0].shape
      torch.Size([1, 2, 4, 8])
    """
    return _Composite()
