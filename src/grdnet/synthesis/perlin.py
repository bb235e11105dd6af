"""Batched, seeded Perlin-noise anomaly masks, computed on the requested device.

Each sample gets its own grid scales sy, sx = 2**randint(lo, hi) (hi exclusive, clamped to the image
size) and its own rotation angle in [-90°, 90°]. The rotation is applied to the sampling coordinates of
the noise field (equivalent to rotating the field, without empty corners). Noise is scaled by √2 to
about [-1, 1], as in DRAEM, and binarised at `threshold`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from grdnet.errors import ConfigError

REFERENCE_AREA = 256 * 256
"""`min_area` is given in pixels at this image area and scaled with H*W."""


def _fade(t: Tensor) -> Tensor:
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(
    res_y: Tensor,
    res_x: Tensor,
    angles: Tensor,
    height: int,
    width: int,
    max_res: tuple[int, int],
    generator: torch.Generator,
) -> Tensor:
    """Rotated 2-D Perlin noise, one field per sample.

    res_y, res_x: (B,) float, grid cells per image side (≤ max_res); angles: (B,) radians.
    Returns (B, H, W) float32 in about [-1, 1].
    """
    device = res_y.device
    batch = res_y.shape[0]
    radius = math.hypot(height, width) / 2
    # Lattice big enough to hold the image rotated by any angle, for the largest allowed scale.
    lat_y = math.floor(2 * radius * max_res[0] / height) + 2
    lat_x = math.floor(2 * radius * max_res[1] / width) + 2
    grad_angles = torch.rand(batch, lat_y * lat_x, generator=generator, device=device) * (2 * math.pi)
    grad_y, grad_x = torch.sin(grad_angles), torch.cos(grad_angles)

    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5 - height / 2).view(1, -1, 1)
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5 - width / 2).view(1, 1, -1)
    cos, sin = torch.cos(angles).view(-1, 1, 1), torch.sin(angles).view(-1, 1, 1)
    scale_y, scale_x = (res_y / height).view(-1, 1, 1), (res_x / width).view(-1, 1, 1)
    # Lattice coordinates of the rotated pixel centres, shifted by the radius to be non-negative.
    u = ((cos * ys + radius) * scale_y - (sin * scale_y) * xs).reshape(batch, -1)
    v = ((sin * ys) * scale_x + (cos * xs + radius) * scale_x).reshape(batch, -1)
    u0, v0 = u.floor(), v.floor()
    fu, fv = u - u0, v - v0
    fu1, fv1 = fu - 1, fv - 1
    base = u0.long() * lat_x + v0.long()

    def corner(dy: int, dx: int, offset_y: Tensor, offset_x: Tensor) -> Tensor:
        index = base + (dy * lat_x + dx)
        return torch.addcmul(grad_y.gather(1, index) * offset_y, grad_x.gather(1, index), offset_x)

    tu, tv = _fade(fu), _fade(fv)
    top = torch.lerp(corner(0, 0, fu, fv), corner(0, 1, fu, fv1), tv)
    bottom = torch.lerp(corner(1, 0, fu1, fv), corner(1, 1, fu1, fv1), tv)
    return (math.sqrt(2) * torch.lerp(top, bottom, tu)).view(batch, height, width)


def min_area_pixels(min_area: int, height: int, width: int) -> int:
    """`min_area` (pixels at 256²) scaled to H×W; at least 1, so masks are never empty."""
    return max(1, math.ceil(min_area * height * width / REFERENCE_AREA))


def _raw_masks(
    batch: int,
    height: int,
    width: int,
    generator: torch.Generator,
    device: torch.device,
    scale_exponents: tuple[int, int],
    threshold: float,
) -> Tensor:
    lo, hi = scale_exponents
    max_res = (min(2 ** (hi - 1), height), min(2 ** (hi - 1), width))
    exps = torch.randint(lo, hi, (2, batch), generator=generator, device=device)
    res = torch.pow(2.0, exps.float())
    res_y, res_x = res[0].clamp(max=max_res[0]), res[1].clamp(max=max_res[1])
    angles = (torch.rand(batch, generator=generator, device=device) * 2 - 1) * (math.pi / 2)
    noise = perlin_noise(res_y, res_x, angles, height, width, max_res, generator)
    return (noise > threshold).float().unsqueeze(1)


def ellipse_masks(
    batch: int, height: int, width: int, min_pixels: int, generator: torch.Generator, device: torch.device
) -> Tensor:
    """Random rotated ellipses (B, 1, H, W) in {0, 1}; the fallback that never comes out empty.

    Centres lie in the middle half of the image, semi-axes are 8–20 % of the sides, enlarged when needed
    to cover about `min_pixels`.
    """
    params = torch.rand(batch, 5, generator=generator, device=device)
    cy, cx = (0.25 + 0.5 * params[:, 0]) * height, (0.25 + 0.5 * params[:, 1]) * width
    ay, ax = (0.08 + 0.12 * params[:, 2]) * height, (0.08 + 0.12 * params[:, 3]) * width
    grow = (1.2 * min_pixels / (math.pi * ay * ax)).sqrt().clamp(min=1.0)
    ay, ax = ay * grow, ax * grow
    angle = params[:, 4] * math.pi
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5).view(1, -1, 1) - cy.view(-1, 1, 1)
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5).view(1, 1, -1) - cx.view(-1, 1, 1)
    cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    along = cos * ys + sin * xs
    across = -sin * ys + cos * xs
    inside = (along / ay.view(-1, 1, 1)) ** 2 + (across / ax.view(-1, 1, 1)) ** 2 <= 1.0
    # The pixel nearest the centre is always set, so the mask is non-empty even for tiny images.
    inside[torch.arange(batch, device=device), cy.long().clamp(max=height - 1), cx.long().clamp(max=width - 1)] = True
    return inside.float().unsqueeze(1)


def local_windows(
    batch: int, height: int, width: int, semi_axis: tuple[float, float], generator: torch.Generator,
    device: torch.device,
) -> Tensor:
    """One random rotated ellipse per sample (B, 1, H, W) in {0, 1}, to confine an anomaly to a local blob.

    The centre is uniform over the image, the longer semi-axis uniform in `semi_axis` pixels, the shorter one
    15–100 % of it (elongated windows give crack-like marks), the angle uniform; never empty.
    """
    params = torch.rand(batch, 5, generator=generator, device=device)
    cy, cx = params[:, 0] * height, params[:, 1] * width
    lo, hi = semi_axis
    major = lo + (hi - lo) * params[:, 2]
    minor = (major * (0.15 + 0.85 * params[:, 3])).clamp(min=0.5)
    angle = params[:, 4] * math.pi
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5).view(1, -1, 1) - cy.view(-1, 1, 1)
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5).view(1, 1, -1) - cx.view(-1, 1, 1)
    cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    along, across = cos * ys + sin * xs, -sin * ys + cos * xs
    inside = (along / major.view(-1, 1, 1)) ** 2 + (across / minor.view(-1, 1, 1)) ** 2 <= 1.0
    inside[torch.arange(batch, device=device), cy.long().clamp(max=height - 1), cx.long().clamp(max=width - 1)] = True
    return inside.float().unsqueeze(1)


def stroke_masks(
    batch: int, height: int, width: int, length: tuple[float, float], thickness: tuple[float, float],
    generator: torch.Generator, device: torch.device, points: int = 48,
) -> Tensor:
    """One thin curved stroke per sample (B, 1, H, W) in {0, 1}: scratches and cracks.

    A quadratic Bézier curve from a uniform start point in a uniform direction, its length uniform in `length`
    pixels, bent by a control point up to a third of the length off the chord, drawn `thickness` pixels wide
    (uniform in that range) by the distance of each pixel centre to `points` samples along it; never empty.
    """
    params = torch.rand(batch, 6, generator=generator, device=device)
    start = torch.stack((params[:, 0] * height, params[:, 1] * width), dim=1)  # (B, 2) as (y, x)
    angle = params[:, 2] * 2 * math.pi
    span = length[0] + (length[1] - length[0]) * params[:, 3]
    direction = torch.stack((torch.sin(angle), torch.cos(angle)), dim=1)
    normal = torch.stack((direction[:, 1], -direction[:, 0]), dim=1)
    end = start + span.unsqueeze(1) * direction
    bend = ((params[:, 4] * 2 - 1) * span / 3).unsqueeze(1)
    control = (start + end) / 2 + bend * normal
    t = torch.linspace(0.0, 1.0, points, device=device).view(1, -1, 1)
    curve = (1 - t) ** 2 * start.unsqueeze(1) + 2 * (1 - t) * t * control.unsqueeze(1) + t**2 * end.unsqueeze(1)
    ys = torch.arange(height, device=device, dtype=torch.float32) + 0.5
    xs = torch.arange(width, device=device, dtype=torch.float32) + 0.5
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).view(1, -1, 2)  # (1, H·W, 2)
    nearest = torch.cdist(grid.expand(batch, -1, -1), curve).amin(dim=2)  # (B, H·W)
    half = (thickness[0] + (thickness[1] - thickness[0]) * params[:, 5]).unsqueeze(1) / 2
    # at least 0.75 px: the centre of the pixel holding the start point (≤ 0.71 px away) is always drawn
    inside = (nearest <= half.clamp(min=0.75)).view(batch, height, width)
    return inside.float().unsqueeze(1)


def perlin_masks(
    batch: int,
    height: int,
    width: int,
    generator: torch.Generator,
    device: torch.device | str,
    scale_exponents: tuple[int, int] = (0, 6),
    threshold: float = 0.5,
    min_area: int = 25,
    max_rounds: int = 10,
) -> Tensor:
    """Binary Perlin anomaly masks (B, 1, H, W) float32 in {0, 1}, each with ≥ the scaled `min_area`.

    Masks below the minimum area are regenerated (only those) for up to `max_rounds` rounds; any still
    failing then get a random ellipse (`ellipse_masks`), so the call always terminates. The generator
    must be on `device`.
    """
    lo, hi = scale_exponents
    if not 0 <= lo < hi:
        raise ConfigError(
            f"synthesis.perlin_scale_exponents: need 0 <= lo < hi (hi exclusive), got {scale_exponents}"
        )
    device = torch.device(device)
    min_pixels = min_area_pixels(min_area, height, width)
    masks = _raw_masks(batch, height, width, generator, device, scale_exponents, threshold)
    for _ in range(max_rounds):
        failing = (masks.sum(dim=(1, 2, 3)) < min_pixels).nonzero().squeeze(1)
        if failing.numel() == 0:
            return masks
        masks[failing] = _raw_masks(len(failing), height, width, generator, device, scale_exponents, threshold)
    failing = (masks.sum(dim=(1, 2, 3)) < min_pixels).nonzero().squeeze(1)
    if failing.numel():
        masks[failing] = ellipse_masks(len(failing), height, width, min_pixels, generator, device)
    return masks
