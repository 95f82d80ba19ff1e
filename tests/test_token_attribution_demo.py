"""The demo's language-model part (fattr.demo.lm): the task, a short training run, the report section."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("matplotlib")

from fattr.demo import lm  # noqa: E402


def test_task_answers_are_the_tokens_at_the_asked_positions():
    prompts, answers, where = lm.make_batch(50, torch.Generator().manual_seed(0))
    assert prompts.shape == (50, lm.T_IN) and answers.shape == (50, lm.N_QUERIES)
    asked = prompts[:, lm.N_ITEMS + 1:lm.N_ITEMS + 1 + lm.N_QUERIES] - lm.N_VALUES
    assert torch.equal(asked, where)
    assert torch.equal(prompts.gather(1, where), answers)


def test_quick_run_writes_the_picture_and_a_section(tmp_path):
    section = lm.run(tmp_path, quick=True, seed=0, log=lambda m: None)
    data = (tmp_path / "lm.png").read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 5_000
    assert "## Language model: positional recall" in section
    for method in lm.METHODS:
        assert f'`token_attribution(method="{method}")`' in section
