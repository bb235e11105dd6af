"""PaDiM's fit: per-position running sums of the training features and their outer products (float64), turned
into means and covariances after the pass (unbiased, n − 1)."""

from __future__ import annotations

import torch
from torch import nn

from grdnet.config import RunConfig
from grdnet.training.recipes.base import FeatureFitRecipe, StepContext


class PaDiMRecipe(FeatureFitRecipe):
    """Accumulates Σx (P, d) and Σxxᵀ (P, d, d) on the CPU; `end_epoch` installs the Gaussians."""

    def __init__(self, model: nn.Module, cfg: RunConfig, context: StepContext) -> None:
        super().__init__(model, cfg, context)
        self.count = 0
        self.sums = torch.zeros(model.mean.shape, dtype=torch.float64)
        self.products = torch.zeros(model.precision.shape, dtype=torch.float64)

    def collect(self, images: torch.Tensor) -> None:
        patches = self.model.patches(images).double().cpu()  # (B, P, d)
        self.count += len(patches)
        self.sums += patches.sum(0)
        self.products += torch.einsum("bpd,bpe->pde", patches, patches)

    def end_epoch(self) -> None:
        n = self.count
        mean = self.sums / n
        covariance = (self.products - n * mean[:, :, None] * mean[:, None, :]) / max(n - 1, 1)
        self.model.set_gaussians(mean, covariance)
        self.count = 0
        self.sums.zero_()
        self.products.zero_()
