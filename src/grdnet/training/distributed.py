"""Data-parallel training with PyTorch DistributedDataParallel, launched by `torchrun`.

`torchrun --nproc-per-node N -m grdnet train …` sets RANK / WORLD_SIZE / LOCAL_RANK; each process then
trains on its shard of every epoch's batches, and DDP averages gradients so the weights stay identical.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "DistributedContext":
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device_for(self, device: torch.device) -> torch.device:
        """Under DDP each process takes the GPU of its local rank."""
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def start(self, device: torch.device) -> None:
        """Join the process group (gloo on CPU, NCCL on CUDA) when launched by torchrun."""
        if self.enabled and not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    def stop(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP-wrap a trainable part; identity when not distributed."""
        if not self.enabled:
            return module
        device_ids = [module_device(module).index] if module_device(module).type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over all processes (a no-op when not distributed)."""
        if self.enabled:
            tensor = tensor.clone()
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device
