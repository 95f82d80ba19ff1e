"""Which torch callables are nonlinearities, and what the rescale rule does with each.

A ``TorchFunctionMode`` sees the outermost torch callable of every call
(``F.relu``, ``torch.relu``, ``Tensor.relu``, ``nn.ReLU`` -> ``F.relu``, ...).
:func:`parse` recognises the covered nonlinearities however they are called and
normalises the call into a :class:`Call`; :func:`uncovered` names a call that is
nonlinear in input-dependent tensors but invisible to the rule (``F.gelu``, a
product of two input-dependent tensors, ...), so that it can be reported.

Covered (Captum's list, plus what the same rules handle exactly):
  elementwise rescale: relu, elu, leaky_relu, sigmoid, tanh, softplus, hardtanh, relu6;
  softmax rule: softmax; max-pool rule: max_pool1d/2d/3d, adaptive_max_pool1d/2d/3d.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.overrides import resolve_name

from ..base import Tensor


class Call:
    """A normalised call of a covered nonlinearity (a plain class: Dynamo traces its ``__init__``).

    Attributes:
      kind: ``"elementwise"``, ``"softmax"`` or ``"maxpool"``.
      name: how the user called it (for messages).
      input: the tensor the nonlinearity is applied to.
      inplace: the call modifies ``input`` in place.
      op: the out-of-place op on one tensor; for ``"maxpool"`` it returns ``(output, indices)``.
      deriv: ``deriv(x, op(x))``, the op's derivative (``"elementwise"`` only).
      dim: the softmax dim (``"softmax"`` only).
      n_spatial: pooled dims (``"maxpool"`` only).
      with_indices: the call returns ``(output, indices)`` (``"maxpool"`` only).
    """

    def __init__(self, kind: str, name: str, input: Tensor, inplace: bool, op: Callable[[Tensor], Any],
                 deriv: Optional[Callable[[Tensor, Tensor], Tensor]] = None, dim: int = -1, n_spatial: int = 0,
                 with_indices: bool = False) -> None:
        self.kind, self.name, self.input, self.inplace, self.op = kind, name, input, inplace, op
        self.deriv, self.dim, self.n_spatial, self.with_indices = deriv, dim, n_spatial, with_indices


@dataclass(frozen=True)
class _Entry:
    kind: str
    name: str
    parameters: Tuple[Tuple[str, Any], ...]  # (name, default or _REQUIRED), in order
    build: Callable[[Dict[str, Any]], Dict[str, Any]]
    inplace: Optional[bool] = None  # None: the call's ``inplace`` argument (False without one)


_REQUIRED = inspect.Parameter.empty


def parameters_of(fn: Callable[..., Any]) -> Tuple[Tuple[str, Any], ...]:
    return tuple((p.name, p.default) for p in inspect.signature(fn).parameters.values())


def bind_call(parameters: Tuple[Tuple[str, Any], ...], args: Tuple[Any, ...],
          kwargs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Every parameter's value, as ``inspect.Signature.bind`` and ``apply_defaults`` give it (plain Python,
    which Dynamo traces); None where the call does not fit."""
    if len(args) > len(parameters):
        return None
    bound = {name: value for (name, _), value in zip(parameters, args)}
    names = [name for name, _ in parameters]
    for name, value in kwargs.items():
        if name in bound or name not in names:
            return None
        bound[name] = value
    for name, default in parameters:
        if name not in bound:
            if default is _REQUIRED:
                return None
            bound[name] = default
    return bound


_COVERED: Dict[Any, _Entry] = {}


def _add(kind: str, funcs: Dict[str, Any], signature: Callable[..., Any],
         build: Callable[[Dict[str, Any]], Dict[str, Any]], inplace: Optional[bool] = None) -> None:
    parameters = parameters_of(signature)
    for name, func in funcs.items():
        if func is not None:
            _COVERED[func] = _Entry(kind, name, parameters, build, inplace)


# ---- elementwise: the rescale rule m = (f(x) - f(x')) / (x - x')
def _where_pos(a: Tensor, low: Any, fa: Tensor) -> Tensor:
    return torch.where(a > 0, torch.ones_like(fa), low)


def _relu(a: Dict[str, Any]) -> Dict[str, Any]:
    return {"op": torch.relu, "deriv": lambda x, fx: (x > 0).to(fx.dtype)}


def _elu(a: Dict[str, Any]) -> Dict[str, Any]:
    alpha = a["alpha"]
    return {"op": partial(F.elu, alpha=alpha), "deriv": lambda x, fx: _where_pos(x, fx + alpha, fx)}


def _leaky(a: Dict[str, Any]) -> Dict[str, Any]:
    slope = a["negative_slope"]
    return {"op": partial(F.leaky_relu, negative_slope=slope),
            "deriv": lambda x, fx: _where_pos(x, torch.full_like(fx, slope), fx)}


def _hardtanh(low: float, high: float) -> Dict[str, Any]:
    return {"op": partial(F.hardtanh, min_val=low, max_val=high),
            "deriv": lambda x, fx: ((x > low) & (x < high)).to(fx.dtype)}


def _sigmoid(a: Dict[str, Any]) -> Dict[str, Any]:
    return {"op": torch.sigmoid, "deriv": lambda x, fx: fx * (1 - fx)}


def _tanh(a: Dict[str, Any]) -> Dict[str, Any]:
    return {"op": torch.tanh, "deriv": lambda x, fx: 1 - fx * fx}


def _softplus(a: Dict[str, Any]) -> Dict[str, Any]:
    beta, threshold = a["beta"], a["threshold"]
    return {"op": partial(F.softplus, beta=beta, threshold=threshold),
            "deriv": lambda x, fx: torch.where(x * beta > threshold, torch.ones_like(fx), torch.sigmoid(x * beta))}


# ``deriv(x, f(x))`` is the op's own derivative (as autograd computes it), used where ``|x - ref| < eps``.
_add("elementwise", {"F.relu": F.relu}, lambda input, inplace=False: 0, _relu)
_add("elementwise", {"torch.relu": torch.relu, "Tensor.relu": Tensor.relu}, lambda input: 0, _relu)
_add("elementwise", {"torch.relu_": torch.relu_, "Tensor.relu_": Tensor.relu_}, lambda input: 0, _relu, inplace=True)
_add("elementwise", {"F.elu": F.elu}, lambda input, alpha=1.0, inplace=False: 0, _elu)
_add("elementwise", {"F.elu_": F.elu_}, lambda input, alpha=1.0: 0, _elu, inplace=True)
_add("elementwise", {"F.leaky_relu": F.leaky_relu}, lambda input, negative_slope=0.01, inplace=False: 0, _leaky)
_add("elementwise", {"F.leaky_relu_": F.leaky_relu_}, lambda input, negative_slope=0.01: 0, _leaky, inplace=True)
_add("elementwise", {"F.hardtanh": F.hardtanh}, lambda input, min_val=-1.0, max_val=1.0, inplace=False: 0,
     lambda a: _hardtanh(a["min_val"], a["max_val"]))
_add("elementwise", {"F.hardtanh_": F.hardtanh_}, lambda input, min_val=-1.0, max_val=1.0: 0,
     lambda a: _hardtanh(a["min_val"], a["max_val"]), inplace=True)
_add("elementwise", {"F.relu6": F.relu6}, lambda input, inplace=False: 0, lambda a: _hardtanh(0.0, 6.0))
_add("elementwise", {"torch.sigmoid": torch.sigmoid, "Tensor.sigmoid": Tensor.sigmoid,
                     "torch.special.expit": torch.special.expit}, lambda input: 0, _sigmoid)
_add("elementwise", {"torch.sigmoid_": torch.sigmoid_, "Tensor.sigmoid_": Tensor.sigmoid_}, lambda input: 0, _sigmoid,
     inplace=True)
_add("elementwise", {"torch.tanh": torch.tanh, "Tensor.tanh": Tensor.tanh}, lambda input: 0, _tanh)
_add("elementwise", {"torch.tanh_": torch.tanh_, "Tensor.tanh_": Tensor.tanh_}, lambda input: 0, _tanh, inplace=True)
_add("elementwise", {"F.softplus": F.softplus}, lambda input, beta=1.0, threshold=20.0: 0, _softplus)


# ---- softmax: rescale per element, multipliers centred along the softmax dim
def _softmax(a: Dict[str, Any]) -> Dict[str, Any]:
    dim, ndim = a["dim"], a["input"].dim()
    if dim is None:  # F.softmax's legacy implicit dim
        dim = 0 if ndim in (0, 1, 3) else 1
    dim = dim % max(ndim, 1)
    return {"op": partial(torch.softmax, dim=dim, dtype=a["dtype"]), "dim": dim}


_add("softmax", {"F.softmax": F.softmax}, lambda input, dim=None, _stacklevel=3, dtype=None: 0, _softmax)
_add("softmax", {"torch.softmax": torch.softmax, "Tensor.softmax": Tensor.softmax,
                 "torch.special.softmax": torch.special.softmax}, lambda input, dim, dtype=None: 0, _softmax)


# ---- max pooling: the max-pool rule (Captum's), with correct accumulation for overlapping windows
def _pool(nd: int, adaptive: bool, always_indices: Optional[bool]) -> Callable[[Dict[str, Any]], Dict[str, Any]]:
    def build(a: Dict[str, Any]) -> Dict[str, Any]:
        if adaptive:
            op = partial(getattr(F, f"adaptive_max_pool{nd}d_with_indices"), output_size=a["output_size"])
        else:
            stride = a["stride"]
            if stride is not None and not isinstance(stride, int) and len(stride) == 0:
                stride = None
            op = partial(getattr(F, f"max_pool{nd}d_with_indices"), kernel_size=a["kernel_size"], stride=stride,
                         padding=a["padding"], dilation=a["dilation"], ceil_mode=a["ceil_mode"])
        with_indices = always_indices if always_indices is not None else bool(a.get("return_indices", False))
        return {"op": op, "n_spatial": nd, "with_indices": with_indices}
    return build


for _nd in (1, 2, 3):
    _pool_sig = lambda input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, \
        return_indices=False: 0  # noqa: E731
    _add("maxpool", {f"F.max_pool{_nd}d": getattr(F, f"max_pool{_nd}d")}, _pool_sig, _pool(_nd, False, None))
    _add("maxpool", {f"F.max_pool{_nd}d_with_indices": getattr(F, f"max_pool{_nd}d_with_indices")}, _pool_sig,
         _pool(_nd, False, True))
    _add("maxpool", {f"torch.max_pool{_nd}d": getattr(torch, f"max_pool{_nd}d", None)},
         lambda input, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False: 0,
         _pool(_nd, False, False))
    _add("maxpool", {f"F.adaptive_max_pool{_nd}d": getattr(F, f"adaptive_max_pool{_nd}d")},
         lambda input, output_size, return_indices=False: 0, _pool(_nd, True, None))
    _add("maxpool", {f"F.adaptive_max_pool{_nd}d_with_indices": getattr(F, f"adaptive_max_pool{_nd}d_with_indices")},
         lambda input, output_size, return_indices=False: 0, _pool(_nd, True, True))


def parse(func: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Optional[Call]:
    """The normalised :class:`Call` if ``func`` is a covered nonlinearity applied to a tensor, else None."""
    try:
        entry = _COVERED.get(func)
    except TypeError:  # unhashable callable
        return None
    if entry is None:
        return None
    a = bind_call(entry.parameters, args, kwargs)  # None: an overload we do not know (named dims), left to the op
    if a is None or not isinstance(a["input"], Tensor) or not a["input"].is_floating_point():
        return None
    inplace = entry.inplace if entry.inplace is not None else bool(a.get("inplace", False))
    return Call(kind=entry.kind, name=entry.name, input=a["input"], inplace=inplace, **entry.build(a))


# ------------------------------------------------------------------ nonlinearities the rule does not cover

_UNARY = """gelu silu mish hardswish hardsigmoid softsign logsigmoid log_sigmoid selu celu rrelu prelu glu
tanhshrink softshrink hardshrink threshold log_softmax softmin layer_norm group_norm rms_norm normalize
local_response_norm instance_norm lp_pool1d lp_pool2d lp_pool3d scaled_dot_product_attention
multi_head_attention_forward cosine_similarity pairwise_distance exp exp2 expm1 log log2 log10 log1p sqrt
rsqrt square abs absolute sin cos tan asin acos atan sinh cosh asinh acosh atanh atan2 arctan2 erf erfc
erfinv reciprocal sign sgn clamp clip clamp_min clamp_max maximum minimum fmax fmin max min amax amin
aminmax logsumexp logcumsumexp cumprod prod norm frobenius_norm nuclear_norm dist cdist var std var_mean
std_mean sort topk kthvalue median nanmedian mode quantile floor ceil round trunc frac heaviside logit hypot
logaddexp logaddexp2 xlogy sinc special_expm1 __abs__
lstm gru rnn_tanh rnn_relu lstm_cell gru_cell rnn_tanh_cell rnn_relu_cell""".split()  # fused recurrent layers

# Calls on input-dependent tensors that are linear in them, or whose result carries no gradient (shapes,
# comparisons, indices), by short name (in-place variants end in ``_``). Any other call on input-dependent
# tensors that the rule does not cover is named as "not known to be linear".
_LINEAR = set("""add sub subtract neg negative positive rsub sum nansum mean nanmean cumsum diff trapz trapezoid
flatten unflatten reshape view view_as permute transpose swapaxes swapdims t adjoint squeeze unsqueeze expand
expand_as broadcast_to repeat repeat_interleave tile cat concat concatenate stack hstack vstack dstack column_stack
split split_with_sizes tensor_split chunk unbind narrow select index_select gather take take_along_dim movedim
moveaxis diagonal diag diag_embed tril triu trace flip fliplr flipud roll rot90 contiguous clone to type type_as
float double half bfloat16 cpu cuda detach detach_ copy_ fill_ zero_ real imag conj resolve_conj resolve_neg pad
linear conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d conv_tbc avg_pool1d avg_pool2d
avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d dropout dropout1d dropout2d dropout3d
alpha_dropout feature_alpha_dropout embedding embedding_bag interpolate upsample upsample_nearest
upsample_bilinear pixel_shuffle pixel_unshuffle channel_shuffle fold unfold index_add index_copy index_put
index_fill scatter scatter_add scatter_reduce masked_scatter masked_select put index_put_ where masked_fill
batch_norm zeros_like ones_like empty_like full_like rand_like randn_like new_zeros new_ones new_empty new_full
new_tensor size dim ndimension numel nelement stride storage_offset is_contiguous is_floating_point
is_complex element_size data_ptr __len__ __iter__ __format__ __repr__ __bool__ __index__ __int__ __float__
__hash__ __getitem__ __setitem__ __array__ __reduce_ex__ __deepcopy__ item tolist numpy eq ne lt le gt ge equal
greater greater_equal less less_equal not_equal __eq__ __ne__ __lt__ __le__ __gt__ __ge__ isnan isinf isfinite
isposinf isneginf isclose allclose any all argmax argmin argsort nonzero count_nonzero bool long int short byte
char logical_and logical_or logical_not logical_xor __and__ __or__ __xor__ __invert__ bitwise_and bitwise_or
bitwise_not __add__ __radd__ __iadd__ __sub__ __rsub__ __isub__ __neg__ __pos__ requires_grad_ retain_grad
register_hook unsafe_split unsafe_chunk as_strided flatten_dense_tensors unflatten_dense_tensors
""".split())


def _short(func: Any) -> Optional[str]:
    name = getattr(func, "__name__", None)
    if not isinstance(name, str):
        return None
    return name[:-1] if name.endswith("_") and not name.endswith("__") and name[:-1] in _LINEAR else name


def _display(func: Any) -> str:
    try:
        full = resolve_name(func)
    except Exception:  # pragma: no cover - resolve_name is best effort
        full = None
    name = full or getattr(func, "__qualname__", None) or repr(func)
    for prefix, short in (("torch.nn.functional.", "F."), ("torch.Tensor.", "Tensor.")):
        if name.startswith(prefix):
            return short + name[len(prefix):]
    return name

_MULTIPLY = "mul multiply matmul mm bmm mv einsum bilinear outer ger inner dot vdot kron tensordot cross " \
            "__mul__ __rmul__ __matmul__ __rmatmul__ __imul__".split()
_MULTIPLY_ACC = "addmm addbmm baddbmm addmv addr addcmul".split()  # first argument is only added
_DIVIDE = "div divide true_divide floor_divide remainder fmod __truediv__ __itruediv__ __floordiv__ __mod__ " \
          "__div__".split()
_RDIVIDE = "__rtruediv__ __rdiv__ __rfloordiv__ __rmod__".split()
_POWER = "pow float_power __pow__ __ipow__".split()
_RPOWER = ["__rpow__"]

_NAMESPACES = (("torch", torch), ("Tensor", torch.Tensor), ("F", F), ("torch.special", torch.special))


def named(names: Any) -> Dict[Any, str]:
    """The torch callables called ``names`` (in torch, Tensor, F, torch.special) that the rule does not cover,
    with their display names (other interception rules use it to name what they leave alone)."""
    found: Dict[Any, str] = {}
    for name in names:
        for label, space in _NAMESPACES:
            for attr in (name, name + "_") if not name.startswith("__") else (name,):
                func = getattr(space, attr, None)
                if not callable(func) or isinstance(func, type) or func in _COVERED:  # torch.cpu, torch.float
                    continue
                try:
                    found.setdefault(func, f"{label}.{attr}")
                except TypeError:
                    pass
    return found


_UNARY_F = named(_UNARY)
_MULTIPLY_F = named(_MULTIPLY + _MULTIPLY_ACC)
_MULTIPLY_ACC_F = named(_MULTIPLY_ACC)
_DIVIDE_F = named(_DIVIDE + _RDIVIDE)
_RDIVIDE_F = named(_RDIVIDE)
_POWER_F = named(_POWER + _RPOWER)
_RPOWER_F = named(_RPOWER)
_WHERE_F = {torch.where: "torch.where (input-dependent condition)",
            torch.Tensor.where: "Tensor.where (input-dependent condition)"}
_MASK_F = {torch.Tensor.masked_fill: "Tensor.masked_fill (input-dependent mask)",
           torch.Tensor.masked_fill_: "Tensor.masked_fill_ (input-dependent mask)",
           torch.masked_fill: "torch.masked_fill (input-dependent mask)"}
_GETITEM = torch.Tensor.__getitem__
_LINEAR_F = named(_LINEAR)


def tensors_in(value: Any) -> Iterator[Tensor]:
    """The tensors in ``value``: itself, or the items of a list/tuple (one level)."""
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, Tensor):
                yield item


def uncovered(func: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any],
              dependent: Callable[[Any], bool]) -> Optional[str]:
    """The name of ``func`` if this call is nonlinear in input-dependent tensors; else None.

    ``dependent(value)`` tells whether a value is (or holds) a tensor that depends on the inputs.
    Called only for calls with at least one dependent tensor argument.
    """
    try:
        if func in _UNARY_F:
            return _UNARY_F[func]
        if func in _MULTIPLY_F:
            factors = list(args[1:]) if func in _MULTIPLY_ACC_F else list(args) + list(kwargs.values())
            return _MULTIPLY_F[func] + " of two input-dependent tensors" \
                if sum(map(dependent, [t for a in factors for t in tensors_in(a)])) >= 2 else None
        if func in _DIVIDE_F:  # the divisor of ``y.__rtruediv__(x)`` is ``y``
            divisor = args[0] if func in _RDIVIDE_F else args[1] if len(args) > 1 else kwargs.get("other")
            return _DIVIDE_F[func] + " by an input-dependent tensor" if dependent(divisor) else None
        if func in _POWER_F:  # ``y.__rpow__(x)``: an exponent that depends on the inputs
            exponent = args[1] if len(args) > 1 else kwargs.get("exponent", kwargs.get("other"))
            if func in _RPOWER_F or dependent(exponent) or not (isinstance(exponent, (int, float)) and exponent == 1):
                return _POWER_F[func]
            return None
        if func in _WHERE_F:
            condition = args[0] if func is torch.where else (args[1] if len(args) > 1 else kwargs.get("condition"))
            return _WHERE_F[func] if dependent(condition) else None
        if func in _MASK_F:
            mask = args[1] if len(args) > 1 else kwargs.get("mask")
            return _MASK_F[func] if dependent(mask) else None
        if func is _GETITEM and len(args) > 1:
            index = args[1]
            if any(dependent(i) for i in (index if isinstance(index, (tuple, list)) else (index,))):
                return "Tensor.__getitem__ (input-dependent index)"
            return None
        if func is F.batch_norm:
            training = args[5] if len(args) > 5 else kwargs.get("training", False)
            running = args[1] if len(args) > 1 else kwargs.get("running_mean")
            return "F.batch_norm (batch statistics, training mode)" if training or running is None else None
        if func in _COVERED or func in _LINEAR_F:  # by identity first: Dynamo traces no string methods on names
            return None
    except TypeError:  # unhashable func
        return None
    if getattr(func, "__name__", "") == "__get__" or _short(func) in _LINEAR:  # ``__get__``: x.shape, x.T
        return None
    return f"{_display(func)} (not known to be linear)"
