"""Tiles: models built for `data.tile_size`, trained on random tile crops and run over whole images.

`TiledModel` runs a trained model on every tile of an `image_size` image and stitches the maps (overlaps
blended with a window that favours each tile's centre); `wrap_for_inference` gives the model as every entry point runs it (the `Predictor`, the validator,
the service and the ONNX export): tiled when the configuration asks for tiles, then the `ScoringHead`.
`random_tile_crops` cuts the training windows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grdnet.config import RunConfig
from grdnet.methods import get_method
from grdnet.scoring import NormalStats, ScoredModel, ScoringHead

TILES_PER_CALL = 4
"""Tile positions the inner model sees per call (each call runs batch × this many tiles)."""


WINDOW_FLOOR = 0.01
"""Smallest blending weight of a tile pixel (its corners)."""


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of `tile` pixels every `stride` pixels along `length`; the last tile ends at `length`.

    Every pixel is covered when 1 <= stride <= tile <= length, e.g. (128, 64, 48) → [0, 48, 64].
    """
    if not 1 <= stride <= tile <= length:
        raise ValueError(f"need 1 <= stride <= tile <= length, got stride {stride}, tile {tile}, length {length}")
    return list(range(0, length - tile, stride)) + [length - tile]


def tile_window(tile_size: tuple[int, int]) -> Tensor:
    """(1, 1, th, tw) blending weights in [WINDOW_FLOOR, 1]: sin² of the pixel-centre position along each side (a
    Hann window), so each pixel is led by the tile it is most central in; the floor keeps image borders that one
    tile covers well-conditioned (the stitched map divides by the summed weights)."""
    rows, cols = (torch.sin(torch.pi * (torch.arange(side) + 0.5) / side) ** 2 for side in tile_size)
    return (rows[:, None] * cols[None, :]).clamp(min=WINDOW_FLOOR).view(1, 1, *tile_size)


class TiledModel(nn.Module):
    """A model built for `tile_size` run over whole `image_size` images; it only stitches, scoring is the
    `ScoringHead`'s.

    `forward(x (B, C, H, W) at image_size)`: the inner model runs on every tile (`TILES_PER_CALL` positions
    per call); its pixel outputs (B, ·, th, tw) — `anomaly_map`, `reconstruction` — are pasted back and
    blended where tiles overlap (float32), each tile weighted by `tile_window`, so a pixel's value comes mostly
    from the tiles it lies deep inside (a network's border effects show as a grid in plain averages); `score_<name>` outputs are the max over the image's tiles; other
    outputs (e.g. VT-ADL's `patch_nll` (B, N)) are concatenated over tiles along dim 1. A tile's `score` or
    `smoothed_map` is dropped (the head computes them on the whole map). Tile positions are fixed Python loops
    and slices, so `torch.onnx.export` traces it (dynamic batch only).
    """

    def __init__(self, model: nn.Module, image_size: tuple[int, int], tile_size: tuple[int, int],
                 tile_stride: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.tile_size = (int(tile_size[0]), int(tile_size[1]))
        self.origins = [
            (top, left)
            for top in tile_origins(self.image_size[0], self.tile_size[0], tile_stride[0])
            for left in tile_origins(self.image_size[1], self.tile_size[1], tile_stride[1])
        ]
        window = tile_window(self.tile_size)
        coverage = torch.zeros(1, 1, *self.image_size)
        for top, left in self.origins:
            coverage[..., top : top + self.tile_size[0], left : left + self.tile_size[1]] += window
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("coverage", coverage, persistent=False)
        self.train(model.training)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"TiledModel runs on {self.image_size} images, got {tuple(x.shape[-2:])}")
        (height, width), (tile_h, tile_w) = self.image_size, self.tile_size
        pasted: dict[str, Tensor] = {}
        per_tile: dict[str, list[Tensor]] = {}
        for start in range(0, len(self.origins), TILES_PER_CALL):
            group = self.origins[start : start + TILES_PER_CALL]
            tiles = torch.stack([x[:, :, top : top + tile_h, left : left + tile_w] for top, left in group], dim=1)
            out = self.model(tiles.flatten(0, 1))  # image-major: row b·k + j is tile j of image b
            for name, value in out.items():
                if name in ("smoothed_map", "score"):  # the ScoringHead's, on the whole map
                    continue
                by_image = value.float().unflatten(0, (-1, len(group)))  # (B, k, ...)
                if value.ndim == 4:
                    for j, (top, left) in enumerate(group):
                        weighted = by_image[:, j] * self.window
                        placed = F.pad(weighted, (left, width - left - tile_w, top, height - top - tile_h))
                        pasted[name] = placed if name not in pasted else pasted[name] + placed
                else:
                    per_tile.setdefault(name, []).append(by_image.flatten(1))
        result = {name: total / self.coverage.to(total) for name, total in pasted.items()}
        for name, parts in per_tile.items():
            joined = torch.cat(parts, dim=1)
            result[name] = joined.amax(dim=1) if name.startswith("score_") else joined
        return {name: result[name] for name in out if name in result}


def wrap_for_inference(model: nn.Module, cfg: RunConfig, normal_stats: NormalStats | None = None) -> ScoredModel:
    """`model` as it runs on whole `cfg.data.image_size` images: a `TiledModel` when `data.tile_size` is set
    (stride `data.tile_stride`, default half the tile), followed by the `ScoringHead` (`scoring.smoothing_kernel`,
    `map_scored` from the method's record, and the checkpoint's `normal_stats`, None = raw maps).
    `forward(image, region=None)`, see `ScoringHead`."""
    data = cfg.data
    if data.tile_size is not None:
        stride = data.tile_stride or (data.tile_size[0] // 2, data.tile_size[1] // 2)
        model = TiledModel(model, data.image_size, data.tile_size, stride)
    return ScoredModel(model, ScoringHead(cfg.scoring.smoothing_kernel, get_method(cfg.model.name).map_scored, normal_stats))


def random_tile_crops(tensors: dict[str, Tensor], tile_size: tuple[int, int], generator: torch.Generator,
                      focus: Tensor | None = None, valid: Tensor | None = None) -> dict[str, Tensor]:
    """Crop every (B, ·, H, W) tensor of `tensors` to one random `tile_size` window per sample, the same window
    across the tensors (so images, masks and ROIs stay aligned); CPU tensors and a CPU `generator`.

    Window corners are uniform over the image, or, with `valid` (B, 1, H, W) {0, 1} (1 on the image, 0 on the
    "fit" padding at the bottom and right), uniform over the positions whose window starts on the image and
    stays inside it where the image is large enough; a window is never wholly padding. (A constant tile, as
    padding is, makes every normalisation layer's variance zero; stacked, their gradients overflow to NaN.)
    With `focus` (B, 1, H, W) {0, 1}, a sample whose focus mask is not empty gets a window containing the
    mask's centre (mean pixel position).
    """
    first = next(iter(tensors.values()))
    batch, (height, width) = first.shape[0], first.shape[-2:]
    tile = torch.tensor(tile_size)
    low = torch.zeros(batch, 2, dtype=torch.long)
    high = (torch.tensor([height, width]) - tile).expand(batch, 2)
    if valid is not None:
        content = torch.stack([valid[:, 0].amax(dim=2).sum(dim=1), valid[:, 0].amax(dim=1).sum(dim=1)], dim=1).long()
        high = torch.minimum(high, (content - tile).clamp_min(0))
    if focus is not None:
        weights = focus[:, 0].float()
        area = weights.sum(dim=(1, 2))
        rows = (weights.sum(dim=2) * torch.arange(height)).sum(dim=1)
        cols = (weights.sum(dim=1) * torch.arange(width)).sum(dim=1)
        centre = (torch.stack([rows, cols], dim=1) / area.clamp_min(1).unsqueeze(1)).round().long()
        has_focus = (area > 0).unsqueeze(1)
        low = torch.where(has_focus, (centre - tile + 1).clamp_min(0), low)
        high = torch.where(has_focus, torch.minimum(centre, high), high)
    draws = torch.rand(batch, 2, generator=generator, dtype=torch.float64)
    corners = torch.minimum(low + (draws * (high - low + 1)).long(), high).tolist()
    tile_h, tile_w = tile_size
    return {
        name: torch.stack([value[i, :, top : top + tile_h, left : left + tile_w] for i, (top, left) in enumerate(corners)])
        for name, value in tensors.items()
    }
