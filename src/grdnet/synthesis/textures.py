"""Texture sources for synthetic anomalies and their random photometric augmentations.

All functions work on batches on the input's device and draw randomness only from the given generator
(which must live on that device). Textures are (B, C, H, W) float32 in [0, 1].

Sources: "random" (uniform noise per pixel and channel: random RGB, or gray for C = 1), "folder"
(images from a texture folder such as DTD, kept as a uint8 bank on the device), "self" (the image
itself, circularly shifted by a random offset and randomly flipped).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import kornia.enhance as ke
import numpy as np
import torch
from torch import Tensor

from grdnet.config import SynthesisConfig
from grdnet.errors import ConfigError
from grdnet.pixels import decode_pixels, resize_array, to_channels
from grdnet.synthesis.geometry import rotate

TEXTURE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_BANK_IMAGES = 256
MAX_BANK_BYTES = 256 * 2**20
"""The folder bank holds at most this many images and bytes (uint8), so large image sizes stay affordable."""

TextureSource = Callable[[Tensor, torch.Generator], Tensor]
"""(images (B, C, H, W), generator) -> textures (B, C, H, W) in [0, 1]."""


def random_textures(images: Tensor, generator: torch.Generator) -> Tensor:
    """Uniform random value per pixel and channel, shaped like `images`."""
    return torch.rand(images.shape, generator=generator, device=images.device)


def self_textures(images: Tensor, generator: torch.Generator) -> Tensor:
    """Each image rolled by a random (dy, dx) and flipped vertically / horizontally with probability 1/2."""
    batch, channels, height, width = images.shape
    device = images.device
    shifts = torch.rand(batch, 2, generator=generator, device=device)
    flips = torch.rand(batch, 2, generator=generator, device=device) < 0.5

    def indices(size: int, shift: Tensor, flip: Tensor) -> Tensor:
        index = (torch.arange(size, device=device) + (shift * size).long().view(-1, 1)) % size
        return torch.where(flip.view(-1, 1), size - 1 - index, index)

    rows = indices(height, shifts[:, 0], flips[:, 0]).view(batch, 1, height, 1).expand(batch, channels, height, width)
    cols = indices(width, shifts[:, 1], flips[:, 1]).view(batch, 1, 1, width).expand(batch, channels, height, width)
    return images.float().gather(2, rows).gather(3, cols)


def texture_files(texture_dir: Path) -> list[Path]:
    """Sorted image files (jpg / jpeg / png) under `texture_dir`, recursively; ConfigError when none."""
    texture_dir = Path(texture_dir)
    if not texture_dir.is_dir():
        raise ConfigError(
            f"{texture_dir}: synthesis.texture_dir is not a folder; point it at a folder of texture images "
            "(for example ../shared/data/dtd/images) or use texture 'random'"
        )
    files = sorted(p for p in texture_dir.rglob("*") if p.suffix.lower() in TEXTURE_SUFFIXES and p.is_file())
    if not files:
        raise ConfigError(
            f"{texture_dir}: synthesis.texture_dir holds no .jpg/.png images; "
            "add texture images or use texture 'random'"
        )
    return files


class FolderTextures:
    """Textures drawn from the images of a folder, resized to the image size.

    At most `max_images` files (and `MAX_BANK_BYTES`) are used, picked evenly from the sorted file list
    (so every sub-folder / DTD category is represented). They are read once, on the first call, through the
    pixel path training images take (`grdnet.pixels`) and kept on `device` as a uint8 bank (N, C, H, W); unreadable files are skipped with a warning.
    """

    def __init__(
        self,
        texture_dir: Path,
        image_size: tuple[int, int],
        channels: int,
        device: torch.device | str,
        max_images: int = MAX_BANK_IMAGES,
    ) -> None:
        self.texture_dir = Path(texture_dir)
        self.image_size = image_size
        self.channels = channels
        self.device = torch.device(device)
        files = texture_files(self.texture_dir)
        cap = min(max_images, max(1, MAX_BANK_BYTES // (channels * image_size[0] * image_size[1])))
        if len(files) > cap:
            files = [files[i] for i in np.unique(np.linspace(0, len(files) - 1, cap).round().astype(int))]
        self.files = files
        self._bank: Tensor | None = None

    def _load(self) -> Tensor:
        arrays = []
        for path in self.files:
            try:
                pixels = decode_pixels(path)
            except (OSError, ValueError) as error:
                warnings.warn(f"{path}: unreadable texture skipped ({error})", stacklevel=2)
                continue
            image = resize_array(to_channels(pixels, self.channels), self.image_size)
            arrays.append(np.round(image * 255.0).astype(np.uint8))
        if not arrays:
            raise ConfigError(f"{self.texture_dir}: no readable texture image; check the files or use texture 'random'")
        return torch.from_numpy(np.stack(arrays)).to(self.device)

    @property
    def bank(self) -> Tensor:
        """(N, C, H, W) uint8 textures on the device, loaded on first use."""
        if self._bank is None:
            self._bank = self._load()
        return self._bank

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """One random bank texture per sample: (B, C, H, W) float32 in [0, 1]."""
        bank = self.bank
        index = torch.randint(len(bank), (images.shape[0],), generator=generator, device=bank.device)
        return bank[index].float().div_(255.0)


def make_texture_source(
    cfg: SynthesisConfig, image_size: tuple[int, int], channels: int, device: torch.device | str
) -> TextureSource:
    """The texture source named by `cfg.texture`; ConfigError for a missing or empty texture_dir."""
    if cfg.texture == "random":
        return random_textures
    if cfg.texture == "self":
        return self_textures
    if cfg.texture_dir is None:
        raise ConfigError("synthesis.texture_dir: texture 'folder' needs a folder of texture images")
    return FolderTextures(cfg.texture_dir, image_size, channels, device)


def _contrast(x: Tensor, u: Tensor) -> Tensor:
    return ke.adjust_gamma(x, 0.5 + 1.5 * u[:, 0])  # gamma contrast, γ ∈ [0.5, 2]


def _brightness(x: Tensor, u: Tensor) -> Tensor:
    scale, shift = 0.8 + 0.4 * u[:, 0], (u[:, 1] * 2 - 1) * (30 / 255)  # ×[0.8, 1.2], ±30 levels
    return (x * scale.view(-1, 1, 1, 1) + shift.view(-1, 1, 1, 1)).clamp(0.0, 1.0)


def _sharpness(x: Tensor, u: Tensor) -> Tensor:
    return ke.sharpness(x, 2.0 * u[:, 0])  # 0 = blurred, 1 = unchanged, 2 = sharpened


def _hue_saturation(x: Tensor, u: Tensor) -> Tensor:
    hue = (u[:, 0] * 2 - 1) * (50 / 255 * 2 * math.pi)  # ±70°
    return ke.adjust_saturation(ke.adjust_hue(x, hue), 0.5 + u[:, 1])


def _solarize(x: Tensor, u: Tensor) -> Tensor:
    return ke.solarize(x, (32 + 96 * u[:, 0]) / 255)  # invert values above a threshold in [32, 128] levels


def _posterize(x: Tensor, u: Tensor) -> Tensor:
    return ke.posterize(x, 1 + (u[:, 0] * 7).long().clamp(max=6))  # keep 1–7 bits


def _invert(x: Tensor, u: Tensor) -> Tensor:
    return 1.0 - x


def _equalize(x: Tensor, u: Tensor) -> Tensor:
    return ke.equalize(x)


def _rotation(x: Tensor, u: Tensor) -> Tensor:
    return rotate(x, (u[:, 0] * 2 - 1) * 45.0, padding="reflection")  # ±45°, reflected borders


AUGMENTATIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "contrast": _contrast,
    "brightness": _brightness,
    "sharpness": _sharpness,
    "hue_saturation": _hue_saturation,
    "solarize": _solarize,
    "posterize": _posterize,
    "invert": _invert,
    "equalize": _equalize,
    "rotation": _rotation,
}
"""Photometric augmentations: (textures (B, C, H, W), uniform parameters (B, 2)) -> textures."""


def augment_textures(textures: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """Apply `count` distinct augmentations, chosen independently per sample, to (B, C, H, W) textures.

    The chosen ones run in the fixed order of `AUGMENTATIONS`, each only on the samples that chose it.
    "hue_saturation" is left out for grayscale (C = 1).
    Returns (B, C, H, W) float32 in [0, 1].
    """
    names = [n for n in AUGMENTATIONS if textures.shape[1] == 3 or n != "hue_saturation"]
    count = min(count, len(names))
    if count == 0:
        return textures
    batch, device = textures.shape[0], textures.device
    scores = torch.rand(batch, len(names), generator=generator, device=device)
    chosen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, scores.topk(count, dim=1).indices, True)
    params = torch.rand(len(names), batch, 2, generator=generator, device=device)
    out = textures.float().clone()
    for k, name in enumerate(names):
        index = chosen[:, k].nonzero().squeeze(1)
        if index.numel():
            out[index] = AUGMENTATIONS[name](out[index], params[k, index])
    return out.clamp_(0.0, 1.0)
