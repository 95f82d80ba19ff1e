"""Bad input gets a ValueError/TypeError that names the argument, says what was
expected and what arrived; never an AssertionError or a shape error from deep inside."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fattr

torch.manual_seed(0)
MODEL = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
X = torch.randn(2, 4)


def ig(*args, **kwargs):
    return fattr.integrated_gradients(MODEL, *args, **kwargs)


CASES = [
    # (call, exception, words that must appear in the message)
    (lambda: ig(X, torch.zeros(3, 4), target=0), ValueError, ["baselines", "(2, 4)", "(3, 4)"]),
    (lambda: ig(X, torch.zeros(2, 5), target=0), ValueError, ["baselines", "(2, 5)"]),
    (lambda: ig(X, (0.0, 0.0), target=0), ValueError, ["baselines", "tuple of 1"]),
    (lambda: ig(X, "zeros", target=0), TypeError, ["baselines", "str"]),
    (lambda: ig(X, method="simpson", target=0), ValueError, ["method", "gausslegendre", "riemann_trapezoid", "simpson"]),
    (lambda: ig(X, method=3, target=0), TypeError, ["method"]),
    (lambda: ig(X, n_steps=0, target=0), ValueError, ["n_steps", ">= 1", "0"]),
    (lambda: ig(X, n_steps=2.5, target=0), TypeError, ["n_steps", "int"]),
    (lambda: ig(X, target=3), ValueError, ["target", "range", "(3,)"]),
    (lambda: ig(X, target=[0, 5]), ValueError, ["target", "range", "5"]),
    (lambda: ig(X, target=[0, 1, 2]), ValueError, ["target", "2 entries", "length 3"]),
    (lambda: ig(X, target=torch.tensor([0, 1, 2])), ValueError, ["target", "2 entries"]),
    (lambda: ig(X), ValueError, ["target", "None", "(3,)"]),
    (lambda: ig(X, target=(0, 1)), ValueError, ["target", "1 index"]),
    (lambda: ig(X, target=0.5), TypeError, ["target", "float"]),
    (lambda: ig(X, target=torch.tensor([0.0, 1.0])), TypeError, ["target", "integer tensor"]),
    (lambda: ig(X, target=True), TypeError, ["target", "bool"]),
    (lambda: ig([[1.0, 2.0]], target=0), TypeError, ["inputs", "torch.Tensor", "list"]),
    (lambda: ig((X, [1.0]), target=0), TypeError, ["inputs[1]", "torch.Tensor"]),
    (lambda: ig(torch.tensor(1.0), target=0), ValueError, ["inputs", "dim 0"]),
    (lambda: ig(X, chunk_size=0, target=0), ValueError, ["chunk_size", ">= 1"]),
    (lambda: ig(X, target=0, multiply_by_inputs="yes"), TypeError, ["multiply_by_inputs"]),
    (lambda: fattr.integrated_gradients(lambda x: x[:1].sum(1), X), ValueError, ["f", "100 rows", "(1,)", "folds path steps"]),
    (lambda: fattr.saliency(lambda x: x.sum(), X), ValueError, ["f", "2 rows", "shape ()"]),
    (lambda: fattr.saliency(lambda x: [x], X), TypeError, ["f", "tensor", "list"]),
    (lambda: fattr.saliency("model", X), TypeError, ["f", "callable"]),
    (lambda: fattr.saliency(MODEL, X, target=0, abs=1), TypeError, ["abs"]),
    (lambda: fattr.saliency(MODEL, (X, torch.randn(3, 2)), target=0), ValueError, ["inputs[1]", "2 examples"]),
    (lambda: fattr.gradient_shap(MODEL, X, None, target=0), TypeError, ["baselines"]),
    (lambda: fattr.gradient_shap(MODEL, X, torch.zeros(4, 3), target=0), ValueError, ["baselines", "(4,)"]),
    (lambda: fattr.gradient_shap(MODEL, X, torch.zeros(4, 4), n_samples=0, target=0), ValueError, ["n_samples"]),
    (lambda: fattr.gradient_shap(MODEL, X, torch.zeros(4, 4), stdevs=-1.0, target=0), ValueError, ["stdevs"]),
    (lambda: fattr.gradient_shap(MODEL, X, torch.zeros(4, 4), stdevs=(0.1, 0.2), target=0), ValueError,
     ["stdevs", "tuple of 1"]),
    (lambda: fattr.gradient_shap(MODEL, X, torch.zeros(4, 4), target=0, generator=0), TypeError, ["generator"]),
    (lambda: fattr.noise_tunnel(fattr.saliency, kind="smooth"), ValueError, ["kind", "smoothgrad", "vargrad"]),
    (lambda: fattr.noise_tunnel(fattr.saliency, n_samples=-1), ValueError, ["n_samples"]),
    (lambda: fattr.noise_tunnel(fattr.saliency, chunk_size=0), ValueError, ["chunk_size"]),
    (lambda: fattr.noise_tunnel(lambda f, x: x), TypeError, ["method", "inputs"]),
    (lambda: fattr.noise_tunnel(fattr.saliency)(MODEL, X, targets=0), TypeError, ["saliency", "targets"]),
    (lambda: fattr.quadrature("left", 3), ValueError, ["method", "riemann_left"]),
    (lambda: fattr.quadrature(lambda n: (torch.zeros(n),), 3), TypeError, ["method", "(alphas, weights)"]),
    (lambda: fattr.quadrature(lambda n: (torch.zeros(n + 1), torch.zeros(n)), 3), ValueError, ["method", "n_steps=3"]),
    (lambda: fattr.path_attribution(MODEL, lambda a: [X * a], target=0), TypeError, ["path(alpha)"]),
    (lambda: fattr.completeness_delta(MODEL, X, None, torch.zeros(2, 5), target=0), ValueError, ["attributions", "(2, 4)"]),
    (lambda: fattr.completeness_delta(MODEL, X, None, (X,), target=0), ValueError, ["attributions", "structure"]),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_bad_input_is_named(case):
    fn, kind, words = CASES[case]
    with pytest.raises(kind) as info:
        fn()
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_messages_say_expected_and_got():
    with pytest.raises(ValueError, match=r"^n_steps: expected .*, got .*\.$"):
        ig(X, n_steps=-3, target=0)
