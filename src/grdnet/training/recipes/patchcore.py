"""PatchCore's fit (Roth et al. 2022): collect the training images' patch features, keep a greedy coreset.

Greedy coreset (k-centre): repeatedly add the patch farthest from those chosen so far, on features randomly
projected to `projection_dim` dimensions (the paper's speed-up). To bound the cost on CPU, the patches are
shuffled and split into chunks of at most `coreset_chunk`, and each chunk keeps `coreset_ratio` of its patches
(with a single chunk this is the paper's global selection; the chunks are random samples of the same patches,
so each one's coreset covers them alike). Bank and features stay on the CPU in float32.
"""

from __future__ import annotations

import torch
from torch import nn

from grdnet.config import RunConfig
from grdnet.seeds import torch_generator
from grdnet.training.recipes.base import FeatureFitRecipe, StepContext

RADIUS_SAMPLE = 8192
"""Training patches whose largest distance to the bank sets the map's reference distance (the covering radius)."""


def greedy_coreset(features: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Indices (count,) of a greedy k-centre coreset of `features` (N, d), starting from a random patch."""
    norms = (features * features).sum(1)
    nearest = torch.full((len(features),), float("inf"))
    chosen = torch.empty(count, dtype=torch.long)
    index = int(torch.randint(len(features), (1,), generator=generator))
    for step in range(count):
        chosen[step] = index
        centre = features[index]
        torch.minimum(nearest, norms - 2.0 * (features @ centre) + centre.dot(centre), out=nearest)
        index = int(nearest.argmax())
    return chosen


def chunked_coreset(features: torch.Tensor, ratio: float, projection_dim: int, chunk: int,
                    generator: torch.Generator) -> torch.Tensor:
    """Indices of the coreset of `features` (N, D): greedy per random chunk of ≤ `chunk` patches, on a random
    Gaussian projection to `projection_dim` (skipped when D is not larger)."""
    if ratio >= 1.0:
        return torch.arange(len(features))
    dim = features.shape[1]
    if projection_dim < dim:
        projection = torch.randn(dim, projection_dim, generator=generator) / projection_dim**0.5
        features = features @ projection
    order = torch.randperm(len(features), generator=generator)
    pieces = order.split(chunk)
    kept = []
    for piece in pieces:
        count = max(1, round(ratio * len(piece)))
        kept.append(piece[greedy_coreset(features[piece], count, generator)])
    return torch.cat(kept)


class PatchCoreRecipe(FeatureFitRecipe):
    """Collects patch features (CPU float32) and, at the end of the pass, installs the coreset memory bank."""

    def __init__(self, model: nn.Module, cfg: RunConfig, context: StepContext) -> None:
        super().__init__(model, cfg, context)
        self.features: list[torch.Tensor] = []

    def collect(self, images: torch.Tensor) -> None:
        patches = self.model.patches(images)  # (B, D, h, w)
        self.features.append(patches.permute(0, 2, 3, 1).reshape(-1, patches.shape[1]).float().cpu())

    def end_epoch(self) -> None:
        features = torch.cat(self.features)
        self.features = []
        options = self.model.options
        generator = torch_generator(self.cfg.train.seed, "coreset")
        kept = chunked_coreset(features, float(options["coreset_ratio"]), int(options["projection_dim"]),
                               int(options["coreset_chunk"]), generator)
        self.model.set_memory_bank(features[kept], radius=1.0)
        sample = features[torch.randperm(len(features), generator=generator)[:RADIUS_SAMPLE]]
        distances, _ = self.model.nearest(sample.to(self.model.memory_bank.device))
        self.model.set_memory_bank(self.model.memory_bank, radius=float(distances.max()))
