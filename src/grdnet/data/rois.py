"""ROIs: `data.roi` (training, validation and known-defect images) and `data.test_roi` (test images; contamination
images keep their test ROI) are each None (the whole image), one image file for every image, or a folder
mirroring the image paths relative to the category folder (`roi/train/good/000.png` or
`roi/train/good/000_roi.png` for `train/good/000.png`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from grdnet.data.discovery import absolute_path
from grdnet.data.io import is_image_file
from grdnet.data.problems import problem
from grdnet.data.samples import Sample
from grdnet.errors import DataError


class RoiSource:
    """`data.roi` / `data.test_roi`: None, one image file for all images, or a folder mirroring image paths."""

    def __init__(self, setting_value: Path | None, setting: str):
        self.setting = setting
        self.path = None if setting_value is None else absolute_path(setting_value)
        self.shared_file: Path | None = None  # the single ROI file used for every image, if one was given
        self.missing: list[str] = []
        self._listings: dict[Path, dict[str, Path]] = {}
        if self.path is None:
            return
        if not self.path.exists():
            raise DataError(
                f"{self.path}: {setting} not found; give a folder mirroring the image paths, "
                f"one image file for all images, or leave {setting} empty"
            )
        if self.path.is_file():
            if not is_image_file(self.path):
                raise DataError(f"{self.path}: {setting} is not an image file; give a PNG mask or a folder of them")
            self.shared_file = self.path

    def _listing(self, folder: Path) -> dict[str, Path]:
        if folder not in self._listings:
            files = sorted(folder.iterdir()) if folder.is_dir() else []
            self._listings[folder] = {p.stem: p for p in files if is_image_file(p)}
        return self._listings[folder]

    def attach(self, sample: Sample, base: Path) -> Sample:
        """The sample with its ROI; a ROI missing from a folder is recorded for `check`."""
        if self.path is None or self.shared_file is not None:
            return replace(sample, roi=self.path)
        image = sample.image
        relative = image.relative_to(base) if image.is_relative_to(base) else Path(image.parent.name, image.name)
        folder = self.path / relative.parent
        listing = self._listing(folder)
        roi = listing.get(image.stem) or listing.get(f"{image.stem}_roi")
        if roi is None:
            self.missing.append(f"{image} (expected {folder / (image.stem + '.png')})")
        return replace(sample, roi=roi)

    def check(self) -> None:
        if self.missing:
            raise problem(
                self.missing,
                f"image has no ROI in {self.setting}",
                f"images have no ROI in {self.setting}",
                "add the ROI masks (<stem>.png or <stem>_roi.png, mirroring the image paths) "
                f"or give {self.setting} as one image file for all images",
            )
