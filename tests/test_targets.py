"""The target grammar's selection: one ``gather`` for non-negative per-example targets, indexing
otherwise, the range checked once per call from the target's bounds; against plain indexing."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fattr._src.targets import as_target


@st.composite
def outputs_and_targets(draw):
    n = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    negative = draw(st.booleans())
    rows = [tuple(draw(st.integers(-s if negative else 0, s - 1)) for s in shape) for _ in range(n)]
    as_list = draw(st.booleans())
    target = ([r[0] for r in rows] if len(shape) == 1 else rows) if as_list else torch.tensor(rows)
    seed = draw(st.integers(0, 2 ** 16))
    return torch.randn((n,) + shape, generator=torch.Generator().manual_seed(seed)), rows, target


@given(outputs_and_targets())
def test_selection_matches_indexing(case):
    output, rows, target = case
    want = torch.stack([output[(i,) + r] for i, r in enumerate(rows)])
    got = as_target(target, output.shape[0]).select(output, output.shape[0])
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_tiled_targets_keep_their_bounds_and_check_them():
    tgt = as_target(torch.tensor([0, 4]), 2)
    assert tgt.bounds == ((0, 4),)
    tiled = tgt.tile(3)
    assert tiled.bounds == tgt.bounds and tiled.rows.shape == (6, 1)
    with pytest.raises(ValueError, match=r"target.*range.*\(6, 3\).*values from 0 to 4"):
        tiled.select(torch.zeros(6, 3), 6)
