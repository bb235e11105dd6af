"""The one seed scheme: named streams are SeedSequence children, keyed below by epoch, step, rank."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from grdnet.seeds import STREAMS, numpy_generator, seed_everything, seed_sequence, torch_generator

SRC = Path(__file__).resolve().parents[1] / "src" / "grdnet"


def test_a_stream_is_the_spawned_child_of_its_name_and_keys():
    root = np.random.SeedSequence(42)
    child = root.spawn(len(STREAMS))[STREAMS.index("tile_crops")]
    grandchild = child.spawn(4)[3].spawn(8)[7]
    assert seed_sequence(42, "tile_crops", 3, 7).generate_state(4).tolist() == grandchild.generate_state(4).tolist()


def test_streams_depend_on_seed_name_and_keys_only():
    def draw(*args):
        return torch.rand(8, generator=torch_generator(*args)).tolist()

    assert draw(0, "synthesis", 2, 0) == draw(0, "synthesis", 2, 0)
    others = [draw(1, "synthesis", 2, 0), draw(0, "tile_crops", 2, 0), draw(0, "synthesis", 3, 0),
              draw(0, "synthesis", 2, 1), draw(0, "synthesis", 2)]
    assert all(other != draw(0, "synthesis", 2, 0) for other in others)
    assert numpy_generator(5, "holdout").permutation(20).tolist() == numpy_generator(5, "holdout").permutation(20).tolist()
    assert numpy_generator(-1, "holdout").integers(1 << 30) == numpy_generator(2**64 - 1, "holdout").integers(1 << 30)
    with pytest.raises(KeyError, match="unknown random stream 'synthesys'"):
        seed_sequence(0, "synthesys")


def test_seed_everything_sets_the_global_generators_from_the_seed():
    seed_everything(3)
    first = (torch.rand(3).tolist(), np.random.rand(3).tolist())
    seed_everything(3)
    assert (torch.rand(3).tolist(), np.random.rand(3).tolist()) == first
    seed_everything(4)
    assert torch.rand(3).tolist() != first[0]


def test_no_fixed_seed_is_written_into_the_source():
    """Every generator is seeded through `grdnet.seeds`: no literal seeds or hand-made stream numbers elsewhere."""
    found = subprocess.run(
        ["grep", "-rnE", r"manual_seed\(|default_rng\(|SeedSequence\(|np\.random\.seed\(|random\.seed\(", str(SRC)],
        capture_output=True, text=True, check=False).stdout.splitlines()
    assert [line for line in found if Path(line.split(":")[0]).name != "seeds.py"] == []
