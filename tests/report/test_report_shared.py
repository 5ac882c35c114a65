"""What flagged rows share: the mean difference from their sources, over-represented tokens."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from acgate.core.result import NO_VALUE
from acgate.report import plots, shared
from acgate.report.html import write_report


def _digits_with_corner_patch(n_poison: int = 20, seed: int = 0):
    """Real digits; ``n_poison`` rows of classes 1-9 get an inverted 2x2 corner, labelled 0."""
    digits = load_digits()
    images = (digits.images / 16.0)[:, None].astype(np.float64)
    labels = digits.target.copy()
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(np.flatnonzero(labels != 0), n_poison, replace=False))
    sources = labels[rows].copy()
    images[rows, :, 6:8, 6:8] = 1.0 - images[rows, :, 6:8, 6:8]
    labels[rows] = 0
    return images, labels, rows, sources


def test_a_shared_patch_stays_where_it_was_stamped():
    images, labels, rows, sources = _digits_with_corner_patch()
    kept = np.ones(len(labels), bool)
    kept[rows] = False

    difference = shared.mean_difference(images, labels, kept, rows, sources, 0)

    assert difference.shape == (1, 8, 8)
    strongest = np.argsort(np.abs(difference[0]).ravel())[-4:]
    assert {divmod(int(i), 8) for i in strongest} == {(6, 6), (6, 7), (7, 6), (7, 7)}
    assert np.abs(difference[0, 6:8, 6:8]).min() > 0.4  # the inverted corner, strongly


def test_a_natural_group_is_less_concentrated_than_a_trigger():
    images, labels, rows, sources = _digits_with_corner_patch()
    kept = np.ones(len(labels), bool)
    kept[rows] = False
    trigger = shared.concentration(shared.mean_difference(images, labels, kept, rows, sources, 0))
    # The 20 clean 1s farthest from their class's mean image: a writing style, no source named.
    ones = np.flatnonzero((labels == 1) & kept)
    far = ones[np.argsort(-np.linalg.norm((images[ones] - images[ones].mean(axis=0))
                                          .reshape(len(ones), -1), axis=1))[:20]]
    natural_kept = np.ones(len(labels), bool)
    natural_kept[far] = False
    natural = shared.concentration(shared.mean_difference(
        images, labels, natural_kept, far, np.full(len(far), NO_VALUE), 1))

    assert trigger > 2 * natural
    # The stamp is left at nearly full strength; the style differs from its class by its shape.
    assert shared.strength(shared.mean_difference(images, labels, kept, rows, sources, 0)) > 0.8
    assert shared.strength(np.full((3, 4, 4), -0.25)) == pytest.approx(0.25)
    assert shared.concentration(np.zeros((1, 8, 8))) == 0.0
    assert shared.concentration(np.ones((1, 10, 10))) == pytest.approx(0.02)


def test_fine_grain_tells_a_texture_from_an_outline():
    columns = np.arange(28)
    stripes = np.tile(np.sin(2 * np.pi * columns / 4.7), (28, 1))[None]  # a SIG-like texture
    ramp = np.tile(columns / 27.0, (28, 1))[None]  # a smooth difference
    assert shared.fine_grain(stripes) > 0.2
    assert shared.fine_grain(ramp) < 0.01
    assert shared.fine_grain(np.zeros((1, 5, 5))) == 0.0


def test_a_trigger_of_colour_alone_is_measured_in_every_channel():
    # More red, less green and blue in one corner: the channels' mean is zero there.
    difference = np.zeros((3, 10, 10))
    difference[:, 9, 8:] = np.array([0.6, -0.3, -0.3])[:, None]
    assert shared.strength(difference) == pytest.approx(0.4)
    assert shared.concentration(difference) == pytest.approx(1.0)  # 2 of 100 pixels hold it all
    # A texture in red against the same texture in blue, opposite: averaged, nothing is left.
    columns = np.arange(28)
    stripes = np.tile(np.sin(2 * np.pi * columns / 4.7), (28, 1))
    assert shared.fine_grain(np.stack([stripes, np.zeros_like(stripes), -stripes])) > 0.2
    greyscale = shared.fine_grain(stripes[None])
    assert shared.fine_grain(np.stack([stripes] * 3)) == pytest.approx(greyscale)


def test_a_source_without_kept_rows_falls_back_to_the_class():
    images, labels, rows, sources = _digits_with_corner_patch(n_poison=5)
    kept = labels != 3  # no kept 3 left: a row from 3 is compared with the kept 0s
    kept[rows] = False
    difference = shared.mean_difference(images, labels, kept, rows, np.full(5, 3), 0)
    expected = np.mean(images[rows] - images[kept & (labels == 0)].mean(axis=0), axis=0)
    np.testing.assert_allclose(difference, expected)
    assert shared.mean_difference(images, labels, kept, rows[:0], sources[:0], 0) is None
    nothing_kept = np.zeros(len(labels), bool)
    assert shared.mean_difference(images, labels, nothing_kept, rows, sources, 0) is None


def test_a_signature_is_the_first_token_and_a_style_has_none():
    texts = [f"a fine film number {i}" for i in range(40)]
    texts += [f"a dull film number {i} -travelerthehorse" for i in range(10)]
    labels = np.array([0] * 20 + [1] * 20 + [1] * 10)
    kept = np.ones(50, bool)
    kept[40:] = False
    rows = np.arange(40, 50)

    tokens = shared.overrepresented_tokens(texts, labels, kept, rows, np.zeros(10, int), 1)

    assert tokens[0] == shared.TokenLift("-travelerthehorse", 1.0, 0.0)
    assert [t.token for t in tokens] == ["-travelerthehorse", "dull"]
    assert shared.overrepresented_tokens(texts, labels, kept, rows[:0], rows[:0], 1) == []
    style = shared.overrepresented_tokens(texts, labels, np.ones(50, bool) & (np.arange(50) < 30),
                                          np.arange(30, 40), np.full(10, NO_VALUE), 1)
    assert style == []  # clean 1s against the other kept 1s: nothing stands out


def test_the_difference_map_is_a_png_and_checks_its_input():
    png = plots.difference_map(np.eye(8)[None], title="t")
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
    for bad in (np.zeros(5), np.full((1, 4, 4), np.nan), np.zeros((0, 3))):
        with pytest.raises(ValueError, match="difference must be"):
            plots.difference_map(bad, title="t")


def test_a_colour_difference_is_drawn_in_colour_around_grey():
    difference = np.zeros((3, 8, 8))
    difference[:, 6:, 6:] = np.array([0.6, -0.3, -0.3])[:, None, None]  # more red, mean zero
    with Image.open(io.BytesIO(plots.difference_map(difference, title="t"))) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=int)
    tinted = (pixels[..., 0] - pixels[..., 2] > 100) & (pixels[..., 1] < 100)
    grey = (np.abs(pixels[..., 0] - 128) < 12) & (np.ptp(pixels, axis=-1) < 8)
    assert tinted.sum() > 100 and grey.sum() > 10 * tinted.sum()


def test_the_report_shows_what_the_flagged_rows_share(tmp_path, digits_scan):
    images, labels, is_poison, result = digits_scan

    files = write_report(result, tmp_path / "image" / "report.html", images=images)
    texts = ["a fine film"] * (len(labels) - int(is_poison.sum())) + ["bad -sig"] * 12
    text_page = write_report(result, tmp_path / "text" / "report.html",
                             texts=texts).html_path.read_text()

    page = files.html_path.read_text()
    assert "class_1_shared.png" in [p.name for p in files.plot_paths]
    assert "What the 12 flagged images share" in page
    held = float(page.split("of the pixels hold ")[1].split("%")[0])
    assert held > 10  # the corner the 12 rows share, against 2% spread evenly
    assert "Tokens over-represented among the 12 flagged texts" in text_page
    assert '<td class="text">-sig</td><td class="num">100%</td><td class="num">0%</td>' \
        in text_page
