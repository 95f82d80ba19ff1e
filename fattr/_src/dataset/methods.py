"""Which method a dataset job runs: a registered fattr method, or a ``noise_tunnel`` of one (:func:`resolve`).

A method the registry does not know is refused: the job could not say in its manifest what produced the store.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from ..errors import Shown, fail
from ..noise_tunnel import noise_tunnel
from ..registry import REGISTRY, MethodSpec, spec_of
from ..saliency import saliency

# The code object of every function noise_tunnel returns: how a tunnel is recognised.
_TUNNEL_CODE = noise_tunnel(saliency).__code__
_TUNNEL_SETTINGS = ("kind", "n_samples", "stdevs", "chunk_size")
# Arguments the job itself passes (the model, the batch, the target, the generator).
RESERVED = ("f", "model", "inputs", "target", "generator")


@dataclass(frozen=True)
class Method:
    """A resolved method.

    Attributes:
      fn: the function to call.
      name: its name in the manifest (``"integrated_gradients"``, ``"noise_tunnel(saliency)"``).
      spec: the registry entry of the method (of the wrapped method for a tunnel).
      tunnel: the noise tunnel's settings (``kind``, ``n_samples``, ``stdevs``, ``chunk_size``), or None.
    """

    fn: Any
    name: str
    spec: MethodSpec
    tunnel: Optional[Dict[str, Any]]

    @property
    def stochastic(self) -> bool:
        return self.tunnel is not None or self.spec.stochastic


def _tunnel_settings(fn: Any) -> Optional[Tuple[Any, Dict[str, Any]]]:
    """``(wrapped method, settings)`` when ``fn`` was made by ``noise_tunnel``."""
    if getattr(fn, "__code__", None) is not _TUNNEL_CODE:
        return None
    found = inspect.getclosurevars(fn).nonlocals
    if not {"method", *_TUNNEL_SETTINGS} <= set(found):  # noise_tunnel changed: refuse, never guess
        fail("method", "a noise_tunnel whose settings can be recorded", Shown(f"a tunnel exposing only "
             f"{sorted(found)}"), "fattr.dataset must learn this noise_tunnel's settings.", kind=TypeError)
    return found["method"], {key: found[key] for key in _TUNNEL_SETTINGS}


def _known() -> str:
    return ", ".join(sorted(REGISTRY))


def resolve(method: Any) -> Method:
    """The :class:`Method` for ``method`` (a registered function, its registry name, or a tunnel of one)."""
    if isinstance(method, str):
        if method not in REGISTRY:
            fail("method", f"a registered fattr method (one of {_known()})", method)
        method = REGISTRY[method].fn
    if not callable(method):
        fail("method", "a registered fattr method or its name", method, kind=TypeError)
    tunnel = _tunnel_settings(method)
    spec = spec_of(method)
    if tunnel is not None:
        inner, tunnel_settings = tunnel
        spec = spec_of(inner)
        if spec is None:
            fail("method", "a noise_tunnel of a registered fattr method", Shown(f"a noise_tunnel of {inner!r}"),
                 f"Registered methods: {_known()}.", kind=TypeError)
        name = f"noise_tunnel({spec.name})"
    elif spec is not None:
        name, tunnel_settings = spec.name, None
    else:
        fail("method", "a registered fattr method (fattr.methods() lists them) or a noise_tunnel of one",
             Shown(repr(getattr(method, "__name__", method))[:120]), f"Registered methods: {_known()}.",
             kind=TypeError)
    return Method(method, name, spec, tunnel_settings)


def with_defaults(method: Method, options: Mapping[str, Any]) -> Dict[str, Any]:
    """Every keyword argument of the method the job does not pass itself: ``options``, else its default
    (so that a value given explicitly and the same default describe the same job)."""
    parameters = inspect.signature(method.fn).parameters.items()
    return {name: options[name] if name in options else p.default for name, p in parameters
            if name not in RESERVED and (name in options or p.default is not p.empty)}


def check_options(method: Method, options: Mapping[str, Any]) -> None:
    """The method's own keyword arguments: names it takes, none the job passes itself."""
    parameters = inspect.signature(method.fn).parameters
    for key in options:
        if key == "generator":
            fail("generator", "no generator (each chunk draws from its own generator, seeded from seed=)",
                 Shown("a generator"), "Pass seed=<int> to attribute_dataset instead.", kind=TypeError)
        if key in RESERVED:
            fail(key, "no value: attribute_dataset passes it itself", Shown(f"{key}=..."), kind=TypeError)
        if key not in parameters:
            fail(key, f"a keyword argument of {method.name} ({', '.join(p for p in parameters if p not in RESERVED)})",
                 Shown(f"{key}=..."), kind=TypeError)
    if method.spec.baselines == "distribution" and "baselines" not in options:
        fail("baselines", f"baseline rows for {method.name} (a distribution method)", Shown("nothing"),
             kind=TypeError)
    if method.spec.layer and "layer" not in options:
        fail("layer", f"the layer {method.name} attributes to (a module of the model or its dotted name)",
             Shown("nothing"), kind=TypeError)
