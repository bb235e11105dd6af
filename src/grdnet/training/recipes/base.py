"""The training logic of one method: its optimisers and one optimisation step.

The generic `Trainer` owns everything else (epochs, data, validation, checkpoints, resume, DDP).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from grdnet.config import RunConfig
from grdnet.synthesis import AnomalySynthesizer, random_rotate


@dataclass
class StepContext:
    """What the trainer hands a recipe: where to run, how, and how to wrap parts for data parallelism."""

    device: torch.device
    bf16: bool = False
    wrap: Callable[[nn.Module], nn.Module] = field(default=lambda module: module)
    """Wraps a trainable part (DistributedDataParallel under torchrun, identity otherwise)."""
    steps_per_epoch: int = 1
    """Optimisation steps in one epoch (the same every epoch), for schedules counted in epochs."""
    log: Callable[[str], None] = field(default=lambda line: None)
    """Writes a line to the run's console log (what a recipe chose, e.g. its perceptual network)."""


class Recipe:
    """Base class. Subclasses define `parts()` and `training_step()`.

    `self.parts[name]` is the (possibly DDP-wrapped) module trained by `self.optimizers[name]`; use
    `self.raw[name]` for the bare module (e.g. a frozen discriminator in the generator step).
    """

    monitored = "loss"
    """Name of the epoch-mean loss the plateau scheduler watches (a training-side quantity)."""
    class_balanced = False
    """True: the method needs known defect images and gets one per normal image in every batch (drawn with
    replacement); False: up to `batch_size` known defect images per batch, when there are any."""

    def __init__(self, model: nn.Module, cfg: RunConfig, context: StepContext) -> None:
        self.model = model
        self.cfg = cfg
        self.context = context
        self.raw: dict[str, nn.Module] = self.parts()
        self.parts_wrapped: dict[str, nn.Module] = {name: context.wrap(m) for name, m in self.raw.items()}
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            name: self.make_optimizer(name, module) for name, module in self.raw.items()
        }

    # --- to define in subclasses -------------------------------------------------------------------
    def parts(self) -> dict[str, nn.Module]:
        """Trainable parts of the model, one optimiser each."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One optimisation step on `batch` (`image` (B,C,H,W) in [0,1], `roi` (B,1,H,W)); returns detached losses."""
        raise NotImplementedError

    # --- shared helpers ----------------------------------------------------------------------------
    def make_optimizer(self, name: str, module: nn.Module) -> torch.optim.Optimizer:
        train = self.cfg.train
        return torch.optim.Adam(module.parameters(), lr=train.lr, betas=train.betas)

    def make_scheduler(self, name: str, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau:
        """Reduce-on-plateau ×e^−0.1 after `plateau_patience` epochs (the GRD-Net paper's schedule); stepped once per epoch."""
        train = self.cfg.train
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=train.plateau_factor, patience=train.plateau_patience
        )

    def prepare(self, train_data: dict[str, torch.Tensor]) -> None:
        """Called by the trainer once before the first epoch of a fresh run (not on resume: what it sets is in
        the checkpoint), with the preloaded training tensors (`image` (N, C, H, W), `roi`, `valid` when tiling).
        Nothing by default."""

    def end_epoch(self) -> None:
        """Called by the trainer after an epoch's last step, before validation (nothing by default)."""

    def monitor(self, epoch_means: dict[str, float]) -> float:
        """Quantity for the reduce-on-plateau schedulers (lower is better)."""
        return epoch_means[self.monitored]

    def autocast(self):
        from grdnet.runtime import autocast

        return autocast(self.context.device, self.context.bf16)

    @staticmethod
    def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


class SyntheticAnomalyRecipe(Recipe):
    """A recipe that trains on rotated clean images with DRAEM-style synthetic anomalies."""

    def __init__(self, model: nn.Module, cfg: RunConfig, context: StepContext) -> None:
        super().__init__(model, cfg, context)
        self.synthesizer = AnomalySynthesizer(cfg.synthesis, cfg.data.model_size, cfg.data.channels, context.device)

    def corrupt(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Rotate clean images with their ROI, then add synthetic anomalies.

        Returns `clean` (B,C,H,W), `roi` (B,1,H,W), `corrupted` (B,C,H,W), `mask` (B,1,H,W) {0,1}, `label` (B,).
        """
        clean, roi = random_rotate(batch["image"], batch["roi"], self.cfg.synthesis.rotation_degrees, generator)
        corrupted, mask, label = self.synthesizer(clean, generator)
        return {"clean": clean, "roi": roi, "corrupted": corrupted, "mask": mask, "label": label}


class FeatureFitRecipe(Recipe):
    """A "fit once" method (PatchCore, PaDiM): no optimiser; each step folds a batch of normal images into
    statistics (`collect`), and `end_epoch` turns them into the model's state. Their method records say
    `single_pass`: the trainer runs one pass over every training image (no dropped last batch; an interrupted
    pass is not saved) and calls `end_epoch` before validating.

    The backbone's pretrained weights are loaded here, from `model.backbone_weights` (None = the installed
    EfficientNet-Lite0 package's), so a checkpoint carries them and inference needs neither.
    """

    def __init__(self, model: nn.Module, cfg: RunConfig, context: StepContext) -> None:
        super().__init__(model, cfg, context)
        model.backbone.load_weights(cfg.model.backbone_weights)

    def parts(self) -> dict[str, nn.Module]:
        return {}

    def training_step(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            self.collect(batch["image"])
        return {}

    def collect(self, images: torch.Tensor) -> None:
        """Fold images (B, C, H, W) in [0, 1] into the statistics."""
        raise NotImplementedError
