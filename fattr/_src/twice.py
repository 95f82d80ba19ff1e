"""Passes whose graph is differentiated twice: fused attention kernels swapped for their composite form,
ReLU and max-pooling for forms whose second derivative has no structural zero.

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

In the same block ReLU and 2-D max-pooling take forms with the native values and gradients whose backward
reads the input only as a mask or as indices (``x.masked_fill(x <= 0, 0)``; a gather at the indices the native
kernel picks): the native backward ops have a structurally zero derivative in their input, which differentiating
an attribution again carried back through every layer below. A parameter reaching the attribution only through
those masks or indices gets ``None`` from it where the native ops gave zeros.
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

_ATTENTION = (F.scaled_dot_product_attention, torch.ops.aten.scaled_dot_product_attention.default)
_MATH = torch.ops.aten._scaled_dot_product_attention_math.default
_SDPA = ("attn_mask", "dropout_p", "is_causal")  # after query, key, value; scale and enable_gqa by keyword
_NEED_WEIGHTS = list(inspect.signature(F.multi_head_attention_forward).parameters).index("need_weights")


_RELU = (F.relu, torch.relu, torch.Tensor.relu)
_RELU_ = (F.relu_, torch.relu_, torch.Tensor.relu_)
_MAX_POOL = (F.max_pool2d, F.max_pool2d_with_indices, torch.max_pool2d)
_POOL = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")  # after input


def _pair(v: Any) -> List[int]:
    return [v, v] if isinstance(v, int) else list(v)


def _max_pool(func: Any, x: Tensor, *args: Any, **kwargs: Any) -> Any:
    """2-D max-pooling as a gather at the native kernel's indices (see the module docstring)."""
    o = dict(zip(_POOL, args), **kwargs)
    k = _pair(o["kernel_size"])
    stride = o.get("stride")
    with_indices = func is F.max_pool2d_with_indices or (func is F.max_pool2d and o.get("return_indices", False))
    _, indices = torch.ops.aten.max_pool2d_with_indices(x.detach(), k, _pair(stride) if stride else k,
                                                        _pair(o.get("padding", 0)), _pair(o.get("dilation", 1)),
                                                        bool(o.get("ceil_mode", False)))
    out = x.flatten(-2).gather(-1, indices.flatten(-2)).view(indices.shape)
    return (out, indices) if with_indices else out


def _plain(x: Any) -> bool:
    """A floating tensor of torch's own type (not a subclass). (Its layout cannot be read where Dynamo traces an
    ``autograd.Function``'s backward: the recomputation in :mod:`.compiled`.)"""
    return type(x) in (Tensor, nn.Parameter) and x.is_floating_point()


class _Composite(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: Tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _RELU and len(args) == 1 and _plain(args[0]) and not kwargs.get("inplace", False):
            return args[0].masked_fill(args[0] <= 0, 0)
        if (func in _RELU_ or func in _RELU and kwargs.get("inplace", False)) and len(args) == 1 and _plain(args[0]):
            return args[0].masked_fill_(args[0] <= 0, 0)
        if func in _MAX_POOL and args and _plain(args[0]) and args[0].dim() in (3, 4):
            return _max_pool(func, *args, **kwargs)
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
