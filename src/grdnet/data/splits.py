"""Seeded splits (`data.split_seed`, streams of `grdnet.seeds`): validation images out of the training pool, and
test defects moved into training (`data.contamination`)."""

from __future__ import annotations

from grdnet.data.samples import Sample
from grdnet.errors import DataError
from grdnet.seeds import numpy_generator


def held_out_count(n: int, fraction: float) -> int:
    """round(fraction·n), but at least 1 and at most n-1 when fraction > 0 and n ≥ 2."""
    count = round(fraction * n)
    if fraction > 0 and n >= 2:
        count = min(max(count, 1), n - 1)
    return count


def split_validation(pool: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    n_val = held_out_count(len(pool), fraction)
    chosen = set(numpy_generator(seed, "validation_split").permutation(len(pool))[:n_val].tolist())
    train = [s for i, s in enumerate(pool) if i not in chosen]
    return train, [s for i, s in enumerate(pool) if i in chosen]


def contaminate(
    train: list[Sample], test: list[Sample], fraction: float, seed: int
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Move max(1, round(fraction·len(train))) seeded test defects into train: (train, test, moved)."""
    if fraction == 0:
        return train, test, []
    defects = [s for s in test if s.label == 1]
    count = max(1, round(fraction * len(train)))
    if count >= len(defects):
        raise DataError(
            f"data.contamination: {fraction} of {len(train)} training images needs {count} defect images but "
            f"the test set has {len(defects)} (at least one must stay for testing); lower data.contamination"
        )
    picked = numpy_generator(seed, "contamination").choice(len(defects), size=count, replace=False)
    moved = [defects[i] for i in sorted(picked.tolist())]
    moved_set = set(moved)
    return train + moved, [s for s in test if s not in moved_set], moved
