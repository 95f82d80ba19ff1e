"""Input checks shared through ``errors.check_integer_tensor`` (ids, labels, group ids): every kind of
tensor that is not of an integer dtype is refused, by name, wherever ids are read."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

import fattr
from fattr._src.errors import check_integer_tensor, is_integer_tensor
from lm_models import TinyLM

NOT_INTEGER = [torch.float32, torch.float64, torch.float16, torch.complex64, torch.bool]


def test_integer_tensor_check_takes_integer_dtypes_only():
    for dtype in (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64):
        x = torch.zeros(2, dtype=dtype)
        assert is_integer_tensor(x) and check_integer_tensor("ids", x) is x
    for value in [torch.zeros(2, dtype=d) for d in NOT_INTEGER] + [[0, 1], 3, None]:
        assert not is_integer_tensor(value)
        with pytest.raises(TypeError, match="ids: expected group ids, got"):
            check_integer_tensor("ids", value, "group ids")


@pytest.mark.parametrize("dtype", NOT_INTEGER)
def test_token_attribution_refuses_a_feature_mask_not_of_ids(dtype):
    lm = TinyLM()
    prompt, target = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[5, 6]])
    mask = torch.tensor([[1, 1, 0, 0]]).to(dtype)  # a bool mask was taken as ids 0/1 before
    with pytest.raises(TypeError, match=rf"feature_mask: expected an integer tensor .*{str(dtype)[6:]}"):
        fattr.token_attribution(lm, prompt, target, method="feature_ablation", feature_mask=mask)


def test_token_attribution_refuses_a_0d_bool_baseline():
    lm = TinyLM()
    prompt, target = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[5, 6]])
    with pytest.raises(TypeError, match="baselines: expected an integer tensor of token ids"):  # was token id 1
        fattr.token_attribution(lm, prompt, target, method="feature_ablation", baselines=torch.tensor(True))
    r = fattr.token_attribution(lm, prompt, target, method="feature_ablation", baselines=torch.tensor(1))
    assert torch.equal(r.token_attr, fattr.token_attribution(lm, prompt, target, method="feature_ablation",
                                                             baselines=1).token_attr)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.bool, torch.float32])
def test_dataset_refuses_labels_not_of_ids(tmp_path, dtype):
    pytest.importorskip("zarr")
    model = torch.nn.Linear(5, 3).double()
    data = TensorDataset(torch.randn(8, 5, dtype=torch.float64), (torch.arange(8) % 3).to(dtype))
    with pytest.raises(TypeError, match=rf"target: expected integer labels.*{str(dtype)[6:]}"):
        fattr.attribute_dataset(fattr.saliency, model, data, tmp_path / "s", target="label", progress=False,
                                batch_size=4)
