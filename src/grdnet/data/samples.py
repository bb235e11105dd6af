"""What an index holds: a `Sample` (one image file and its annotations) and the `DatasetIndex` of every split."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One image file and its annotations."""

    image: Path
    label: int  # 0 normal, 1 defect (as given by the folder; ROI not applied)
    defect_type: str  # "good" for normal images
    mask: Path | None = None  # ground-truth defect mask (None: all zeros for a normal image, unknown for a defect)
    roi: Path | None = None  # ROI mask (None = whole image)

    @property
    def pixel_labelled(self) -> bool:
        """True when the pixels' ground truth is known: a normal image, or a defect image with its mask."""
        return self.label == 0 or self.mask is not None


@dataclass
class DatasetIndex:
    """The samples of every split. `contamination` lists defect images moved from test into `train`."""

    train: list[Sample]
    validation: list[Sample]
    test: list[Sample]
    known_defects: list[Sample] = field(default_factory=list)
    contamination: list[Sample] = field(default_factory=list)

    def summary(self) -> dict:
        """Counts per split: total, normal, defect, with_mask, with_roi and per defect type (JSON-safe)."""
        splits = ("train", "validation", "test", "known_defects", "contamination")
        return {name: _counts(getattr(self, name)) for name in splits}


def _counts(samples: list[Sample]) -> dict:
    types = Counter(s.defect_type for s in samples)
    return {
        "total": len(samples),
        "normal": sum(s.label == 0 for s in samples),
        "defect": sum(s.label == 1 for s in samples),
        "with_mask": sum(s.mask is not None for s in samples),
        "image_labelled": sum(not s.pixel_labelled for s in samples),
        "with_roi": sum(s.roi is not None for s in samples),
        "defect_types": dict(sorted(types.items())),
    }
