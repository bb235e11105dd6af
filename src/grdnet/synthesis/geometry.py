"""Batched rotations of images and ROIs about the image centre (on the input's device).

Angles are in degrees; positive angles turn the content counter-clockwise as displayed (rows going
down), so a +90° rotation of a square image equals `torch.rot90(x, 1, dims=(-2, -1))`. Pixels rotated
in from outside the image are 0: black in the image and *outside* the ROI, so a rotated ROI never claims
pixels that did not exist in the original image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def rotate(images: Tensor, angles_deg: Tensor, mode: str = "bilinear", padding: str = "zeros") -> Tensor:
    """Rotate each image by its own angle.

    images: (B, C, H, W); angles_deg: (B,) degrees (counter-clockwise); mode: "bilinear" or "nearest";
    padding: grid_sample padding mode ("zeros", "border", "reflection"). Returns (B, C, H, W), same dtype.
    """
    batch, _, height, width = images.shape
    radians = angles_deg.to(device=images.device, dtype=torch.float32) * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    zero = torch.zeros_like(cos)
    # Output -> input sampling map in normalised coordinates (align_corners=False), aspect-corrected.
    theta = torch.stack(
        [
            torch.stack([cos, -sin * (height / width), zero], dim=1),
            torch.stack([sin * (width / height), cos, zero], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [batch, 1, height, width], align_corners=False)
    rotated = F.grid_sample(images.float(), grid, mode=mode, padding_mode=padding, align_corners=False)
    return rotated.to(images.dtype)


def random_rotate(
    images: Tensor, rois: Tensor | None, max_degrees: float, generator: torch.Generator
) -> tuple[Tensor, Tensor | None]:
    """Rotate each image and its ROI by the same random angle in [-max_degrees, max_degrees].

    images: (B, C, H, W) in [0, 1] (bilinear); rois: (B, 1, H, W) in {0, 1} (nearest, stays binary) or None.
    The generator must be on the images' device. max_degrees == 0 returns the inputs unchanged.
    """
    if max_degrees == 0:
        return images, rois
    angles = (torch.rand(images.shape[0], generator=generator, device=images.device) * 2 - 1) * max_degrees
    rotated = rotate(images, angles, mode="bilinear").clamp_(0.0, 1.0)
    return rotated, None if rois is None else rotate(rois, angles, mode="nearest")
