"""``fattr.captum``: Captum's classes on fattr's functions, tested against Captum itself.

Same calls on the models of the Captum differential tests (``test_core_captum``,
``test_layer_captum``, ``test_deeplift_captum``), same numbers up to the documented
differences: Captum's float32 quadrature weights (``CAPTUM_REL``, as in those tests) and its
random draws (the stochastic classes are compared where the draws cannot matter: linear
models, no noise). Also: Captum's signatures, flags, ``internal_batch_size`` in rows, torch's
global RNG, and ``NotImplementedError`` for what fattr cannot honour.
"""
from __future__ import annotations

import inspect
from typing import Any

import captum.attr as ca
import pytest
import torch
from torch import nn

import fattr
import fattr.captum as fc
from conftest import _init, randn
from test_core_captum import _case as core_case
from test_deeplift_captum import every
from test_layer_captum import _case as layer_case

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CAPTUM_REL = 1e-6   # Captum's float32 quadrature weights (see test_core_captum)
EXACT_REL = 1e-10
NAMES = [n for n in fc.__all__ if n != "Attribution"]


def close(ours: Any, theirs: Any, rel: float) -> None:
    if isinstance(theirs, (tuple, list)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        for a, e in zip(ours, theirs, strict=True):
            close(a, e, rel)
        return
    ours, theirs = ours.detach(), theirs.detach()
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    scale = max(float(theirs.abs().max()) if theirs.numel() else 0.0, 1e-300)
    torch.testing.assert_close(ours, theirs, rtol=rel, atol=rel * scale)


def both(name: str, *args: Any, **kwargs: Any):
    return getattr(fc, name)(*args, **kwargs), getattr(ca, name)(*args, **kwargs)


# --------------------------------------------------------------------------- the interface

@pytest.mark.parametrize("name", NAMES)
def test_signatures_are_captums(name: str) -> None:
    ours, theirs = getattr(fc, name), getattr(ca, name)
    for method in ("__init__", "attribute"):
        mine = list(inspect.signature(getattr(ours, method)).parameters)
        captums = list(inspect.signature(getattr(theirs, method)).parameters)
        assert mine == captums, (method, mine, captums)
        defaults = {k: p.default for k, p in inspect.signature(getattr(theirs, method)).parameters.items()}
        for k, p in inspect.signature(getattr(ours, method)).parameters.items():
            if inspect.isfunction(defaults[k]):  # FeaturePermutation's perm_func: Captum's function, by name
                assert p.default.__name__ == defaults[k].__name__, (method, k)
                continue
            assert p.default == defaults[k], (method, k)


def _instances():
    model = every()
    layer = model.net[2]
    simple = {
        "Saliency": (model,), "InputXGradient": (model,), "IntegratedGradients": (model,),
        "GradientShap": (model,), "DeepLift": (model,), "DeepLiftShap": (model,),
        "GuidedBackprop": (model,), "Deconvolution": (model,), "LRP": (model,),
    }
    simple.update({name: (model,) for name in ("FeatureAblation", "Occlusion", "ShapleyValueSampling",
                                               "ShapleyValues", "Lime", "KernelShap", "FeaturePermutation")})
    for name in NAMES:
        if name == "NoiseTunnel":
            continue
        yield name, simple.get(name, (model, layer))


FLAG_CASES = [(name, args, multiply) for name, args in _instances() for multiply in (None, False)
              if multiply is None or "multiply_by_inputs" in inspect.signature(getattr(ca, name)).parameters]


@pytest.mark.parametrize("name,args,multiply", FLAG_CASES, ids=[f"{n}-{m}" for n, _, m in FLAG_CASES])
def test_flags_are_captums(name: str, args: tuple, multiply: Any) -> None:
    kwargs = {} if multiply is None else {"multiply_by_inputs": multiply}
    ours, theirs = both(name, *args, **kwargs)
    assert ours.has_convergence_delta() == theirs.has_convergence_delta()
    assert ours.multiplies_by_inputs == theirs.multiplies_by_inputs
    nt_ours, nt_theirs = fc.NoiseTunnel(ours), ca.NoiseTunnel(theirs)
    assert nt_ours.has_convergence_delta() == nt_theirs.has_convergence_delta()
    assert nt_ours.multiplies_by_inputs == nt_theirs.multiplies_by_inputs


def test_what_fattr_cannot_honour_is_named() -> None:
    model = every()
    with pytest.raises(NotImplementedError, match="device_ids"):
        fc.LayerConductance(model, model.net[2], device_ids=[0])
    with pytest.raises(NotImplementedError, match="grad_kwargs"):
        fc.LayerIntegratedGradients(model, model.net[2]).attribute(randn(2, 5), target=0, grad_kwargs={"a": 1})
    with pytest.raises(NotImplementedError, match="draw_baseline_from_distrib"):
        fc.NoiseTunnel(fc.GradientShap(model)).attribute(randn(2, 5), baselines=randn(3, 5), target=0,
                                                         draw_baseline_from_distrib=True)
    with pytest.raises(TypeError, match="attribution_method"):
        fc.NoiseTunnel(ca.Saliency(model))
    declared = [name for name in NAMES if hasattr(getattr(ca, name), "attribute_future")]
    assert "IntegratedGradients" in declared
    for name in declared:  # declared by Captum 0.9 (implemented there for the ablation family only)
        cls = getattr(fc, name)
        implemented = name in ("FeatureAblation", "ShapleyValueSampling", "ShapleyValues", "FeaturePermutation")
        with pytest.raises(NotImplementedError, match="synchronous" if implemented else "nor in Captum"):
            cls.attribute_future(cls.__new__(cls))


def test_module_docs_run() -> None:
    import doctest
    result = doctest.testmod(fc, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
    assert fattr.captum is fc  # also reachable as an attribute


def test_fattr_captum_does_not_import_captum() -> None:
    import subprocess
    import sys
    code = "import sys, fattr.captum; assert 'captum' not in sys.modules, sorted(m for m in sys.modules if 'captum' in m)"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- input attribution

CORE = ("mlp", "cnn", "two_inputs")


@pytest.mark.parametrize("case", CORE)
def test_gradient_classes_match_captum(case: str) -> None:
    c = core_case(case)
    kw = {"target": c.target, "additional_forward_args": c.args or None}
    for abs_ in (True, False):
        ours, theirs = both("Saliency", c.f)
        close(ours.attribute(c.inputs, abs=abs_, **kw), theirs.attribute(c.inputs, abs=abs_, **kw), EXACT_REL)
    ours, theirs = both("InputXGradient", c.f)
    close(ours.attribute(c.inputs, **kw), theirs.attribute(c.inputs, **kw), EXACT_REL)


@pytest.mark.parametrize("case", CORE)
@pytest.mark.parametrize("multiply", [True, False])
def test_integrated_gradients_matches_captum(case: str, multiply: bool) -> None:
    c = core_case(case)
    ours, theirs = both("IntegratedGradients", c.f, multiply_by_inputs=multiply)
    kw = dict(baselines=c.baselines, target=c.target, additional_forward_args=c.args or None, n_steps=20,
              return_convergence_delta=True)
    (a, d), (ea, ed) = ours.attribute(c.inputs, **kw), theirs.attribute(c.inputs, **kw)
    close(a, ea, CAPTUM_REL)
    if multiply:
        torch.testing.assert_close(d, ed.to(d.dtype), rtol=0, atol=1e-6)
    # internal_batch_size counts rows (steps x examples), as in Captum: 7 rows of 3 examples = 2 steps
    close(ours.attribute(c.inputs, **{**kw, "return_convergence_delta": False}, internal_batch_size=7),
          theirs.attribute(c.inputs, **{**kw, "return_convergence_delta": False}, internal_batch_size=7), CAPTUM_REL)
    # compute_convergence_delta: Captum's formula on the same attributions
    cd = ours.compute_convergence_delta(ea, c.baselines, c.inputs, target=c.target,
                                        additional_forward_args=c.args or None)
    ecd = theirs.compute_convergence_delta(ea, c.baselines, c.inputs, target=c.target,
                                           additional_forward_args=c.args or None)
    torch.testing.assert_close(cd, ecd.to(cd.dtype), rtol=0, atol=1e-12)


def test_integrated_gradients_is_one_call_of_the_function() -> None:
    c = core_case("cnn")
    got = fc.IntegratedGradients(c.f).attribute(c.inputs, c.baselines, target=c.target, n_steps=12,
                                                method="riemann_trapezoid", internal_batch_size=6)
    want = fattr.integrated_gradients(c.f, c.inputs, c.baselines, 12, "riemann_trapezoid", target=c.target,
                                      chunk_size=2)
    close(got, want, 0.0)


def _linear(seed: int = 3) -> nn.Module:
    return _init(nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3)), seed)


@pytest.mark.parametrize("multiply", [True, False])
def test_gradient_shap_matches_captum_where_draws_cannot_matter(multiply: bool) -> None:
    """A linear model and one baseline row: every draw of alpha gives the same gradient."""
    model, x, dist = _linear(), randn(4, 5, seed=1), randn(1, 5, seed=2)
    ours, theirs = both("GradientShap", model, multiply_by_inputs=multiply)
    (a, d) = ours.attribute(x, dist, n_samples=6, target=[0, 1, 2, 0], return_convergence_delta=True)
    (ea, ed) = theirs.attribute(x, dist, n_samples=6, target=[0, 1, 2, 0], return_convergence_delta=True)
    close(a, ea, EXACT_REL)
    assert d.shape == ed.shape == (24,)
    layer_ours, layer_theirs = both("LayerGradientShap", model, model[0], multiply_by_inputs=multiply)
    close(layer_ours.attribute(x, dist, n_samples=6, target=1), layer_theirs.attribute(x, dist, n_samples=6, target=1),
          EXACT_REL)


def test_stochastic_classes_draw_from_torchs_global_generator() -> None:
    """Captum's contract: seeded by torch.manual_seed, advancing the global RNG; the numbers are the
    fattr function's with that generator."""
    model, x, dist = every(), randn(4, 5, seed=1), randn(6, 5, seed=2)
    gs = fc.GradientShap(model)
    torch.manual_seed(5)
    first = gs.attribute(x, dist, n_samples=4, stdevs=0.1, target=1)
    state = torch.get_rng_state()
    torch.manual_seed(5)
    again = gs.attribute(x, dist, n_samples=4, stdevs=0.1, target=1)
    assert torch.equal(first, again) and torch.equal(torch.get_rng_state(), state)
    close(first, fattr.gradient_shap(model, x, dist, 4, 0.1, target=1, generator=torch.Generator().manual_seed(5)),
          0.0)
    nt = fc.NoiseTunnel(fc.Saliency(model))
    torch.manual_seed(6)
    got = nt.attribute(x, nt_type="smoothgrad_sq", nt_samples=5, stdevs=0.2, target=1)
    want = fattr.noise_tunnel(fattr.saliency, kind="smoothgrad_sq", n_samples=5, stdevs=0.2)(
        model, x, target=1, generator=torch.Generator().manual_seed(6))
    close(got, want, 0.0)


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_tunnel_matches_captum_without_noise(nt_type: str) -> None:
    c = core_case("mlp")
    for inner, kw in (("Saliency", {"abs": False}), ("IntegratedGradients", {"baselines": c.baselines, "n_steps": 8})):
        ours, theirs = both(inner, c.f)
        call = dict(nt_type=nt_type, nt_samples=4, stdevs=0.0, target=c.target, **kw)
        got = fc.NoiseTunnel(ours).attribute(c.inputs, nt_samples_batch_size=3, **call)
        want = ca.NoiseTunnel(theirs).attribute(c.inputs, **call)
        if nt_type == "vargrad":  # the variance of identical samples: zero up to rounding in both
            assert float(got.abs().max()) < 1e-12 and float(want.abs().max()) < 1e-12
        else:
            close(got, want, CAPTUM_REL)
    a, d = fc.NoiseTunnel(fc.IntegratedGradients(c.f)).attribute(
        c.inputs, nt_samples=4, stdevs=0.1, target=c.target, n_steps=8, return_convergence_delta=True)
    assert a.shape == c.inputs.shape and d.shape == (4 * c.inputs.shape[0],)


# --------------------------------------------------------------------------- layer attribution

LAYER = ("resnet_conv", "two_inputs", "tuple_output")


def _layer_call(c) -> dict:
    return {"target": c.target, "additional_forward_args": c.args or None}


@pytest.mark.parametrize("case", LAYER)
def test_layer_gradient_classes_match_captum(case: str) -> None:
    c = layer_case(case)
    layer = c.model.get_submodule(c.layer)
    kw = _layer_call(c)
    ours, theirs = both("LayerActivation", c.model, layer)
    close(ours.attribute(c.inputs, additional_forward_args=kw["additional_forward_args"]),
          theirs.attribute(c.inputs, additional_forward_args=kw["additional_forward_args"]), EXACT_REL)
    for multiply in (True, False):
        ours, theirs = both("LayerGradientXActivation", c.model, layer, multiply_by_inputs=multiply)
        close(ours.attribute(c.inputs, **kw), theirs.attribute(c.inputs, **kw), EXACT_REL)
    ours, theirs = both("LayerGradCam", c.model, layer)
    if case != "tuple_output":  # Captum's GradCam takes one tensor
        close(ours.attribute(c.inputs, relu_attributions=True, **kw),
              theirs.attribute(c.inputs, relu_attributions=True, **kw), EXACT_REL)


@pytest.mark.parametrize("case", LAYER)
def test_layer_path_classes_match_captum(case: str) -> None:
    c = layer_case(case)
    layer = c.model.get_submodule(c.layer)
    kw = dict(baselines=c.baselines, n_steps=12, **_layer_call(c))
    ours, theirs = both("LayerIntegratedGradients", c.model, layer)
    (a, d), (ea, ed) = (ours.attribute(c.inputs, return_convergence_delta=True, **kw),
                        theirs.attribute(c.inputs, return_convergence_delta=True, **kw))
    close(a, ea, CAPTUM_REL)
    torch.testing.assert_close(d, ed.to(d.dtype), rtol=0, atol=1e-6)
    close(ours.attribute(c.inputs, internal_batch_size=5, **kw), theirs.attribute(c.inputs, internal_batch_size=5, **kw),
          CAPTUM_REL)
    if case == "tuple_output":
        return  # Captum's conductance and internal influence take a layer with one output tensor
    for name in ("InternalInfluence", "LayerConductance"):
        ours, theirs = both(name, c.model, layer)
        close(ours.attribute(c.inputs, **kw), theirs.attribute(c.inputs, **kw), CAPTUM_REL)


@pytest.mark.parametrize("case", ["resnet_conv", "two_inputs"])
def test_layer_feature_ablation_matches_captum(case: str) -> None:
    c = layer_case(case)
    layer = c.model.get_submodule(c.layer)
    ours, theirs = both("LayerFeatureAblation", c.model, layer)
    kw = dict(layer_baselines=0.3, **_layer_call(c))
    # Captum's perturbations_per_eval > 1 fails with a list target (it does not repeat the list)
    ppe = 4 if not isinstance(c.target, list) else 1
    close(ours.attribute(c.inputs, perturbations_per_eval=4, **kw),
          theirs.attribute(c.inputs, perturbations_per_eval=ppe, **kw), EXACT_REL)


# --------------------------------------------------------------------------- DeepLift family

@pytest.mark.parametrize("multiply", [True, False])
def test_deeplift_classes_match_captum(multiply: bool) -> None:
    model, x, b, dist = every(), randn(4, 5, seed=3), randn(4, 5, seed=4), randn(3, 5, seed=5)
    target = [0, 2, 1, 2]
    ours, theirs = both("DeepLift", model, multiply_by_inputs=multiply)
    (a, d) = ours.attribute(x, b, target=target, return_convergence_delta=True)
    (ea, ed) = theirs.attribute(x, b, target=target, return_convergence_delta=True)
    close(a, ea, EXACT_REL)
    if multiply:
        torch.testing.assert_close(d, ed, rtol=0, atol=1e-10)
    ours, theirs = both("DeepLiftShap", model, multiply_by_inputs=multiply)
    (a, d) = ours.attribute(x, dist, target=target, return_convergence_delta=True)
    (ea, ed) = theirs.attribute(x, dist, target=target, return_convergence_delta=True)
    close(a, ea, EXACT_REL)
    if multiply:
        torch.testing.assert_close(d, ed, rtol=0, atol=1e-10)  # example first, as Captum
    layer = model.net[4]
    for name, base in (("LayerDeepLift", b), ("LayerDeepLiftShap", dist)):
        ours, theirs = both(name, model, layer, multiply_by_inputs=multiply)
        close(ours.attribute(x, base, target=target), theirs.attribute(x, base, target=target), EXACT_REL)
