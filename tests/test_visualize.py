import numpy as np

from grdnet.visualize import heatmap, heatmap_scale, overlay


def test_an_overlay_in_threshold_units_colours_what_is_flagged_and_leaves_normal_pixels_clear():
    """A standardized map (units of the normal spread) with threshold 12: full colour from 12 up, none at or
    below 0, partial between; with the old fixed [0, 1] scale every positive pixel would be saturated."""
    image = np.full((1, 4, 4), 0.5, np.float32)
    score_map = np.array([[-3, 0, 3, 6], [12, 20, 40, 11], [0, 0, 0, 0], [1, 1, 1, 1]], np.float32)
    shown = overlay(image, score_map, vmax=12.0).astype(int)
    base = int(round(0.5 * 255))
    assert (shown[0, :2] == base).all()  # at or below 0: the photo itself
    np.testing.assert_array_equal(shown[1, 0], shown[1, 2])  # everything above the threshold looks the same
    assert np.abs(shown[1, 3] - shown[1, 0]).max() > 0 and np.abs(shown[0, 2] - base).max() > 0  # graded below it
    saturated = overlay(image, score_map).astype(int)
    np.testing.assert_array_equal(saturated[3, 0], saturated[1, 0])  # 1 and 12 indistinguishable on [0, 1]


def test_the_heatmap_scale_is_the_threshold_or_else_the_map_maximum():
    score_map = np.array([[0.0, 0.3], [0.1, 0.2]])
    assert heatmap_scale(0.5, score_map) == 0.5
    assert heatmap_scale(float("nan"), score_map) == 0.3
    assert heatmap_scale(-2.0, np.zeros((2, 2))) == 1e-6
    np.testing.assert_array_equal(heatmap(np.array([[6.0]]), vmax=12.0), heatmap(np.array([[0.5]])))
