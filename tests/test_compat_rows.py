"""``fattr.captum``'s classes as rows (:class:`fattr._src.compat.base.Attribution`): arguments bound as
Python binds Captum's signatures (positionally too), bad calls named, constructor arguments kept on the
instance read at each call, and user subclasses unchanged. The numbers themselves are compared with
Captum in ``test_compat_captum*``; here the reference is the fattr function called directly."""
from __future__ import annotations

import inspect

import pytest
import torch

import fattr
import fattr.captum as fc
from conftest import make_mlp, randn
from fattr._src.compat.base import Attribution, captum


def test_positional_arguments_bind_as_captums_signature() -> None:
    model = make_mlp()
    x = randn(3, 5)
    ours = fc.IntegratedGradients(model, False).attribute(x, None, 1, None, 6, "riemann_left")
    want = fattr.integrated_gradients(model, x, None, 6, "riemann_left", target=1, multiply_by_inputs=False)
    torch.testing.assert_close(ours, want, rtol=0, atol=0)
    layer = model[2]
    ours = fc.LayerGradientXActivation(model, layer, None, False).attribute(x, 0)
    want = fattr.layer_gradient_x_activation(model, layer, x, target=0, multiply_by_inputs=False)
    torch.testing.assert_close(ours, want, rtol=0, atol=0)


@pytest.mark.parametrize("call,match", [
    (lambda m: fc.Saliency(m, 1), r"Saliency\.__init__\(\): too many positional"),
    (lambda m: fc.Saliency(m).attribute(), r"Saliency\.attribute\(\): missing a required argument: 'inputs'"),
    (lambda m: fc.DeepLift(m).attribute(randn(2, 5), bogus=1), r"DeepLift\.attribute\(\): .*'bogus'"),
    (lambda m: fc.GradientShap(m).attribute(randn(2, 5)), r"GradientShap\.attribute\(\): .*'baselines'"),
])
def test_bad_calls_name_the_class_and_method(call, match) -> None:
    with pytest.raises(TypeError, match=match):
        call(make_mlp())


def test_held_constructor_arguments_are_read_at_each_call() -> None:
    model = make_mlp()
    x = randn(4, 5)

    def reverse(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # deterministic, not Captum's default
        return torch.where(mask.to(torch.bool), t.flip(0), t)

    fp = fc.FeaturePermutation(model)
    fp.perm_func = reverse
    want = fattr.feature_permutation(model, x, target=0, perm_func=reverse)
    torch.testing.assert_close(fp.attribute(x, target=0), want, rtol=0, atol=0)
    assert fp._current_options() == {"perm_func": reverse}
    assert fc.FeaturePermutation(model)._current_options() == {"perm_func": None}  # Captum's default: fattr's


def test_user_subclasses_keep_captums_interface() -> None:
    class Mine(fc.Saliency):
        def attribute(self, inputs, target=None, abs=True, additional_forward_args=None):  # type: ignore[override]
            return 2 * super().attribute(inputs, target, abs, additional_forward_args)

    model = make_mlp()
    x = randn(3, 5)
    assert list(inspect.signature(Mine.__init__).parameters) == ["self", "forward_func"]
    torch.testing.assert_close(Mine(model).attribute(x, 1), 2 * fattr.saliency(model, x, target=1))


def test_unknown_class_keywords_are_refused() -> None:
    with pytest.raises(TypeError, match="unknown class keywords"):
        class Bad(Attribution, fn=fattr.saliency, init=captum("forward_func"), deltas=True):  # type: ignore[call-arg]
            pass


def test_a_class_written_by_hand_keeps_the_base_constructor() -> None:
    class ByHand(Attribution):
        fn = staticmethod(fattr.layer_activation)
        layer_method = True

        def attribute(self, inputs, additional_forward_args=None):  # type: ignore[override]
            return self._call(inputs, additional_forward_args=additional_forward_args)

    model = make_mlp()
    x = randn(3, 5)
    ours = ByHand(model, model[1]).attribute(x)
    torch.testing.assert_close(ours, fattr.layer_activation(model, model[1], x), rtol=0, atol=0)
    with pytest.raises(NotImplementedError, match="device_ids"):
        ByHand(model, model[1], device_ids=[0])
