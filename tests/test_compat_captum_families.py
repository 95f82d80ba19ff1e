"""``fattr.captum``'s perturbation, ReLU-rule and neuron classes against Captum 0.9 itself.

Same calls on the float64 models of ``test_perturbation_captum`` (an MLP, a CNN, two inputs with
extra args) and ``test_neuron_captum`` (a ReLU CNN), same numbers up to the documented
differences: Captum's float32 sums in Occlusion and the Shapley classes (``F32_REL``), its
float32 surrogate fits in LIME/KernelSHAP (``FIT_REL``), its float32 quadrature weights
(``CAPTUM_REL``) and its ``(n-1)/n`` trapezoid weights (NeuronConductance's default rule).

The stochastic classes draw from torch's global generator: after ``torch.manual_seed(s)`` they
give what the fattr function gives with ``torch.Generator().manual_seed(s)``, and Captum is
handed those same draws through its own hooks (``permutation_generator``, ``perturb_func``,
``perm_func``), so the comparison is exact. NeuronGradientShap is compared where the draws
cannot matter (a neuron linear in the inputs, one baseline row, no noise).
"""
from __future__ import annotations

from typing import Any

import captum.attr as ca
import pytest
import torch

import fattr
import fattr.captum as fc
from conftest import make_mlp, randn
from fattr._src.perturbation.lime import bernoulli_samples, kernel_shap_samples
from fattr._src.perturbation.permutation import shuffles
from fattr._src.perturbation.shapley import permutations
from test_compat_captum import _linear
from test_neuron_captum import CASES as NEURON_CASES
from test_neuron_captum import ReluCNN, TwoInputs
from test_perturbation_captum import Setup, baselines_for, feeder, n_interp

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

EXACT_REL = 1e-10
F32_REL = 2e-6      # Captum sums Occlusion and Shapley attributions in float32
FIT_REL = 5e-5      # Captum fits the LIME / KernelSHAP surrogate on float32 data (its lasso: 2e-5 seen)
CAPTUM_REL = 1e-6   # Captum's float32 quadrature weights
B = 3


def close(ours: Any, theirs: Any, rel: float, same_dtype: bool = True) -> None:
    """Elementwise, relative to the largest attribution; Captum's float32 results compared in float64."""
    if isinstance(theirs, (tuple, list)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        for a, e in zip(ours, theirs, strict=True):
            close(a, e, rel, same_dtype)
        return
    ours, theirs = ours.detach(), theirs.detach()
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert ours.dtype == (theirs.dtype if same_dtype else torch.float64)
    scale = float(theirs.abs().max()) if theirs.numel() else 0.0
    assert scale > 0, "a vacuous comparison"
    torch.testing.assert_close(ours.double(), theirs.double(), rtol=rel, atol=rel * scale)


def both(name: str, *args: Any, **kwargs: Any):
    return getattr(fc, name)(*args, **kwargs), getattr(ca, name)(*args, **kwargs)


def _captum_baselines(s: Setup, b: Any) -> Any:
    return (b,) * len(s.inputs) if isinstance(s.inputs, tuple) and isinstance(b, float) else b


# --------------------------------------------------------------------------- deterministic perturbation

PERTURBATION = ("mlp", "cnn", "two_inputs")


@pytest.mark.parametrize("name", PERTURBATION)
def test_ablation_occlusion_and_shapley_values_match_captum(name: str) -> None:
    s = Setup(name)
    kw = dict(target=s.target, additional_forward_args=s.captum_args)
    b = baselines_for(s, "scalar")
    ours, theirs = both("FeatureAblation", s.model)
    for mask, ppe in ((None, 1), (s.mask, 4)):
        close(ours.attribute(s.inputs, b, feature_mask=mask, perturbations_per_eval=ppe, **kw),
              theirs.attribute(s.inputs, _captum_baselines(s, b), feature_mask=mask, perturbations_per_eval=ppe,
                               **kw), EXACT_REL)
    ours, theirs = both("Occlusion", s.model)
    b = baselines_for(s, "tensor")
    close(ours.attribute(s.inputs, s.window, baselines=b, perturbations_per_eval=5, **kw),
          theirs.attribute(s.inputs, s.window, baselines=b, perturbations_per_eval=5, **kw), F32_REL,
          same_dtype=False)  # Captum returns float32
    ours, theirs = both("ShapleyValues", s.model)
    close(ours.attribute(s.inputs, b, feature_mask=s.mask, perturbations_per_eval=3, **kw),
          theirs.attribute(s.inputs, b, feature_mask=s.mask, perturbations_per_eval=3, **kw), F32_REL,
          same_dtype=False)  # Captum returns float32


def test_feature_ablation_ignores_kwargs_as_captum_does() -> None:
    s = Setup("mlp")
    ours, theirs = both("FeatureAblation", s.model)
    close(ours.attribute(s.inputs, target=s.target, sliding_window_shapes=(2,)),
          theirs.attribute(s.inputs, target=s.target, sliding_window_shapes=(2,)), EXACT_REL)


# --------------------------------------------------------------------------- stochastic perturbation

def _features(s: Setup) -> int:
    return n_interp(s.mask, s.inputs)


@pytest.mark.parametrize("name", PERTURBATION)
def test_shapley_value_sampling_draws_from_the_global_generator(name: str) -> None:
    s = Setup(name)
    b = baselines_for(s, "tensor")
    kw = dict(target=s.target, additional_forward_args=s.captum_args, feature_mask=s.mask, n_samples=6,
              perturbations_per_eval=4)
    ours = fc.ShapleyValueSampling(s.model)
    torch.manual_seed(11)
    got = ours.attribute(s.inputs, b, **kw)
    state = torch.get_rng_state()
    torch.manual_seed(11)
    again = ours.attribute(s.inputs, b, **kw)
    assert torch.equal(torch.get_rng_state(), state)
    close(again, got, 0.0)
    theirs = ca.ShapleyValueSampling(s.model)
    orders = permutations(torch.Generator().manual_seed(11), 6, _features(s)).tolist()
    theirs.permutation_generator = lambda n_features, n_samples: iter(orders)
    close(got, theirs.attribute(s.inputs, b, **kw), F32_REL, same_dtype=False)


@pytest.mark.parametrize("kernel", [False, True], ids=["Lime", "KernelShap"])
@pytest.mark.parametrize("name", PERTURBATION)
def test_lime_and_kernel_shap_draw_from_the_global_generator(name: str, kernel: bool) -> None:
    s = Setup(name)
    b = baselines_for(s, "tensor")
    cls = "KernelShap" if kernel else "Lime"
    kw = dict(target=s.target, additional_forward_args=s.captum_args, feature_mask=s.mask, n_samples=30,
              perturbations_per_eval=6)
    torch.manual_seed(5)
    got = getattr(fc, cls)(s.model).attribute(s.inputs, b, **kw)
    z = (kernel_shap_samples if kernel else bernoulli_samples)(torch.Generator().manual_seed(5), B, 30, _features(s))
    theirs = getattr(ca, cls)(s.model)
    theirs.perturb_func = feeder(z)
    close(got, theirs.attribute(s.inputs, b, **kw), FIT_REL, same_dtype=False)
    if not kernel:  # the constructor's arguments, and the instance's attributes read at each call
        from captum._utils.models.linear_model import SkLearnRidge
        from captum.attr._core.lime import get_exp_kernel_similarity_function
        sim = get_exp_kernel_similarity_function("euclidean", kernel_width=2.0)
        ours = fc.Lime(s.model, SkLearnRidge(alpha=0.5), sim, feeder(z))
        theirs = ca.Lime(s.model, SkLearnRidge(alpha=0.5), sim, feeder(z))
        close(ours.attribute(s.inputs, b, return_input_shape=False, **kw),
              theirs.attribute(s.inputs, b, return_input_shape=False, **kw), FIT_REL, same_dtype=False)
        z2 = bernoulli_samples(torch.Generator().manual_seed(6), B, 30, _features(s))
        ours.perturb_func, theirs.perturb_func = feeder(z2), feeder(z2)
        close(ours.attribute(s.inputs, b, **kw), theirs.attribute(s.inputs, b, **kw), FIT_REL, same_dtype=False)


@pytest.mark.parametrize("name", PERTURBATION)
def test_feature_permutation_draws_from_the_global_generator(name: str) -> None:
    s = Setup(name)
    inputs = tuple(torch.cat([x, 0.5 * x[:2]]) for x in s.inputs) if isinstance(s.inputs, tuple) \
        else torch.cat([s.inputs, 0.5 * s.inputs[:2]])
    args = tuple(torch.cat([a, a[:2]]) if isinstance(a, torch.Tensor) else a for a in s.args)
    target = s.target + s.target[:2] if isinstance(s.target, list) else s.target
    if name == "two_inputs":  # no feature spanning both inputs (Captum shuffles each input on its own)
        s.mask = (torch.tensor([[0, 1, 1, 2]]), torch.tensor([[[3, 4, 4], [5, 5, 3]]]))
    kw = dict(target=target, additional_forward_args=args or None, feature_mask=s.mask, perturbations_per_eval=3)
    torch.manual_seed(8)
    got = fc.FeaturePermutation(s.model).attribute(inputs, **kw)
    replay = iter(shuffles(torch.Generator().manual_seed(8), _features(s), 5))

    def perm_func(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x[next(replay)] * mask + x * ~mask

    close(got, ca.FeaturePermutation(s.model, perm_func=perm_func).attribute(inputs, **kw), EXACT_REL)

    def roll(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # a user perm_func, given to both
        return torch.where(mask, x.roll(1, 0), x)

    ours, theirs = both("FeaturePermutation", s.model, perm_func=roll)
    close(ours.attribute(inputs, **kw), theirs.attribute(inputs, **kw), EXACT_REL)


def test_feature_permutations_default_perm_func_is_captums_rule() -> None:
    from fattr._src.compat.perturbation import _permute_feature
    x, mask = randn(6, 4, seed=1), torch.tensor([[True, False, True, False]])
    torch.manual_seed(0)
    got = _permute_feature(x, mask)
    assert torch.equal(got[:, 1], x[:, 1]) and not torch.equal(got, x)
    assert torch.equal(got[:, 0].sort().values, x[:, 0].sort().values)


# --------------------------------------------------------------------------- ReLU rules

def _relu_cases():
    cnn = fattr_init(ReluCNN(), 5)
    two = fattr_init(TwoInputs(), 4)
    return [
        (cnn, randn(B, 2, 8, 8, seed=2), 3, None, cnn.conv2),
        (two, (randn(B, 4, seed=3), randn(B, 2, 3, seed=4)), [2, 0, 1], (randn(B, 1, seed=5), "double", 2.0), None),
    ]


def fattr_init(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    from conftest import _init
    return _init(module, seed)


def test_guided_backprop_deconvolution_and_guided_grad_cam_match_captum() -> None:
    for model, x, target, args, layer in _relu_cases():
        kw = dict(target=target, additional_forward_args=args)
        for name in ("GuidedBackprop", "Deconvolution"):
            ours, theirs = both(name, model)
            close(ours.attribute(x, **kw), theirs.attribute(x, **kw), EXACT_REL)
        if layer is not None:
            ours, theirs = both("GuidedGradCam", model, layer)
            for mode, to_input in (("nearest", False), ("bilinear", True)):
                close(ours.attribute(x, interpolate_mode=mode, attribute_to_layer_input=to_input, **kw),
                      theirs.attribute(x, interpolate_mode=mode, attribute_to_layer_input=to_input, **kw),
                      EXACT_REL)


# --------------------------------------------------------------------------- neuron classes

NEURON = ("mlp-int", "cnn-tuple", "two-input-args")


@pytest.mark.parametrize("case", NEURON)
def test_neuron_classes_match_captum(case: str) -> None:
    c = NEURON_CASES[case]
    layer = c.model.get_submodule(c.layer)
    args = c.args or None
    for name in ("NeuronGradient", "NeuronGuidedBackprop", "NeuronDeconvolution"):
        ours, theirs = both(name, c.model, layer)
        close(ours.attribute(c.x, c.selector, args), theirs.attribute(c.x, c.selector, args), EXACT_REL)
    ours, theirs = both("NeuronFeatureAblation", c.model, layer)
    close(ours.attribute(c.x, c.selector, c.baseline, args, perturbations_per_eval=4),
          theirs.attribute(c.x, c.selector, c.baseline, args, perturbations_per_eval=4), EXACT_REL)
    xs = c.x if isinstance(c.x, tuple) else (c.x,)
    dist = tuple(0.3 * randn(4, *x.shape[1:], seed=20 + i) for i, x in enumerate(xs))
    for multiply in (True, False):
        ours, theirs = both("NeuronDeepLift", c.model, layer, multiply_by_inputs=multiply)
        close(ours.attribute(c.x, c.selector, c.baseline, args), theirs.attribute(c.x, c.selector, c.baseline, args),
              EXACT_REL)
        ours, theirs = both("NeuronDeepLiftShap", c.model, layer, multiply_by_inputs=multiply)
        dist_arg = dist if isinstance(c.x, tuple) else dist[0]
        close(ours.attribute(c.x, c.selector, dist_arg, args), theirs.attribute(c.x, c.selector, dist_arg, args),
              EXACT_REL)
        ours, theirs = both("NeuronIntegratedGradients", c.model, layer, multiply_by_inputs=multiply)
        kw = dict(additional_forward_args=args, n_steps=16, internal_batch_size=7)
        close(ours.attribute(c.x, c.selector, c.baseline, **kw), theirs.attribute(c.x, c.selector, c.baseline, **kw),
              CAPTUM_REL)
        ours, theirs = both("NeuronConductance", c.model, layer, multiply_by_inputs=multiply)
        kw = dict(target=c.target, additional_forward_args=args, n_steps=12)
        close(ours.attribute(c.x, c.selector, c.baseline, method="gausslegendre", internal_batch_size=7, **kw),
              theirs.attribute(c.x, c.selector, c.baseline, method="gausslegendre", internal_batch_size=7, **kw),
              CAPTUM_REL)
    # the default rule, riemann_trapezoid: Captum's weights sum to (n-1)/n
    got = ours.attribute(c.x, c.selector, c.baseline, **kw)
    scaled = tuple(11 / 12 * a for a in got) if isinstance(got, tuple) else 11 / 12 * got
    close(scaled, theirs.attribute(c.x, c.selector, c.baseline, **kw), CAPTUM_REL)


def test_neuron_classes_take_a_forward_function_that_is_not_a_module() -> None:
    """Captum's forward_func may be any callable calling the layer (fattr substitutes the activation)."""
    model, x = make_mlp(), randn(B, 5, seed=1)

    def f(z: torch.Tensor) -> torch.Tensor:
        return 2 * model(z)

    for name, kw in (("NeuronGradient", {}), ("NeuronIntegratedGradients", {"n_steps": 10}),
                     ("NeuronConductance", {"target": 1, "n_steps": 10, "method": "gausslegendre"}),
                     ("NeuronFeatureAblation", {})):
        ours, theirs = both(name, f, model[2])
        close(ours.attribute(x, 3, **kw), theirs.attribute(x, 3, **kw), CAPTUM_REL)


@pytest.mark.parametrize("multiply", [True, False])
def test_neuron_gradient_shap_matches_captum_where_draws_cannot_matter(multiply: bool) -> None:
    """A neuron of the first linear layer and one baseline row: every draw gives the same gradient."""
    model, x, dist = _linear(), randn(4, 5, seed=1), randn(1, 5, seed=2)
    ours, theirs = both("NeuronGradientShap", model, model[0], multiply_by_inputs=multiply)
    close(ours.attribute(x, 2, dist, n_samples=6), theirs.attribute(x, 2, dist, n_samples=6), EXACT_REL)
    # the draws: torch's global generator, as the fattr function's generator
    cnn = NEURON_CASES["cnn-tuple"]
    ngs = fc.NeuronGradientShap(cnn.model, cnn.model.relu2)
    dist = 0.3 * randn(5, 2, 8, 8, seed=3)
    torch.manual_seed(4)
    got = ngs.attribute(cnn.x, cnn.selector, dist, n_samples=3, stdevs=0.1)
    want = fattr.neuron_gradient_shap(cnn.model, cnn.model.relu2, cnn.x, dist, 3, 0.1, neuron_selector=cnn.selector,
                                      generator=torch.Generator().manual_seed(4))
    close(got, want, 0.0)


# --------------------------------------------------------------------------- NoiseTunnel around the new classes

def test_noise_tunnel_takes_the_new_classes_as_captums_does() -> None:
    """Without noise every sample is the plain attribution: both tunnels give it back."""
    s = Setup("cnn")
    relu = NEURON_CASES["cnn-tuple"]
    calls = [
        ("FeatureAblation", (s.model,), s.inputs, dict(target=1, feature_mask=s.mask, perturbations_per_eval=2)),
        ("Occlusion", (s.model,), s.inputs, dict(target=1, sliding_window_shapes=(1, 3, 3), strides=(1, 3, 3))),
        ("GuidedBackprop", (relu.model,), relu.x, dict(target=2)),
        ("GuidedGradCam", (relu.model, relu.model.conv2), relu.x, dict(target=2)),
        ("NeuronGradient", (relu.model, relu.model.conv2), relu.x, dict(neuron_selector=(1, 0, 1))),
        ("NeuronIntegratedGradients", (relu.model, relu.model.conv2), relu.x,
         dict(neuron_selector=(1, 0, 1), n_steps=8, internal_batch_size=12)),
    ]
    for name, init, x, kw in calls:
        ours, theirs = both(name, *init)
        got = fc.NoiseTunnel(ours).attribute(x, nt_samples=3, nt_samples_batch_size=2, stdevs=0.0, **kw)
        want = ca.NoiseTunnel(theirs).attribute(x, nt_samples=3, nt_samples_batch_size=2, stdevs=0.0, **kw)
        close(got, want, CAPTUM_REL, same_dtype=name != "Occlusion")
    # stochastic classes inside: the global generator for the noise and for the method's draws
    tunnel = fc.NoiseTunnel(fc.ShapleyValueSampling(s.model))
    kw = dict(nt_samples=2, stdevs=0.1, target=1, feature_mask=s.mask, n_samples=2)
    torch.manual_seed(3)
    first = tunnel.attribute(s.inputs, **kw)
    torch.manual_seed(3)
    close(tunnel.attribute(s.inputs, **kw), first, 0.0)


def test_noise_tunnel_checks_keyword_arguments_against_the_wrapped_class() -> None:
    s = Setup("mlp")
    ablation = fc.NoiseTunnel(fc.FeatureAblation(s.model))  # FeatureAblation's **kwargs swallow, as in Captum
    close(ablation.attribute(s.inputs, nt_samples=2, stdevs=0.0, target=1, unused=3),
          fattr.feature_ablation(s.model, s.inputs, target=1), EXACT_REL)
    with pytest.raises(TypeError, match="unused"):
        fc.NoiseTunnel(fc.ShapleyValues(s.model)).attribute(s.inputs, nt_samples=2, target=1, unused=3)
    c = NEURON_CASES["mlp-int"]
    with pytest.raises(NotImplementedError, match="grad_kwargs"):
        fc.NoiseTunnel(fc.NeuronConductance(c.model, c.model[1])).attribute(
            c.x, neuron_selector=1, target=0, grad_kwargs={"a": 1})


def test_what_fattr_cannot_honour_is_named() -> None:
    c = NEURON_CASES["cnn-tuple"]
    with pytest.raises(NotImplementedError, match="grad_kwargs"):
        fc.NeuronConductance(c.model, c.model.conv2).attribute(c.x, c.selector, target=0, grad_kwargs={"a": 1})
    for name in ("GuidedGradCam", "NeuronGradient", "NeuronConductance", "NeuronFeatureAblation"):
        with pytest.raises(NotImplementedError, match="device_ids"):
            getattr(fc, name)(c.model, c.model.conv2, device_ids=[0])
    with pytest.raises(NotImplementedError, match="synchronous"):
        fc.FeatureAblation(c.model).attribute_future(c.x)
