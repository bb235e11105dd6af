"""Training: the generic `Trainer`, per-method recipes, checkpoints and data-parallel support."""

from grdnet.checkpoint import load_checkpoint, save_checkpoint
from grdnet.training.trainer import Trainer, TrainResult

__all__ = ["Trainer", "TrainResult", "load_checkpoint", "save_checkpoint"]
