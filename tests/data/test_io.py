"""Reading every image mode, masks, resizing and read errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from grdnet.data.io import (
    UnreadableImageError,
    is_image_file,
    probe_image,
    read_image,
    read_image_with_valid,
    read_mask,
    resize_image,
    resize_mask,
)
from grdnet.errors import DataError


def _save(tmp_path, name, image):
    path = tmp_path / name
    image.save(path)
    return path


def test_gray_and_channel_replication(tmp_path):
    pixels = np.array([[0, 51], [204, 255]], np.uint8)
    path = _save(tmp_path, "g.png", Image.fromarray(pixels, "L"))
    gray = read_image(path, 1)
    assert gray.shape == (1, 2, 2) and gray.dtype == torch.float32
    assert torch.allclose(gray[0], torch.tensor([[0.0, 0.2], [0.8, 1.0]]))
    rgb = read_image(path, 3)
    assert rgb.shape == (3, 2, 2)
    assert torch.equal(rgb[0], rgb[1]) and torch.equal(rgb[1], rgb[2]) and torch.equal(rgb[0], gray[0])


def test_rgb_and_luminance(tmp_path):
    pixels = np.zeros((2, 2, 3), np.uint8)
    pixels[0, 0] = (255, 0, 0)
    pixels[1, 1] = (0, 255, 0)
    path = _save(tmp_path, "c.png", Image.fromarray(pixels, "RGB"))
    rgb = read_image(path, 3)
    assert rgb.shape == (3, 2, 2) and rgb[0, 0, 0] == 1 and rgb[1, 1, 1] == 1 and rgb[2].sum() == 0
    gray = read_image(path, 1)
    assert gray.shape == (1, 2, 2)
    assert gray[0, 0, 0] == pytest.approx(0.299) and gray[0, 1, 1] == pytest.approx(0.587)


def test_rgba_drops_alpha(tmp_path):
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[..., 2] = 255
    pixels[..., 3] = 0  # fully transparent: the colour is kept
    image = read_image(_save(tmp_path, "a.png", Image.fromarray(pixels, "RGBA")), 3)
    assert image.shape == (3, 2, 2) and torch.all(image[2] == 1) and torch.all(image[:2] == 0)


def test_palette(tmp_path):
    palette_image = Image.new("P", (3, 2))
    palette_image.putpalette([0, 0, 0, 255, 255, 255, 255, 0, 0] + [0] * (256 * 3 - 9))
    palette_image.putdata([0, 1, 2, 2, 1, 0])
    image = read_image(_save(tmp_path, "p.png", palette_image), 3)
    assert image.shape == (3, 2, 3)
    assert image[:, 0, 1].tolist() == [1, 1, 1] and image[:, 0, 2].tolist() == [1, 0, 0]
    assert read_image(tmp_path / "p.png", 1).shape == (1, 2, 3)


def test_sixteen_bit_png_scaled_by_65535(tmp_path):
    pixels = np.array([[0, 32768], [65535, 1000]], np.uint16)
    path = _save(tmp_path, "h.png", Image.fromarray(pixels))
    assert Image.open(path).mode.startswith("I")
    image = read_image(path, 1)
    assert image[0, 0, 0] == 0 and image[0, 1, 0] == 1
    assert image[0, 0, 1] == pytest.approx(32768 / 65535)
    assert read_image(path, 3).shape == (3, 2, 2)


def test_thirty_two_bit_int_tiff(tmp_path):
    pixels = np.array([[0, 65535], [70000, 16384]], np.int32)
    path = _save(tmp_path, "i.tif", Image.fromarray(pixels, "I"))
    image = read_image(path, 1)
    assert image.tolist() == [[[0.0, 1.0], [1.0, pytest.approx(16384 / 65535)]]]


def test_one_bit(tmp_path):
    bits = Image.new("1", (4, 2))
    bits.putpixel((1, 0), 1)
    image = read_image(_save(tmp_path, "b.png", bits), 1)
    assert image.shape == (1, 2, 4) and image.sum() == 1 and image[0, 0, 1] == 1


def test_jpeg_and_bmp(tmp_path):
    pixels = np.full((8, 8, 3), 128, np.uint8)
    for name in ("x.jpg", "x.bmp", "x.webp", "x.tiff"):
        image = read_image(_save(tmp_path, name, Image.fromarray(pixels)), 3)
        assert image.shape == (3, 8, 8)
        assert torch.allclose(image, torch.full_like(image, 128 / 255), atol=0.02)


def test_read_mask_any_nonzero_is_one(tmp_path):
    gray = _save(tmp_path, "m.png", Image.fromarray(np.array([[0, 1], [128, 255]], np.uint8)))
    assert read_mask(gray).tolist() == [[[0.0, 1.0], [1.0, 1.0]]]
    colour = np.zeros((1, 3, 3), np.uint8)
    colour[0, 1, 2] = 7
    mask = read_mask(_save(tmp_path, "m_rgb.png", Image.fromarray(colour)))
    assert mask.shape == (1, 1, 3) and mask.tolist() == [[[0.0, 1.0, 0.0]]]
    bits = Image.new("1", (2, 1))
    bits.putpixel((0, 0), 1)
    assert read_mask(_save(tmp_path, "m1.png", bits)).tolist() == [[[1.0, 0.0]]]


def test_resize_image_bilinear_and_mask_nearest(tmp_path):
    path = _save(tmp_path, "r.png", Image.fromarray(np.tile(np.arange(0, 256, 8, dtype=np.uint8), (20, 1))))
    image = read_image(path, 3, size=(64, 48))
    assert image.shape == (3, 64, 48) and 0 <= image.min() and image.max() <= 1
    mask_pixels = np.zeros((20, 32), np.uint8)
    mask_pixels[5:15, 8:24] = 255
    mask = read_mask(_save(tmp_path, "rm.png", Image.fromarray(mask_pixels)), size=(40, 64))
    assert mask.shape == (1, 40, 64)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert mask.sum() == pytest.approx(0.25 * 40 * 64, rel=0.1)


def test_resize_is_identity_at_same_size():
    image = torch.rand(3, 8, 8)
    assert resize_image(image, (8, 8)) is image
    down = resize_image(torch.ones(1, 32, 32), (8, 8))
    assert down.shape == (1, 8, 8) and torch.allclose(down, torch.ones_like(down))
    assert resize_mask(torch.ones(1, 4, 4), (8, 8)).shape == (1, 8, 8)


def test_fit_keeps_aspect_and_pads_images_and_masks_with_zeros(tmp_path):
    path = _save(tmp_path, "wide.png", Image.fromarray(np.full((50, 125), 200, np.uint8)))  # 50 × 125 (H × W)
    image, valid = read_image_with_valid(path, 1, (64, 128), "fit")
    assert image.shape == (1, 64, 128) and valid.shape == (1, 64, 128)
    assert torch.allclose(image[:, :51], torch.full((1, 51, 128), 200 / 255), atol=1e-3)  # 50 · 128/125 = 51.2 rows
    assert torch.allclose(image[:, 51:], torch.full((1, 13, 128), 200 / 255), atol=1e-3)  # padding mirrors it
    assert torch.all(valid[:, :51] == 1) and torch.all(valid[:, 51:] == 0)
    mask = resize_mask(torch.ones(1, 50, 125), (64, 128), "fit")
    assert torch.equal(mask, valid)
    stretched, everywhere = read_image_with_valid(path, 1, (64, 128))
    assert torch.all(stretched > 0.7) and torch.all(everywhere == 1)
    tall = resize_image(torch.ones(3, 80, 40), (64, 64), "fit")
    assert torch.allclose(tall, torch.ones(3, 64, 64))  # content and its mirror image


def test_truncated_and_missing_files_raise_data_error(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = _save(tmp_path, "t.png", Image.fromarray(pixels))
    path.write_bytes(path.read_bytes()[:2000])
    assert probe_image(path, check_truncation=False) == (64, 64)
    with pytest.raises(UnreadableImageError, match=r"t\.png: cannot read image") as caught:
        read_image(path, 3)
    assert isinstance(caught.value, DataError) and caught.value.path == path
    with pytest.raises(DataError, match="t.png"):
        probe_image(path)
    with pytest.raises(DataError, match=r"nothere\.png: cannot read image \(file not found\)"):
        read_mask(tmp_path / "nothere.png")
    (tmp_path / "text.png").write_text("not a png")
    with pytest.raises(DataError, match="text.png"):
        read_image(tmp_path / "text.png", 1)


def test_is_image_file(tmp_path):
    assert is_image_file(tmp_path / "a.PNG") and is_image_file(tmp_path / "b.JpEg")
    assert not is_image_file(tmp_path / "notes.txt")
    assert not is_image_file(tmp_path / "._a.png")
    assert not is_image_file(tmp_path / "Thumbs.db")


def test_truncation_check_reads_end_markers_not_pixels(tmp_path, monkeypatch):
    pixels = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    png, jpg, bmp = (_save(tmp_path, name, Image.fromarray(pixels)) for name in ("a.png", "a.jpg", "a.bmp"))
    cut_jpg = tmp_path / "cut.jpg"
    cut_jpg.write_bytes(jpg.read_bytes()[:-200])
    assert probe_image(bmp) == (48, 64)  # no end marker to look for: decoded
    with pytest.raises(UnreadableImageError, match=r"cut\.jpg: cannot read image"):
        probe_image(cut_jpg)

    def no_decoding(self):
        raise AssertionError("decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    assert probe_image(png) == probe_image(jpg) == (48, 64)
