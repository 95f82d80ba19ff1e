"""What every Captum-compatible class shares (:class:`Attribution`): the translation of Captum's arguments to
fattr's, once per call (:meth:`Attribution._translate`). Captum's names map to fattr's as follows:

=============================  ==========================================================
Captum                         fattr
=============================  ==========================================================
``forward_func`` / ``model``   ``f`` / ``model`` (first positional argument)
``additional_forward_args``    ``args`` (Captum's rule: a non-tuple is one argument)
``return_convergence_delta``   ``return_delta``
``internal_batch_size``        ``chunk_size = max(1, internal_batch_size // rows)``: Captum
                               counts rows (steps x examples), fattr path points
``multiply_by_inputs``,        keyword arguments of the call (constructor arguments in
``eps``                        Captum)
randomness                     torch's global generator (Captum's contract), passed as
                               ``generator=torch.default_generator``
=============================  ==========================================================

Arguments fattr cannot honour (``device_ids``, ``grad_kwargs``) raise
``NotImplementedError`` naming them when they are given; so does ``attribute_future``
(asynchronous attribution of forward functions returning ``torch.futures.Future``).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from .. import structure
from ..arguments import as_args
from ..baselines import format_baselines
from ..delta import delta_at
from ..errors import check_optional_positive_int
from ..targets import as_target

_RENAMED = {"additional_forward_args": "args", "return_convergence_delta": "return_delta"}


def unsupported(owner: str, **given: Any) -> None:
    """``NotImplementedError`` naming each argument given a value fattr cannot honour."""
    names = [name for name, value in given.items() if value is not None and value != {} and value is not False]
    if names:
        raise NotImplementedError(
            f"{owner}: {', '.join(names)} {'is' if len(names) == 1 else 'are'} not supported by fattr "
            f"(leave {'it' if len(names) == 1 else 'them'} at the default). See the 'Coming from Captum' "
            "section of fattr's README.")


def examples(inputs: Any) -> int:
    """The number of examples of Captum-style ``inputs`` (a tensor or a tuple of them)."""
    first = inputs[0] if isinstance(inputs, tuple) and inputs else inputs
    return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() > 0 else 1


KWARGS = object()  # in :func:`captum`, marks Captum's ``**kwargs`` (accepted and ignored, as Captum does)


def captum(*required: str, **defaults: Any) -> inspect.Signature:
    """A Captum method's signature: ``self``, the ``required`` names, then the ``defaults`` in order."""
    p = inspect.Parameter
    return inspect.Signature([p(name, p.POSITIONAL_OR_KEYWORD) for name in ("self",) + required] + [
        p(name, p.VAR_KEYWORD) if value is KWARGS else p(name, p.POSITIONAL_OR_KEYWORD, default=value)
        for name, value in defaults.items()])


def _with_signature(signature: inspect.Signature, body: Callable[..., Any], owner: type, name: str
                    ) -> Callable[..., Any]:
    """A method with Captum's ``signature`` calling ``body(self, **arguments)`` (``**kwargs`` dropped)."""
    named = [k for k, p in signature.parameters.items() if k != "self" and p.kind is not p.VAR_KEYWORD]

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError as e:  # as Python words it, with the method's name
            raise TypeError(f"{type(self).__name__}.{name}(): {e}") from None
        bound.apply_defaults()
        return body(self, **{k: bound.arguments[k] for k in named})

    method.__signature__ = signature  # type: ignore[attr-defined]
    method.__name__, method.__qualname__, method.__module__ = name, f"{owner.__qualname__}.{name}", owner.__module__
    method.__doc__ = body.__doc__
    return method


class Attribution:
    """Captum's ``Attribution`` interface on a fattr function.

    A class is one row: its fattr function and Captum's flags and signatures, as class keywords
    (``class Saliency(Attribution, fn=saliency, attribute=captum(...))``; ``init`` defaults to
    ``captum("forward_func")``, or ``captum("forward_func", "layer", device_ids=None)`` for a layer method).
    The constructor keeps ``forward_func`` (or ``model``) and ``layer``, refuses ``device_ids``,
    passes ``multiply_by_inputs`` and the other options (``eps``) to each call and keeps the
    ``held`` ones (Lime's models) as attributes read at each call; ``attribute`` makes one
    call of ``fn`` with Captum's arguments translated (:meth:`_call`).
    """

    fn: Callable[..., Any]
    layer_method = False
    delta = False
    stochastic = False
    multiplies = False  # Captum's multiplies_by_inputs for classes without the constructor argument
    captum_future = False  # whether Captum 0.9 implements attribute_future for this class
    held: Tuple[str, ...] = ()  # constructor arguments kept as attributes (replaceable after construction)
    _captum_defaults: Dict[str, Any] = {}  # the constructor's defaults

    def __init_subclass__(cls, *, fn: Optional[Callable[..., Any]] = None, init: Optional[inspect.Signature] = None,
                          attribute: Optional[inspect.Signature] = None, **flags: Any) -> None:
        super().__init_subclass__()
        unknown = [k for k in flags if k not in ("layer_method", "delta", "stochastic", "multiplies",
                                                 "captum_future", "held")]
        if unknown:
            raise TypeError(f"{cls.__name__}: unknown class keywords {unknown}")
        for key, value in flags.items():
            setattr(cls, key, value)
        if fn is not None:
            cls.fn = staticmethod(fn)
            if init is None:  # Captum's most common constructors
                init = captum("forward_func", "layer", device_ids=None) if cls.layer_method else captum("forward_func")
        if init is not None:
            setattr(cls, "__init__", _with_signature(init, Attribution.__init__, cls, "__init__"))
            cls._captum_defaults = {k: p.default for k, p in init.parameters.items()}
        if attribute is not None:
            setattr(cls, "attribute", _with_signature(attribute, Attribution._call, cls, "attribute"))

    def attribute(self, *args: Any, **kwargs: Any) -> Any:  # replaced by Captum's in each class
        raise NotImplementedError(f"{type(self).__name__}.attribute")  # pragma: no cover

    def __init__(self, forward_func: Any = None, layer: Any = None, *, model: Any = None, device_ids: Any = None,
                 multiply_by_inputs: Optional[bool] = None, memory_efficient: bool = False, **options: Any) -> None:
        """Captum's constructor, with each class's signature (``init=``) (``memory_efficient`` accepted: fattr
        never keeps more than one gradient pass)."""
        unsupported(type(self).__name__, device_ids=device_ids)
        self.forward_func = forward_func if model is None else model
        if model is not None:
            self.model = model
        if self.layer_method:
            self.layer = layer
        self._multiply_by_inputs = multiply_by_inputs
        for name in self.held:
            setattr(self, name, options.pop(name))
        self._options: Dict[str, Any] = dict(options)
        if multiply_by_inputs is not None:
            self._options["multiply_by_inputs"] = multiply_by_inputs

    @property
    def multiplies_by_inputs(self) -> bool:
        """Whether the attributions are multiplied by ``inputs - baselines`` (global attribution)."""
        return self.multiplies if self._multiply_by_inputs is None else self._multiply_by_inputs

    def has_convergence_delta(self) -> bool:
        """Whether ``attribute`` can return a convergence (completeness) delta."""
        return self.delta

    def attribute_future(self, *args: Any, **kwargs: Any) -> Any:
        """Asynchronous attribution (forward functions returning ``torch.futures.Future``): not in fattr.

        Captum 0.9 declares it on every class and implements it for the ablation, Shapley and
        permutation classes only.
        """
        where = ("fattr's functions are synchronous: call attribute() with a forward function returning "
                 "tensors" if self.captum_future else "nor in Captum 0.9")
        raise NotImplementedError(f"{type(self).__name__}.attribute_future: not implemented ({where}).")

    def _captum_kwargs(self, kwargs: Dict[str, Any]) -> Dict[str, Any]:
        """``kwargs`` meant for this class's ``attribute`` (as NoiseTunnel passes them): a name it does not
        take is a ``TypeError``, as in Captum; what its ``**kwargs`` would swallow is dropped, as Captum does."""
        params = inspect.signature(getattr(self, "attribute")).parameters
        named = {k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
        unknown = [k for k in kwargs if k not in named or k == "inputs"]
        if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            raise TypeError(f"{type(self).__name__}.attribute() got unexpected keyword arguments: "
                            f"{', '.join(unknown)}")
        return {k: v for k, v in kwargs.items() if k not in unknown}

    def _positional(self) -> Tuple[Any, ...]:
        return (self.forward_func, self.layer) if self.layer_method else (self.forward_func,)

    def _current_options(self) -> Dict[str, Any]:
        """The constructor's options as fattr keyword arguments, the held ones read at each call (one
        still at Captum's default is left to fattr's: None)."""
        held = {k: getattr(self, k) for k in self.held}
        return {**self._options, **{k: None if v is self._captum_defaults.get(k) else v for k, v in held.items()}}

    def _translate(self, inputs: Any, captum: Dict[str, Any], rows: Optional[int] = None) -> Dict[str, Any]:
        """fattr's keyword arguments for Captum's ``captum`` ones (and the constructor's options)."""
        out = self._current_options()
        for name, value in captum.items():
            if name == "grad_kwargs":  # reaches here from NoiseTunnel
                unsupported(type(self).__name__, grad_kwargs=value)
            elif name == "internal_batch_size":  # Captum counts rows (points x examples), fattr path points
                ibs = check_optional_positive_int(name, value)
                per_point = examples(inputs) if rows is None else rows
                out["chunk_size"] = None if ibs is None else max(1, ibs // max(per_point, 1))  # >= 1, as Captum
            else:
                out[_RENAMED.get(name, name)] = value
        if out.get("args") is None and "args" in out:
            out["args"] = ()
        if self.stochastic:
            out["generator"] = torch.default_generator  # Captum's contract: torch's global RNG
        return out

    def _call(self, inputs: Any, **captum: Any) -> Any:
        """Captum's ``attribute``: one call of the fattr function, Captum's arguments translated."""
        return self.fn(*self._positional(), inputs, **self._translate(inputs, captum))

    def compute_convergence_delta(self, attributions: Any, start_point: Any, end_point: Any, target: Any = None,
                                  additional_forward_args: Any = None) -> torch.Tensor:
        """Per example: ``sum(attributions) - (f(end_point) - f(start_point))`` at ``target``, in float64.

        ``attributions`` may be input- or layer-shaped (a tensor or a tuple); ``start_point``
        takes any fattr baseline (None, a number, a tensor, a tuple).
        """
        xs, _ = structure.as_tuple(end_point, "end_point")
        attrs, _ = structure.as_tuple(attributions, "attributions")
        with torch.no_grad():
            return delta_at(self.forward_func, xs, format_baselines(start_point, xs, "start_point"), attrs,
                            as_target(target, xs[0].shape[0], xs[0].device), as_args(additional_forward_args))
