"""One seed scheme for every random stream of a run.

A stream is named (`STREAMS`) and keyed by integers (epoch, step, rank, …). Its seed is the
`numpy.random.SeedSequence` child that `SeedSequence(seed).spawn()` gives the stream's position in `STREAMS`,
and, below it, the grandchild for each key in turn: `seed_sequence(s, "tile_crops", 3, 7)` is
`SeedSequence(s).spawn(n)[STREAMS.index("tile_crops")].spawn(…)[3].spawn(…)[7]`. Streams therefore never
share values, a stream depends only on (seed, name, keys), and a stream added at the end of `STREAMS`
changes none of the others.
"""

from __future__ import annotations

import random

import numpy as np
import torch

STREAMS = (
    "global",  # Python's, NumPy's and torch's global generators (model initialisation, dropout)
    "holdout",  # data.split_seed: the `folder` layout's test normals
    "validation_split",  # data.split_seed: the validation images
    "contamination",  # data.split_seed: test defects moved into training
    "batch_order",  # (epoch): each epoch's shuffle of the training images
    "known_defects",  # (epoch, step): the known defect images a step adds
    "synthesis",  # (epoch, rank): a step's synthetic anomalies; its state is saved mid-epoch
    "tile_crops",  # (epoch, step, rank): random training tiles
    "validation_anomalies",  # the validator's fixed synthetic anomalies
    "coreset",  # PatchCore: projection, coreset chunks and the radius sample
    "padim_channels",  # PaDiM: the kept feature channels
    "perceptual_weights",  # PiADE: the frozen random feature network of its perceptual loss
    "latent_search",  # KD-GAN: the latent search's starting z
    "export_inputs",  # ONNX export: the tracing example and random parity inputs
    "builtin_dataset",  # (split, defect type, index): one image of the built-in data set
    "memory_bank",  # GRD-Net: the tiles and patches of its segmenter's memory bank
)
"""Every named stream, in spawn order (append new ones at the end: the position is part of the seed)."""


def seed_sequence(seed: int, stream: str, *keys: int) -> np.random.SeedSequence:
    """The `SeedSequence` of `stream` under the run `seed` (any int; negative ones wrap modulo 2**64) and `keys`
    (non-negative ints)."""
    if stream not in STREAMS:
        raise KeyError(f"unknown random stream {stream!r}; the streams are {', '.join(STREAMS)}")
    return np.random.SeedSequence(int(seed) % 2**64, spawn_key=(STREAMS.index(stream), *map(int, keys)))


def numpy_generator(seed: int, stream: str, *keys: int) -> np.random.Generator:
    """A NumPy generator for `stream` (see `seed_sequence`)."""
    return np.random.default_rng(seed_sequence(seed, stream, *keys))


def torch_seed(seed: int, stream: str, *keys: int) -> int:
    """A 64-bit seed for a torch generator, drawn from `seed_sequence(seed, stream, *keys)`."""
    return int(seed_sequence(seed, stream, *keys).generate_state(1, np.uint64)[0])


def torch_generator(seed: int, stream: str, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on `device` for `stream` (see `seed_sequence`)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(torch_seed(seed, stream, *keys))
    return generator


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators from the "global" stream (the pipeline's own
    randomness uses explicit generators; these cover model initialisation and dropout)."""
    state = seed_sequence(seed, "global").generate_state(2, np.uint32)
    random.seed(int(state[0]))
    np.random.seed(int(state[1]))
    torch.manual_seed(torch_seed(seed, "global"))
