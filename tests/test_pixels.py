"""The one pixel path (torch-free): decoding, channels, resize geometry ("stretch" / "fit"), mask binarisation."""

import numpy as np
import pytest
from PIL import Image

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


def test_fit_array_pads_bottom_right_with_the_image_mirrored():
    """No artificial black edge for a model to see: the padding mirrors the image (repeatedly if it is wider)."""
    image = np.linspace(0, 1, 3 * 40 * 80, dtype=np.float32).reshape(3, 40, 80)
    fitted = resize_array(image, (64, 64), "fit")
    assert fitted.shape == (3, 64, 64) and fitted.dtype == np.float32
    content = fitted[:, :32]
    np.testing.assert_array_equal(fitted[:, 32:64], content[:, ::-1])  # mirrored at the bottom edge
    thin = resize_array(np.random.default_rng(0).random((1, 8, 64), dtype=np.float32), (64, 64), "fit")
    np.testing.assert_array_equal(thin[:, 16:24], thin[:, :8])  # padding 7× the image: mirrored again and again
    valid = content_mask(40, 80, (64, 64), "fit")
    assert valid.shape == (64, 64) and valid[:32].all() and not valid[32:].any()
    assert content_mask(40, 80, (64, 64), "stretch").all()
    assert resize_array(image, (64, 64)).shape == (3, 64, 64)


def _rgb(tmp_path, shape=(40, 50, 3)):
    rgb = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    return rgb, tmp_path / "rgb.png"


def test_arrays_tensors_and_files_get_the_same_pixels(tmp_path):
    """One formula to gray (BT.601 luma) and one resize (Pillow bilinear) whatever the entry point."""
    import torch

    from grdnet.config import RunConfig
    from grdnet.data import read_image
    from grdnet.inference import Predictor

    rgb, path = _rgb(tmp_path)
    cfg = RunConfig().updated({"data.image_size": [64, 64], "data.channels": 1, "model.base_width": 8,
                               "model.max_width": 16, "model.segmenter_width": 8, "model.segmenter_levels": 3})
    from grdnet.models import build_model

    predictor = Predictor(build_model(cfg), cfg, threshold=0.5, device=torch.device("cpu"), bf16=False)
    from_file = read_image(path, 1, (64, 64))
    from_array, _ = predictor.prepare(rgb)
    from_tensor, _ = predictor.prepare(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    from_loader, _ = predictor.load_files([path])
    np.testing.assert_allclose(from_array[0].numpy(), from_file.numpy(), atol=1e-6)
    np.testing.assert_allclose(from_tensor[0].numpy(), from_file.numpy(), atol=1e-6)
    np.testing.assert_allclose(from_loader[0].numpy(), from_file.numpy(), atol=1e-6)
    luma = (rgb.astype(np.float32) / 255) @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(read_image(path, 1)[0].numpy(), luma, atol=1e-6)


def test_training_reads_files_with_the_torch_free_resize(tmp_path):
    from grdnet.data import read_image, read_mask
    from grdnet.pixels import binarize, decode_pixels, resize_mask_array, to_channels

    _, path = _rgb(tmp_path, (37, 53, 3))
    expected = resize_array(to_channels(decode_pixels(path), 3), (64, 48), "fit")
    np.testing.assert_array_equal(read_image(path, 3, (64, 48), "fit").numpy(), expected)
    grey = np.zeros((20, 30), np.uint8)
    grey[4:9, 3:20] = 100
    Image.fromarray(grey).save(tmp_path / "roi.png")
    mask = resize_mask_array(binarize(decode_pixels(tmp_path / "roi.png")), (64, 64), "fit")
    np.testing.assert_array_equal(read_mask(tmp_path / "roi.png", (64, 64), "fit").numpy(), mask)


def test_binarize_is_any_channel_above_zero():
    from grdnet.pixels import binarize

    colour = np.zeros((2, 2, 3), np.float32)
    colour[0, 1, 2] = 1 / 255
    assert binarize(colour).tolist() == [[0.0, 1.0], [0.0, 0.0]]
    assert binarize(np.array([[0.0, 0.4]], np.float32)).tolist() == [[0.0, 1.0]]


def test_nearest_mask_resize_keeps_values_and_matches_pixel_centres():
    from grdnet.pixels import resize_mask_array

    mask = np.zeros((4, 4), np.float32)
    mask[1, 2] = 1
    up = resize_mask_array(mask, (8, 8))
    assert up.shape == (1, 8, 8) and set(np.unique(up)) == {0.0, 1.0} and up[0, 2:4, 4:6].all() and up.sum() == 4
    fitted = resize_mask_array(np.ones((50, 125), np.float32), (64, 128), "fit")
    np.testing.assert_array_equal(fitted[0], content_mask(50, 125, (64, 128), "fit"))
