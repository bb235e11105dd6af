"""ROC/PR figures of the report."""

import io

import numpy as np
from PIL import Image

from grdnet.reports import curve_pngs


def pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    image.verify()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def assert_not_blank(array):
    assert array.std() > 10
    assert len(np.unique(array.reshape(-1, 3), axis=0)) > 20


def text_in_the_middle(array) -> int:
    """Near-black pixels in the middle of the plot area, where only the "undefined" note is black (the curves
    are blue, the chance line grey, labels and ticks lie at the borders)."""
    h, w, _ = array.shape
    middle = array[int(0.35 * h):int(0.65 * h), int(0.25 * w):int(0.85 * w)]
    return int((middle.max(-1) < 80).sum())


def test_roc_and_pr_curves_show_the_data():
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    good = curve_pngs(scores, np.array([0, 0, 0, 1, 1, 1]), threshold=0.5)
    bad = curve_pngs(scores, np.array([1, 1, 1, 0, 0, 0]), threshold=0.5)
    for name in ("roc", "pr"):
        assert_not_blank(pixels(good[name]))
        assert not np.array_equal(pixels(good[name]), pixels(bad[name]))
    undefined = curve_pngs(scores, np.zeros(6, dtype=int), threshold=0.5)
    curve_blue = np.array([31, 119, 180])  # matplotlib's tab:blue, the curves' colour
    for name in ("roc", "pr"):
        drawn = (np.abs(pixels(good[name]) - curve_blue).sum(-1) < 30).sum()
        assert drawn > 50, name
        assert (np.abs(pixels(undefined[name]) - curve_blue).sum(-1) < 30).sum() == 0, f"{name} drew a curve of one class"
        assert text_in_the_middle(pixels(undefined[name])) > 100, f"{name}: no 'undefined' note"
        assert text_in_the_middle(pixels(good[name])) == 0, f"{name}: a note over a defined curve"
