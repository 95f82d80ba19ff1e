"""``token_attribution``: which prompt tokens made a causal language model say each output token, and the
:class:`TokenAttribution` it returns."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..base import BaselinesLike, LayerLike
from ..diagnose import model_dtype
from ..errors import Shown, check_callable, check_choice, check_nonnegative_float, check_optional_positive_int, \
    check_integer_tensor, check_positive_int, fail, is_integer_tensor
from ..quadrature import Method
from ..randomness import resolve
from . import gradient, perturbation
from .causal import STEPS, Prompts, Step, call_model, check_vocabulary, eos_ids, greedy, prepare, step_values, takes

METHODS = ("integrated_gradients", "gradient_x_activation", "gradient_shap", "feature_ablation",
           "shapley_value_sampling")
GRADIENT_METHODS = METHODS[:3]


@dataclass(frozen=True)
class TokenAttribution:
    """Attributions of each generated token to each prompt token.

    Attributes:
      token_attr: ``(B, T_out, T_in)``: row ``i`` attributes output token ``i``'s step value
        to the prompt tokens (0 at pads, and for output tokens after an end of sequence).
      seq_attr: ``(B, T_in)``: attribution of the sum of the step values over the output
        tokens; every method here is linear in the attributed function, so it equals
        ``token_attr.sum(1)``.
      values: ``(B, T_out)``: the step values (log-probabilities by default) of the target
        tokens given the prompt (0 after an end of sequence).
      input_ids: ``(B, T_in)``, as given.
      target_ids: ``(B, T_out)``: the explained continuation (given, or greedily decoded).
      target_mask: ``(B, T_out)`` bool: False for the padding after an end-of-sequence id.
    """

    token_attr: Tensor
    seq_attr: Tensor
    values: Tensor
    input_ids: Tensor
    target_ids: Tensor
    target_mask: Tensor

    def to_html(self, tokens_in: Sequence[str], tokens_out: Sequence[str], *, example: int = 0,
                scale: Optional[float] = None) -> str:
        """The ``example``'s output x input table as self-contained HTML (cells coloured by attribution:
        green positive, red negative; the value as a tooltip). See :func:`fattr.viz.token_matrix`."""
        from ..viz.token_matrix import token_html
        return token_html(self, tokens_in, tokens_out, example=example, scale=scale)


def _ids(name: str, value: Any, shape: Optional[Tuple[int, ...]] = None, what: str = "") -> Tensor:
    ids = check_integer_tensor(name, value, f"an integer tensor of token ids{what}")
    if shape is not None and tuple(ids.shape) != shape:
        fail(name, f"a tensor of shape {shape}{what}", ids)
    if shape is None and (ids.dim() != 2 or ids.shape[1] == 0):
        fail(name, "token ids of shape (B, T) with T >= 1", ids)
    if ids.numel() and int(ids.min()) < 0:
        fail(name, "non-negative token ids", Shown(f"an id {int(ids.min())}"))
    return ids


def _mask(attention_mask: Any, shape: Tuple[int, ...]) -> Tensor:
    if not isinstance(attention_mask, Tensor) or tuple(attention_mask.shape) != shape:
        fail("attention_mask", f"None or a 0/1 tensor of shape {shape}, like input_ids", attention_mask,
             kind=ValueError if isinstance(attention_mask, Tensor) else TypeError)
    if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        fail("attention_mask", "only 0 (pad) and 1 (token) entries", Shown("other values"))
    if not bool((attention_mask != 0).any(dim=1).all()):
        fail("attention_mask", "at least one token (a 1) in every row", Shown("a row of pads only"))
    return attention_mask.long()


def _layer(model: Any, layer: Any, required: bool) -> Any:
    """``layer``, else ``model.get_input_embeddings()`` (None if it has none and the method needs no layer)."""
    if layer is not None:
        return layer
    get = getattr(model, "get_input_embeddings", None)
    found = get() if callable(get) else None
    if found is None and required:
        fail("layer", "the input-embedding module (the model has no get_input_embeddings())", Shown("None"),
             "Pass layer=the nn.Embedding that maps token ids to vectors.")
    return found


def _baseline_ids(baselines: Any, input_ids: Tensor, method: str) -> Any:
    """An int, a tensor of ids shaped like ``input_ids``, or None (zero embedding: gradient methods only)."""
    if baselines is None:
        if method not in GRADIENT_METHODS:
            fail("baselines", f"a token id or ids shaped like input_ids for method={method!r} (it replaces "
                 "tokens by baseline tokens)", baselines)
        return None
    if is_integer_tensor(baselines) and baselines.dim() == 0:
        baselines = int(baselines)
    if isinstance(baselines, int) and not isinstance(baselines, bool):
        if baselines < 0:
            fail("baselines", "a non-negative token id", baselines)
        return baselines
    if isinstance(baselines, Tensor):
        return _ids("baselines", baselines, tuple(input_ids.shape), " (baseline ids shaped like input_ids)")
    fail("baselines", "a token id (int), a tensor of ids shaped like input_ids, or None (a zero embedding)",
         baselines, kind=TypeError)


def _groups(feature_mask: Any, prompts: Prompts) -> Tuple[Any, ...]:
    """Feature index per prompt position in left-padded order (-1 at pads) and the number of features."""
    shape = tuple(prompts.ids.shape)
    if feature_mask is None:
        groups = torch.arange(shape[1], device=prompts.ids.device).expand(shape)
    else:
        check_integer_tensor("feature_mask", feature_mask, f"an integer tensor of shape {shape} or (1, {shape[1]}) "
                             "(a feature id per token)")
        if feature_mask.dim() != 2 or feature_mask.shape[1] != shape[1] or feature_mask.shape[0] not in (1, shape[0]):
            fail("feature_mask", f"a tensor of shape {shape} or (1, {shape[1]}), like input_ids", feature_mask)
        groups = prompts.left(feature_mask.expand(shape).long())
    pads = prompts.mask == 0
    ids = torch.unique(groups[~pads])  # sorted: a feature's index is its id's rank
    return torch.where(pads, -1, torch.searchsorted(ids, groups.contiguous())), ids.numel()


def token_attribution(model: nn.Module, input_ids: Tensor, target_ids: Optional[Tensor] = None, *,
                      method: str = "integrated_gradients", layer: Optional[LayerLike] = None,
                      baselines: BaselinesLike = 0, attention_mask: Optional[Tensor] = None, step: Step = "log_prob",
                      foil_ids: Optional[Tensor] = None, max_new_tokens: Optional[int] = None, n_steps: int = 50,
                      integration_method: Method = "gausslegendre", chunk_size: Optional[int] = None,
                      n_samples: int = 5, stdevs: float = 0.0, feature_mask: Optional[Tensor] = None,
                      perturbations_per_eval: Optional[int] = None, generator: Optional[torch.Generator] = None,
                      cotangent_chunk: Optional[int] = None) -> TokenAttribution:
    r"""Attribute every token a causal language model generates to the tokens of its prompt.

    For prompts :math:`x` (``B`` rows of ``T_in`` tokens) and continuations :math:`y` (``T_out``
    tokens), output token :math:`i`'s *step value* is :math:`s_i(x) = \log p(y_i \mid x, y_{<i})`
    by default. Its attribution to prompt token :math:`t` is, for the gradient methods at the
    embedding :math:`e` of the prompt (summed over the embedding dimension, as Captum does),

    .. math::
        \text{IG}_{i,t} = \sum_d (e_{t,d} - e'_{t,d}) \sum_k w_k \,
        \frac{\partial s_i}{\partial e_{t,d}}\big(e' + \alpha_k (e - e')\big),
        \qquad \text{GxA}_{i,t} = \sum_d e_{t,d}\, \frac{\partial s_i}{\partial e_{t,d}}(e),

    with the target tokens' embeddings held at their values (Captum's ``LLMGradientAttribution``),
    and :math:`\sum_t \text{IG}_{i,t} = s_i(e) - s_i(e')` up to quadrature error. Feature ablation
    gives :math:`s_i(x) - s_i(x \text{ with feature } j \text{ at the baseline})`; Shapley value
    sampling averages each feature's marginal gain over ``n_samples`` random orders.

    Unlike Captum, which runs one attribution per output token, all ``T_out`` step values come from
    **one teacher-forced forward** over prompt + target per path point (sample, ablation), and
    their gradients are that forward's ``T_out`` cotangents (``fattr._src.cotangents``); prompts
    are batched. Gradient methods split the model at ``layer`` (``fattr.split``'s head and tail:
    the embedding of prompt + target is computed once, the rest of the model runs per point);
    this needs ``model`` to be an ``nn.Module`` that calls ``layer``. Perturbation methods call
    ``model`` with token ids only and take any callable.

    Padding (left, right or mixed) is given by ``attention_mask``; prompts are moved to left
    padding internally (results come back in the caller's order), pads get attribution 0 and do
    not change the other tokens' attributions. Position ids counted from the mask are passed as
    ``position_ids=`` when the model's ``forward`` takes them (Hugging Face models do, as
    ``generate`` does); a model that takes none sees padded prompts at shifted positions.

    Args:
      model: a causal LM: ``model(ids, attention_mask=mask)`` returns logits ``(N, T, V)`` or an
        object with ``.logits`` (a Hugging Face ``*ForCausalLM``).
      input_ids: ``(B, T_in)`` prompt ids.
      target_ids: ``(B, T_out)`` the continuation to explain (teacher-forced). None: greedy decoding of
        ``max_new_tokens`` tokens first (default 25, Captum's), stopping per row at an
        end-of-sequence id of ``model.config`` and padded after it (see ``target_mask``).
      method: ``"integrated_gradients"``, ``"gradient_x_activation"``, ``"gradient_shap"``,
        ``"feature_ablation"`` or ``"shapley_value_sampling"``.
      layer: the input-embedding module (gradient methods); None: ``model.get_input_embeddings()``.
      baselines: a token id (default 0, Captum's default), ids shaped like ``input_ids``, or None
        for a zero embedding (gradient methods only).
      attention_mask: ``(B, T_in)``, 1 at tokens and 0 at pads; None: no padding.
      step: ``"log_prob"``, ``"prob"``, ``"logit"``, ``"contrast"`` (``log p(target) - log p(foil)``)
        or a callable ``(logits (N, T_out, V), target_ids (N, T_out)) -> (N, T_out)``.
      foil_ids: ``(B, T_out)``, for ``step="contrast"``.
      max_new_tokens: tokens to decode when ``target_ids`` is None.
      n_steps: path points of integrated gradients.
      integration_method: its quadrature rule (as ``fattr.quadrature``'s ``method``).
      chunk_size: path points (gradient SHAP samples) per forward. None: on CPU about 16 rows per forward
        (``max(1, 16 // B)`` points: with 4 prompts of 64 + 16 tokens, 4 points per pass took 0.87x the
        time of all 16 at once), elsewhere all at once.
      n_samples: samples of gradient SHAP, orders of Shapley value sampling.
      stdevs: gradient SHAP's noise on the prompt embeddings.
      feature_mask: ``(B, T_in)`` or ``(1, T_in)`` integer feature ids grouping prompt tokens
        (perturbation methods); None: every token is a feature.
      perturbations_per_eval: perturbed copies of the batch per model call (perturbation methods).
      generator: ``torch.Generator`` for gradient SHAP and Shapley sampling.
      cotangent_chunk: output tokens differentiated per backward pass (None: 1 on CPU, 16 elsewhere).

    Returns:
      A :class:`fattr.TokenAttribution`: ``token_attr (B, T_out, T_in)``, ``seq_attr (B, T_in)``,
      ``values (B, T_out)``, ``input_ids``, ``target_ids``, ``target_mask``.

    Example:
      >>> import torch, fattr
      >>> class TinyLM(torch.nn.Module):           # causal: a running mean of the embeddings
      ...     def __init__(self):
      ...         super().__init__()
      ...         self.embed, self.out = torch.nn.Embedding(10, 8), torch.nn.Linear(8, 10)
      ...     def get_input_embeddings(self):
      ...         return self.embed
      ...     def forward(self, ids, attention_mask=None):
      ...         h = self.embed(ids).cumsum(1) / torch.arange(1, ids.shape[1] + 1)[:, None]
      ...         return self.out(torch.tanh(h))
      >>> torch.manual_seed(0); lm = TinyLM().double()  # doctest: +ELLIPSIS
      <...>
      >>> prompt, answer = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[5, 6]])
      >>> r = fattr.token_attribution(lm, prompt, answer, n_steps=32)
      >>> r.token_attr.shape, r.seq_attr.shape, r.values.shape   # (B, T_out, T_in), (B, T_in), (B, T_out)
      (torch.Size([1, 2, 4]), torch.Size([1, 4]), torch.Size([1, 2]))
      >>> zero = fattr.token_attribution(lm, torch.zeros_like(prompt), answer, method="feature_ablation")
      >>> bool((r.token_attr.sum(-1) - (r.values - zero.values)).abs().max() < 1e-6)  # completeness
      True
    """
    check_callable("model", model)
    method = check_choice("method", method, METHODS)
    input_ids = _ids("input_ids", input_ids)
    b, n_in = input_ids.shape
    mask = (torch.ones_like(input_ids) if attention_mask is None else
            _mask(attention_mask, tuple(input_ids.shape)).to(input_ids.device))
    if not callable(step):
        check_choice("step", step, STEPS)
    n_steps = check_positive_int("n_steps", n_steps)
    n_samples = check_positive_int("n_samples", n_samples)
    chunk_size = check_optional_positive_int("chunk_size", chunk_size)
    if chunk_size is None and input_ids.device.type == "cpu":  # measured on CPU (see the docstring)
        chunk_size = max(1, 16 // max(b, 1))
    per_eval = check_optional_positive_int("perturbations_per_eval", perturbations_per_eval)
    cotangent_chunk = check_optional_positive_int("cotangent_chunk", cotangent_chunk)
    stdevs = check_nonnegative_float("stdevs", stdevs)
    base = _baseline_ids(baselines, input_ids, method)
    base_ids = base if isinstance(base, Tensor) else torch.tensor([base or 0])  # None (zero embedding): id 0
    gradient_method = method in GRADIENT_METHODS
    if gradient_method and not isinstance(model, nn.Module):
        fail("model", f"an nn.Module for method={method!r} (gradient methods split the model at its embedding "
             "layer)", model, "Pass the module itself, or use a perturbation method with a plain callable.",
             kind=TypeError)
    emb_layer = _layer(model, layer, gradient_method)
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)  # the embedding's size, else the config's
    vocab = emb_layer.num_embeddings if isinstance(emb_layer, nn.Embedding) else (
        vocab if isinstance(vocab, int) else None)
    if vocab is not None:
        check_vocabulary(vocab, input_ids=input_ids, baselines=base_ids)
    with_positions, with_keep = takes(model, "position_ids"), takes(model, "logits_to_keep")

    if target_ids is None:
        new = check_positive_int("max_new_tokens", 25 if max_new_tokens is None else max_new_tokens)
        order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
        eos = eos_ids(model)
        pad = getattr(getattr(model, "config", None), "pad_token_id", None)
        target_ids, target_mask = greedy(model, input_ids.gather(1, order), mask.gather(1, order), new, eos,
                                         int(pad) if isinstance(pad, int) else (eos[0] if eos else 0),
                                         with_positions, with_keep)
    else:
        target_ids = _ids("target_ids", target_ids)
        if target_ids.shape[0] != b:
            fail("target_ids", f"{b} rows (one continuation per prompt in input_ids)", target_ids)
        target_mask = torch.ones_like(target_ids, dtype=torch.bool)
    target_ids = target_ids.to(input_ids.device)
    if b == 0:  # no prompts: no attributions
        dtype = model_dtype(model if isinstance(model, nn.Module) else None) or torch.get_default_dtype()
        empty = torch.zeros((0, target_ids.shape[1], n_in), dtype=dtype, device=input_ids.device)
        return TokenAttribution(token_attr=empty, seq_attr=empty.sum(1), values=empty[:, :, 0],
                                input_ids=input_ids, target_ids=target_ids, target_mask=target_mask)
    foil = None
    if step == "contrast":
        if foil_ids is None:
            fail("foil_ids", f"token ids shaped like target_ids {tuple(target_ids.shape)} for step='contrast'",
                 foil_ids)
        foil = _ids("foil_ids", foil_ids, tuple(target_ids.shape), " (like target_ids)")
    if vocab is not None:
        check_vocabulary(vocab, target_ids=target_ids, foil_ids=foil)
    prompts = prepare(input_ids, mask, target_ids, with_positions, with_keep)

    def select(logits: Tensor, target: Tensor) -> Tensor:
        foils = None if foil is None else foil.repeat(target.shape[0] // b, 1)
        return step_values(logits, target, prompts.n_logits, with_keep, step, foils)

    def values_of(ids: Tensor) -> Tensor:  # prompts (k*B, T_in), left-padded -> (k*B, T_out)
        k = ids.shape[0] // b
        positions = None if prompts.positions is None else prompts.positions.repeat(k, 1)
        full = torch.cat([ids, prompts.target.repeat(k, 1)], dim=1)  # prompt + target, step-major
        logits = call_model(model, full, prompts.full_mask.repeat(k, 1), positions, prompts.keep)
        return select(logits, prompts.target.repeat(k, 1))

    values: Optional[Tensor] = None  # the step values at the prompts, from whichever pass gives them first
    if vocab is None:  # known only from the logits' last dim
        logits = call_model(model, prompts.full_ids, prompts.full_mask, prompts.positions, prompts.keep)
        values = select(logits, prompts.target)
        check_vocabulary(logits.shape[-1], input_ids=input_ids, target_ids=target_ids, foil_ids=foil,
                         baselines=base_ids)
    left_base = None if base is None else (prompts.left(base) if isinstance(base, Tensor) else
                                            torch.full_like(prompts.ids, base))
    if gradient_method:
        e = gradient.Embedded(model, emb_layer, prompts)
        if method == "integrated_gradients":
            attr = gradient.integrated_gradients(e, left_base, n_steps, integration_method, chunk_size, select,
                                                 cotangent_chunk)
        elif method == "gradient_x_activation":
            attr, at_x = gradient.gradient_x_activation(e, select, cotangent_chunk)
            values = at_x if values is None else values
        else:
            attr = gradient.gradient_shap(e, left_base, n_samples, stdevs, chunk_size,
                                          resolve(generator), select, cotangent_chunk)
    else:
        assert left_base is not None  # refused at the boundary
        groups, n_features = _groups(feature_mask, prompts)
        if method == "feature_ablation":
            if values is None:
                values = values_of(prompts.ids)
            attr = perturbation.feature_ablation(values_of, values, prompts.ids, left_base, groups, n_features,
                                                 per_eval)
        else:
            attr = perturbation.shapley_value_sampling(values_of, prompts.ids, left_base, groups, n_features,
                                                       n_samples, per_eval, resolve(generator))
    if values is None:
        values = values_of(prompts.ids)
    live = target_mask.to(attr.dtype)
    token_attr = prompts.back(attr) * live[..., None]
    return TokenAttribution(token_attr=token_attr, seq_attr=token_attr.sum(1), values=values * live,
                            input_ids=input_ids, target_ids=target_ids, target_mask=target_mask)
