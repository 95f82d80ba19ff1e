"""fattr.viz.token_matrix and TokenAttribution.to_html: pixels, labels, HTML, errors, doctests."""
from __future__ import annotations

import doctest
import io

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
import matplotlib.image  # noqa: E402

import fattr  # noqa: E402
import fattr.viz  # noqa: E402
from lm_models import TinyLM  # noqa: E402


def result():
    lm = TinyLM()
    return fattr.token_attribution(lm, torch.tensor([[1, 2, 3], [4, 5, 6]]), torch.tensor([[7, 8], [9, 10]]),
                                   method="gradient_x_activation")


def test_matrix_picture_is_centred_at_zero():
    attr = torch.tensor([[[1.0, -1.0, 0.0]]])
    ax = fattr.viz.token_matrix(attr, ["a", "b", "c"], ["x"])
    buffer = io.BytesIO()
    ax.figure.savefig(buffer, format="png", dpi=40)
    buffer.seek(0)
    assert matplotlib.image.imread(buffer).shape[2] in (3, 4)
    image = ax.images[0]
    assert image.get_clim() == (-1.0, 1.0)
    rgba = image.cmap(image.norm(np.array([1.0, -1.0, 0.0])))
    assert rgba[0][1] > rgba[0][0]  # positive: green
    assert rgba[1][0] > rgba[1][1]  # negative: red
    assert np.allclose(rgba[2][:3], 1.0, atol=0.01)  # zero: white
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x"]


def test_html_has_a_cell_per_pair_and_escapes():
    r = result()
    page = r.to_html(["<a>", "b", "c"], ["x", "y"], example=1)
    assert page.count("<td") == 6 and "&lt;a&gt;" in page
    values = r.token_attr[1].detach()
    assert f'title="{float(values[0, 0]):+.4g}"' in page


def test_errors():
    r = result()
    with pytest.raises(ValueError, match="tokens_in: expected 3 tokens"):
        fattr.viz.token_matrix(r, ["a"], ["x", "y"])
    with pytest.raises(ValueError, match="example: expected an index into the batch of 2"):
        r.to_html(["a", "b", "c"], ["x", "y"], example=2)
    with pytest.raises(TypeError, match="tokens_out: expected a list of strings"):
        fattr.viz.token_matrix(r, ["a", "b", "c"], "xy")


def test_docstring_example():
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    attempted = 0
    for test in finder.find(fattr.viz.token_matrix, "token_matrix", globs={}):
        runner.run(test)
        attempted += len(test.examples)
    assert attempted >= 3 and runner.failures == 0
