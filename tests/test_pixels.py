"""Torch-free resize geometry: "stretch" and "fit" (aspect kept, zero padding at the bottom and right)."""

import numpy as np
import pytest

from grdnet.pixels import content_mask, content_size, resize_array


@pytest.mark.parametrize(
    "height, width, size, expected",
    [
        (500, 1250, (512, 1280), (512, 1280)),  # same aspect ratio: no padding
        (500, 1250, (256, 256), (102, 256)),
        (100, 50, (64, 64), (64, 32)),
        (10, 1000, (64, 64), (1, 64)),  # never below one pixel
    ],
)
def test_fit_keeps_the_aspect_ratio_inside_the_size(height, width, size, expected):
    rows, cols = content_size(height, width, size, "fit")
    assert (rows, cols) == expected and rows <= size[0] and cols <= size[1]
    assert content_size(height, width, size, "stretch") == size


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="stretch"):
        content_size(10, 10, (64, 64), "crop")


def test_fit_array_pads_bottom_right_with_zeros():
    image = np.full((3, 40, 80), 0.5, dtype=np.float32)
    fitted = resize_array(image, (64, 64), "fit")
    assert fitted.shape == (3, 64, 64) and fitted.dtype == np.float32
    np.testing.assert_allclose(fitted[:, :32], 0.5, atol=1e-6)
    assert np.all(fitted[:, 32:] == 0)
    valid = content_mask(40, 80, (64, 64), "fit")
    assert valid.shape == (64, 64) and valid[:32].all() and not valid[32:].any()
    assert content_mask(40, 80, (64, 64), "stretch").all()
    assert resize_array(image, (64, 64)).shape == (3, 64, 64)
