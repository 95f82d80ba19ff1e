"""The manifest of a store: what its attributions were computed with, and refusing to mix settings.

A manifest is a JSON-able dict. Its ``identity`` (the method and its settings, the
target rule, the model's fingerprint, the dataset's length, the batch size that
fixes the chunks, the device type, fattr's and torch's versions) must be equal for
a job to add chunks to an existing store; :func:`check_same` names the first
difference as the argument that differs. The ``layout`` (arrays, shapes, dtypes) is
derived from the first chunk and recorded beside it.

Values are described canonically: tensors by shape, dtype and a SHA-256 of their
bytes, modules by their dotted name in the model, functions by their qualified
name, so the same call always gives the same manifest.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, Mapping, Optional

import torch
from torch import nn

from ..errors import Shown, fail

FORMAT = "fattr.dataset/1"


def tensor_digest(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (any device, any dtype)."""
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    data = t.detach().to("cpu").contiguous().reshape(-1)
    if data.numel():
        h.update(data.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _qualname(value: Any) -> str:
    module = getattr(value, "__module__", None) or type(value).__module__
    name = getattr(value, "__qualname__", None) or type(value).__qualname__
    return f"{module}.{name}"


def canonical(value: Any, model: Optional[nn.Module] = None) -> Any:
    """A JSON-able description of an argument's value, equal for equal values."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"float": repr(value)}  # exact, and nan/inf stay JSON-able
    if isinstance(value, torch.Tensor):
        return {"tensor": {"dtype": str(value.dtype), "shape": list(value.shape), "sha256": tensor_digest(value)}}
    if isinstance(value, (tuple, list)):
        return {type(value).__name__: [canonical(v, model) for v in value]}
    if isinstance(value, dict):
        return {"dict": {str(k): canonical(v, model) for k, v in value.items()}}
    if isinstance(value, (torch.dtype, torch.device)):
        return {type(value).__name__: str(value)}
    if isinstance(value, nn.Module):
        if model is not None:
            for name, module in model.named_modules():
                if module is value:
                    return {"module": name}
        return {"module_class": _qualname(type(value)), "sha256": module_digest(value)}
    if callable(value):
        return {"callable": _qualname(value)}
    return {"object": _qualname(type(value))}


def module_digest(model: nn.Module) -> str:
    """SHA-256 of a module's class, parameters, buffers and training flags."""
    h = hashlib.sha256(_qualname(type(model)).encode())
    for name, tensor in model.state_dict(keep_vars=True).items():
        if isinstance(tensor, torch.Tensor):
            h.update(name.encode())
            h.update(tensor_digest(tensor).encode())
    h.update("".join("T" if m.training else "F" for m in model.modules()).encode())
    return h.hexdigest()


def model_fingerprint(model: Any) -> Dict[str, Any]:
    if isinstance(model, nn.Module):
        return {"class": _qualname(type(model)), "sha256": module_digest(model)}
    return {"callable": _qualname(model)}


def versions() -> Dict[str, str]:
    import fattr
    return {"fattr": fattr.__version__, "torch": torch.__version__}


# identity key -> the argument of attribute_dataset it comes from (for error messages)
_ARGUMENT = {"method": "method", "noise_tunnel": "method", "options": None, "target": "target",
             "model": "model", "dataset": "dataset", "batch_size": "batch_size", "collate_fn": "collate_fn",
             "seed": "seed", "save_output": "save_output", "metrics": "metrics", "device_type": "device",
             "versions": "versions"}


def build(identity: Mapping[str, Any], layout: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """A manifest: the format tag, the job's identity and (once known) the store's layout."""
    unknown = set(identity) - set(_ARGUMENT)
    if unknown:
        raise KeyError(f"unknown manifest keys {sorted(unknown)}")
    return {"format": FORMAT, "identity": json.loads(json.dumps(dict(identity))), "layout": dict(layout or {})}


def render(value: Any) -> str:
    """A canonical value (see :func:`canonical`) in Python-like words, for messages."""
    if isinstance(value, dict) and len(value) == 1:
        (kind, inner), = value.items()
        if kind == "float":
            return str(inner)
        if kind == "tensor":
            return f"a {inner['dtype']} tensor of shape {tuple(inner['shape'])} (sha256 {inner['sha256'][:12]})"
        if kind in ("tuple", "list"):
            items = ", ".join(render(v) for v in inner)
            return f"({items}{',' if len(inner) == 1 else ''})" if kind == "tuple" else f"[{items}]"
        if kind == "dict":
            return "{" + ", ".join(f"{k!r}: {render(v)}" for k, v in inner.items()) + "}"
        if kind in ("callable", "module", "module_class", "object", "dtype", "device"):
            return f"{kind} {inner}"
    if isinstance(value, (str, bool, int)) or value is None:
        return repr(value)
    return json.dumps(value, sort_keys=True)


def _show(value: Any) -> str:
    text = render(value)
    return text if len(text) <= 200 else text[:197] + "..."


def check_same(stored: Mapping[str, Any], identity: Mapping[str, Any], out: str) -> None:
    """Refuse to add to a store made with other settings: name the first argument that differs."""
    if stored.get("format") != FORMAT:
        fail("out", f"a fattr dataset store ({FORMAT})", Shown(f"{out!r} with format {stored.get('format')!r}"))
    old, new = stored.get("identity", {}), json.loads(json.dumps(dict(identity)))
    hint = "Use another out, or delete it to start over."
    for key in _ARGUMENT:
        if key == "options":
            a, b = old.get(key, {}), new.get(key, {})
            for name in sorted(set(a) | set(b)):
                if name not in a or name not in b or a[name] != b[name]:
                    fail(name, f"{_show(a[name]) if name in a else 'no such argument'}, the value of the store at "
                         f"out={out!r}", Shown(_show(b[name]) if name in b else "no such argument"), hint)
        elif old.get(key) != new.get(key):
            fail(_ARGUMENT[key] or key, f"{_show(old.get(key))}, the {key} of the store at out={out!r}",
                 Shown(_show(new.get(key))), hint)
