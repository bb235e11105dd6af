"""Heatmap overlays as uint8 RGB arrays (for PNG files, reports and the service), and matplotlib figures as PNG."""

from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """(C,H,W) or (H,W) float in [0,1] → (H,W,3) uint8."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = np.moveaxis(image, 0, -1)
        if image.shape[-1] == 1:
            image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def heatmap(score_map: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """(H,W) scores → (H,W,3) uint8 'inferno' colours; `vmax` fixes the top of the scale (default: 1)."""
    top = 1.0 if vmax is None else max(float(vmax), 1e-6)
    rgba = colormaps["inferno"](np.clip(np.asarray(score_map, dtype=np.float32) / top, 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, score_map: np.ndarray, alpha: float = 0.5, roi: np.ndarray | None = None,
            vmax: float | None = None) -> np.ndarray:
    """Blend the heatmap of `score_map` (H,W) over `image` ((C,H,W) or (H,W) in [0,1]) → (H,W,3) uint8.

    Colour and opacity grow from 0 to full at `vmax` (callers pass the operating threshold, so what is flagged
    is fully coloured whatever the map's units; `heatmap_scale`). Where `roi` (H,W) is given, its outline is
    drawn in cyan.
    """
    base = to_rgb_uint8(image).astype(np.float32)
    heat = heatmap(score_map, vmax).astype(np.float32)
    top = 1.0 if vmax is None else max(float(vmax), 1e-6)
    weight = alpha * np.clip(np.asarray(score_map, dtype=np.float32) / top, 0.0, 1.0)[..., None] ** 0.5
    blended = base * (1 - weight) + heat * weight
    if roi is not None:
        region = np.asarray(roi) > 0.5
        inner = region.copy()
        inner[1:-1, 1:-1] = region[1:-1, 1:-1] & region[:-2, 1:-1] & region[2:, 1:-1] & region[1:-1, :-2] & region[1:-1, 2:]
        blended[region & ~inner] = (0, 255, 255)
    return (blended + 0.5).astype(np.uint8)


def heatmap_scale(threshold: float, score_map: np.ndarray) -> float:
    """The top of an overlay's colour scale: the operating threshold when it is a positive number, else the
    map's own maximum (at least 1e-6), so raw maps in [0, 1] and standardized maps in tens both show."""
    if np.isfinite(threshold) and threshold > 0:
        return float(threshold)
    return max(float(np.max(score_map)) if np.size(score_map) else 1.0, 1e-6)


def figure_png(figure) -> bytes:
    """A matplotlib `Figure` (no pyplot, no display) as PNG bytes at 100 dpi."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def axes_note(axes, text: str) -> None:
    """Write `text` in the middle of `axes` (for a panel with nothing to draw: why it is empty)."""
    axes.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=axes.transAxes)
