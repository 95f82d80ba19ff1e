"""fattr.viz: pixels of rendered PNGs, Captum's normalisation, text HTML, argument errors, lazy imports."""
from __future__ import annotations

import doctest
import io
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
import matplotlib.image  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import fattr.viz  # noqa: E402
from fattr._src.viz import arrays  # noqa: E402

# ---------------------------------------------------------------- rendering helpers


def render(attributions, original=None, **kwargs) -> np.ndarray:
    """Draw on axes that fill a 100 x 100 px figure, save as PNG (Agg), read back RGB in [0, 1]."""
    fig = Figure(figsize=(1, 1), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    assert fattr.viz.image(attributions, original, ax=ax, **kwargs) is ax
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    pixels = matplotlib.image.imread(buffer, format="png")
    assert pixels.shape[:2] == (100, 100)
    return pixels[..., :3]


def cell(pixels: np.ndarray, i: int, j: int, n: int) -> np.ndarray:
    """RGB at the centre of cell (i, j) of an n x n image."""
    size = pixels.shape[0]
    return pixels[int((i + 0.5) * size / n), int((j + 0.5) * size / n)]


def greenish(rgb) -> bool:
    r, g, b = rgb
    return g > r + 0.15 and g > b + 0.15


def reddish(rgb) -> bool:
    r, g, b = rgb
    return r > g + 0.15 and r > b + 0.15


def neutral(rgb) -> bool:
    return float(np.ptp(rgb)) < 0.03


SIGNED = torch.tensor([[1.0, -1.0], [0.0, 0.5]])

# ---------------------------------------------------------------- colours


def test_heat_map_diverging_colours_centred_at_zero():
    px = render(SIGNED, method="heat_map", sign="all")
    assert greenish(cell(px, 0, 0, 2))
    assert reddish(cell(px, 0, 1, 2))
    assert neutral(cell(px, 1, 0, 2)) and cell(px, 1, 0, 2).min() > 0.95  # zero is white
    # half the attribution: lighter green than the full one
    assert greenish(cell(px, 1, 1, 2)) and cell(px, 1, 1, 2).sum() > cell(px, 0, 0, 2).sum() + 0.3


@pytest.mark.parametrize("sign,kept,dropped,test", [
    ("positive", (0, 0), (0, 1), greenish),
    ("negative", (0, 1), (0, 0), reddish),
])
def test_one_sign_shows_only_that_sign(sign, kept, dropped, test):
    px = render(SIGNED, method="heat_map", sign=sign)
    assert test(cell(px, *kept, 2))
    assert cell(px, *dropped, 2).min() > 0.9  # the palest colour of the one-sided map


def test_absolute_value_colours_both_signs_alike():
    px = render(SIGNED, method="heat_map", sign="absolute_value")
    np.testing.assert_allclose(cell(px, 0, 0, 2), cell(px, 0, 1, 2), atol=1 / 255)
    assert not neutral(cell(px, 0, 0, 2))


def test_blended_heat_map_tints_the_grey_image():
    original = torch.full((2, 2), 0.5)
    px = render(SIGNED, original, method="blended_heat_map", sign="all", alpha=0.5)
    assert greenish(cell(px, 0, 0, 2))
    assert reddish(cell(px, 0, 1, 2))
    zero = cell(px, 1, 0, 2)
    assert neutral(zero) and 0.6 < zero.mean() < 0.9  # white at alpha 0.5 over mid grey


def test_masked_image_and_alpha_scaling():
    attr = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    white = torch.ones(3, 2, 2)
    px = render(attr, white, method="masked_image", sign="positive")
    assert cell(px, 0, 0, 2).min() > 0.95 and cell(px, 0, 1, 2).max() < 0.05  # image kept / masked out
    black = torch.zeros(3, 2, 2)
    px = render(attr, black, method="alpha_scaling", sign="absolute_value")
    assert cell(px, 0, 0, 2).max() < 0.05  # opaque black pixel
    assert cell(px, 0, 1, 2).min() > 0.95  # transparent: the white figure behind


def test_outlier_clipping():
    attr = torch.ones(20, 20)
    attr[0, 0] = 5.0  # 5 / 404 = 1.2% of the mass: an outlier at outlier_perc=2
    px = render(attr, method="heat_map", sign="all", outlier_perc=2)
    np.testing.assert_allclose(cell(px, 10, 10, 20), cell(px, 0, 0, 20), atol=2 / 255)  # both full green
    px0 = render(attr, method="heat_map", sign="all", outlier_perc=0)
    assert cell(px0, 10, 10, 20).sum() > cell(px0, 0, 0, 20).sum() + 0.5  # unclipped: the rest is pale


def test_all_zero_attributions_are_white():
    px = render(torch.zeros(3, 3), method="heat_map")
    assert px[10:90, 10:90].min() > 0.95


# ---------------------------------------------------------------- normalisation and layouts


@pytest.mark.parametrize("sign", fattr.viz.SIGNS)
@pytest.mark.parametrize("outlier_perc", [0, 2, 10, 50])
def test_normalize_matches_captum(sign, outlier_perc):
    visualization = pytest.importorskip("captum.attr._utils.visualization")
    attr = np.random.default_rng(outlier_perc).standard_normal((7, 9)) ** 3
    ours = arrays.normalize(attr, sign, outlier_perc)
    theirs = visualization._normalize_attr(attr, sign, outlier_perc)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_threshold_is_the_mass_quantile():
    values = np.array([1.0, 1.0, 1.0, 7.0])  # cumulative 1, 2, 3, 10
    assert arrays.threshold(values, 30) == 1.0
    assert arrays.threshold(values, 31) == 7.0
    assert arrays.threshold(np.zeros(4), 98) == 0.0


def test_layouts_channels_first_last_and_batch_of_one():
    chw = torch.randn(3, 5, 6, generator=torch.Generator().manual_seed(0))
    expected = chw.permute(1, 2, 0).double().numpy()
    np.testing.assert_array_equal(arrays.as_hwc(chw, "a"), expected)
    np.testing.assert_array_equal(arrays.as_hwc(chw.unsqueeze(0), "a"), expected)
    np.testing.assert_array_equal(arrays.as_hwc(expected, "a"), expected)  # numpy: channels-last
    np.testing.assert_array_equal(arrays.as_hwc(chw.permute(1, 2, 0), "a"), expected)  # (5, 6, 3) tensor
    many = torch.randn(16, 5, 6)  # a layer's 16 channels: a tensor is channels-first
    assert arrays.as_hwc(many, "a").shape == (5, 6, 16)
    assert arrays.as_hwc([[1, 2], [3, 4]], "a").shape == (2, 2, 1)
    # the same picture from a channels-first tensor and a channels-last array
    np.testing.assert_allclose(render(chw, method="heat_map"), render(expected, method="heat_map"))


def test_original_value_ranges():
    unit = np.linspace(0, 1, 16).reshape(4, 4)
    np.testing.assert_allclose(arrays.display_image(unit, "o")[..., 0], unit)
    np.testing.assert_allclose(arrays.display_image(unit * 255, "o")[..., 0], unit)
    standardised = arrays.display_image(unit * 4 - 2, "o")
    assert standardised.min() == 0.0 and standardised.max() == 1.0
    assert arrays.display_image(torch.rand(3, 4, 4), "o").shape == (4, 4, 3)


def test_image_makes_its_own_figure_with_title():
    ax = fattr.viz.image(SIGNED, method="heat_map", title="hello")
    assert isinstance(ax, Axes) and ax.get_title() == "hello"
    ax.figure.savefig(io.BytesIO(), format="png")


# ---------------------------------------------------------------- grid


def test_image_grid_layout_and_titles():
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    attrs = {"saliency": torch.randn(3, 1, 4, 4), "integrated_gradients": torch.randn(3, 4, 4)}
    fig = fattr.viz.image_grid(attrs, x, row_titles=["a", "b", "c"], title="T")
    axes = fig.axes[:9]
    assert len(fig.axes) == 10  # 3 x 3 cells and the colour bar
    assert [ax.get_title() for ax in axes[:3]] == ["image", "saliency", "integrated\ngradients"]
    assert [axes[3 * i].get_ylabel() for i in range(3)] == ["a", "b", "c"]
    fig.savefig(io.BytesIO(), format="png")
    flipped = fattr.viz.image_grid(attrs, x, transpose=True, show_original=False, colorbar=False,
                                   method="blended_heat_map")
    assert len(flipped.axes) == 6 and flipped.axes[3].get_ylabel() == "integrated\ngradients"


def test_image_grid_cells_match_image():
    attr = SIGNED.expand(2, 1, 2, 2)
    fig = fattr.viz.image_grid(attr, show_original=False, colorbar=False)
    one = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(np.asarray(one), arrays.normalize(SIGNED.numpy().astype(float), "all", 2))


def test_image_grid_errors():
    x = torch.rand(3, 1, 4, 4)
    with pytest.raises(ValueError, match=r"attributions\['b'\]: expected 3 examples"):
        fattr.viz.image_grid({"a": torch.rand(3, 4, 4), "b": torch.rand(2, 4, 4)}, x)
    with pytest.raises(ValueError, match="originals: expected 3 images"):
        fattr.viz.image_grid({"a": torch.rand(3, 4, 4)}, x[:2])
    with pytest.raises(ValueError, match="originals: expected the images when show_original=True"):
        fattr.viz.image_grid({"a": torch.rand(3, 4, 4)})
    with pytest.raises(ValueError, match="row_titles: expected a sequence of 3 labels"):
        fattr.viz.image_grid({"a": torch.rand(3, 4, 4)}, x, row_titles=["a"])
    with pytest.raises(ValueError, match="For one image use fattr.viz.image"):
        fattr.viz.image_grid({"a": torch.rand(4, 4)}, show_original=False)
    with pytest.raises(TypeError, match="attributions: expected a non-empty"):
        fattr.viz.image_grid({}, x)
    with pytest.raises(ValueError, match="method: expected one of"):
        fattr.viz.image_grid({"a": torch.rand(3, 4, 4)}, x, method="bogus")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("kwargs,kind,pattern", [
    (dict(method="bogus"), ValueError, r"method: expected one of 'heat_map', 'blended_heat_map'"),
    (dict(sign="both"), ValueError, r"sign: expected one of 'all', 'positive'"),
    (dict(method="masked_image", sign="all"), ValueError, r"sign: expected 'positive', 'negative'"),
    (dict(method="alpha_scaling"), ValueError, r"sign: expected"),
    (dict(outlier_perc=100), ValueError, r"outlier_perc: expected a number in \[0, 100\)"),
    (dict(outlier_perc=-1), ValueError, r"outlier_perc"),
    (dict(outlier_perc="2"), TypeError, r"outlier_perc"),
    (dict(alpha=1.5), ValueError, r"alpha: expected a number in \[0, 1\]"),
    (dict(ax="axes"), TypeError, r"ax: expected None or a matplotlib Axes"),
    (dict(cmap="no_such_map"), ValueError, r"cmap: expected a matplotlib colormap name"),
    (dict(cmap=3), TypeError, r"cmap"),
])
def test_bad_arguments(kwargs, kind, pattern):
    with pytest.raises(kind, match=pattern):
        fattr.viz.image(torch.randn(4, 4), torch.rand(4, 4), **kwargs)


def test_bad_shapes_and_values():
    with pytest.raises(ValueError, match=r"attributions: expected one image.*shape \(2, 3, 4, 4\).*image_grid"):
        fattr.viz.image(torch.randn(2, 3, 4, 4), method="heat_map")
    with pytest.raises(ValueError, match="attributions: expected one image"):
        fattr.viz.image(torch.randn(4), method="heat_map")
    with pytest.raises(ValueError, match="original: expected an image of height x width 4 x 4.*got 5 x 4"):
        fattr.viz.image(torch.randn(4, 4), torch.rand(5, 4))
    with pytest.raises(ValueError, match="original: expected an image for method='blended_heat_map'"):
        fattr.viz.image(torch.randn(4, 4))
    with pytest.raises(ValueError, match="original: expected an image with 1 or 3 channels"):
        fattr.viz.image(torch.randn(5, 5), np.random.rand(5, 5, 2))
    with pytest.raises(ValueError, match="attributions: expected finite values"):
        fattr.viz.image(torch.tensor([[1.0, float("nan")], [0.0, 0.0]]), method="heat_map")
    with pytest.raises(TypeError, match="attributions: expected a tensor, a numpy array"):
        fattr.viz.image("not an image", method="heat_map")


# ---------------------------------------------------------------- text


def _backgrounds(html: str):
    return [tuple(map(int, m)) for m in re.findall(r"background-color: hsl\((\d+), (\d+)%, (\d+)%\)", html)]


def test_text_colours_tokens_by_sign():
    html = fattr.viz.text(["good", "bad", "the", "ok"], torch.tensor([2.0, -2.0, 0.0, 1.0]))
    good, bad, the, ok = _backgrounds(html)
    assert good == (120, 75, 50)  # green, full strength
    assert bad[0] == 0 and bad[2] < 100  # red
    assert the[2] == 100  # zero: white
    assert ok[0] == 120 and good[2] < ok[2] < 100  # weaker green
    assert html.startswith("<div") and html.endswith("</div>") and "<script" not in html
    assert 'title="+2"' in html


def test_text_escapes_and_scales():
    html = fattr.viz.text(["<script>", "&"], [0.5, 0.5], scale=1.0)
    assert "&lt;script&gt;" in html and "&amp;" in html
    assert _backgrounds(html)[0] == (120, 75, 75)  # half strength at scale 1


@pytest.mark.parametrize("tokens,attributions,kwargs,kind,pattern", [
    (["a", "b"], [1.0], {}, ValueError, r"attributions: expected one number per token: shape \(2,\)"),
    (["a", "b"], np.ones((2, 3)), {}, ValueError, "Sum embedding attributions"),
    ("ab", [1.0, 2.0], {}, TypeError, "tokens: expected a list of strings"),
    (["a", 2], [1.0, 2.0], {}, TypeError, r"tokens\[1\]: expected a string"),
    (["a"], [float("inf")], {}, ValueError, "attributions: expected finite values"),
    (["a"], [1.0], {"scale": 0}, ValueError, "scale: expected None or a positive number"),
    (["a"], [1.0], {"scale": "1"}, TypeError, "scale"),
])
def test_text_bad_arguments(tokens, attributions, kwargs, kind, pattern):
    with pytest.raises(kind, match=pattern):
        fattr.viz.text(tokens, attributions, **kwargs)


# ---------------------------------------------------------------- docs and imports


def test_docstring_examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    attempted = 0
    for name in ("image", "image_grid", "text"):
        for test in finder.find(getattr(fattr.viz, name), name, globs={}):
            runner.run(test)
            attempted += len(test.examples)
    assert attempted >= 9 and runner.failures == 0


def test_importing_fattr_and_viz_imports_no_optional_dependency():
    code = ("import sys, fattr, fattr.viz; "
            "print([m for m in ('matplotlib', 'sklearn', 'captum') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_fattr_viz_is_reachable_without_importing_it():
    code = ("import sys, fattr; assert 'fattr.viz' not in sys.modules; "
            "print(fattr.viz.text(['a'], [1.0])[:1], 'fattr.viz' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["<", "True", "False"]
