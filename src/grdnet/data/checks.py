"""File checks: every listed file is read (headers, or decoded to find truncated files), unreadable ones are
rejected or skipped, and masks and ROIs must have their image's size; no image may serve training and test."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from grdnet.data.io import UnreadableImageError, probe_image
from grdnet.data.problems import listing, problem
from grdnet.data.samples import Sample


def _probe(path: Path, check_truncation: bool) -> tuple[int, int] | UnreadableImageError:
    try:
        return probe_image(path, check_truncation)
    except UnreadableImageError as error:
        return error


def _probe_all(paths: list[Path], check_truncation: bool) -> dict[Path, tuple[int, int] | UnreadableImageError]:
    """Size (or the read error) of every file; in threads (Pillow releases the GIL while decoding)."""
    workers = min(16, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(paths, pool.map(lambda p: _probe(p, check_truncation), paths)))


def _files(sample: Sample) -> list[Path]:
    return [p for p in (sample.image, sample.mask, sample.roi) if p is not None]


READS = ("decode", "header", "none")
"""How `check_files` reads a group's files: decode them (finds truncated files), read their headers, or not at all."""


def check_files(
    groups: list[list[Sample]], shared: set[Path], reads: list[str], skip_unreadable: bool
) -> list[list[Sample]]:
    """Read the files of each group as its `reads` entry says (`READS`); drop or reject unreadable ones; check
    that masks and ROIs have their image's size. Groups read "none" come back unchanged."""
    decoded = [p for group, how in zip(groups, reads) if how == "decode" for s in group for p in _files(s)]
    results = _probe_all(list(dict.fromkeys(decoded)), True)
    headers = [p for group, how in zip(groups, reads) if how == "header" for s in group for p in _files(s)
               if p not in results]
    results.update(_probe_all(list(dict.fromkeys(headers)), False))
    bad = {p: r for p, r in results.items() if isinstance(r, UnreadableImageError)}
    if bad:
        items = [f"{p} ({error.reason})" for p, error in bad.items()]
        if not skip_unreadable or shared & bad.keys():
            raise problem(
                items,
                "cannot read image",
                "files cannot be read",
                "replace or delete {it}, or pass --skip-unreadable (data.skip_unreadable: true) to skip unreadable images",
            )
        warnings.warn(
            f"skipping {len(bad)} unreadable file(s) and the images they belong to: {listing(items)}",
            stacklevel=3,
        )
        groups = [[s for s in group if not bad.keys() & set(_files(s))] if how != "none" else group
                  for group, how in zip(groups, reads)]

    by_file: dict[Path, list[str]] = {}  # one entry per mask / ROI file: a single ROI file is shared by every image
    for sample in (s for group, how in zip(groups, reads) if how != "none" for s in group):
        width, height = results[sample.image]
        for kind, other in (("mask", sample.mask), ("ROI", sample.roi)):
            if other is not None and results[other] != (width, height):
                ow, oh = results[other]
                by_file.setdefault(other, []).append(f"{kind} {ow}×{oh}, image {sample.image} {width}×{height}")
    mismatched = [f"{other} ({found[0]}" + (f", and {len(found) - 1} more images" if len(found) > 1 else "") + ")"
                  for other, found in by_file.items()]
    if mismatched:
        raise problem(
            mismatched,
            "size differs from its image",
            "masks / ROIs differ in size from their images",
            "masks and ROIs must have their image's size: regenerate {it}",
        )
    return groups


def check_disjoint(training: list[Sample], test: list[Sample]) -> None:
    test_files = {s.image.resolve() for s in test}
    shared = [str(s.image) for s in training if s.image.resolve() in test_files]
    if shared:
        raise problem(
            shared,
            "used for both training and testing",
            "images are used for both training and testing",
            "keep test images out of the training folders (data.normal_dir, data.known_defects)",
        )
