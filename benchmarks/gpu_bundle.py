"""Pack what a GPU benchmark session needs into the repository's ignored `.bundle/` folder.

The device machine receives only the working tree (at most 64 MiB) and reaches no package registry, so:

- `.bundle/wheels/`: the packages grdnet needs that the GPU image lacks (`MISSING_ON_GPU`), for CPython 3.12
  on manylinux x86-64, at the versions installed here (downloaded with pip; `--no-wheels` skips this);
- `.bundle/data/mtd/magnetic_tile`: MTD with each image shrunk so that its longer side is at most `--max-side`
  pixels (default 320; the benchmarks train at 256²), masks and ROIs resized nearest; same layout and names;
- `.bundle/data/dtd/images`: `--dtd-per-class` textures per DTD class at 256², for DRAEM's texture source.

Then, with the device tool: `run(command="bash benchmarks/gpu_session.sh grdnet_mtd", carry=[".bundle"])`.

    python benchmarks/gpu_bundle.py
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from PIL import Image

from common import REPO, shared_data_dir

MISSING_ON_GPU = ("kornia", "kornia_rs", "pydantic", "pydantic_core", "annotated-types", "typing-inspection")
"""grdnet's requirements (and theirs) that the device image does not hold (device KINDS.md, 2026-11-17)."""
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
LIMIT_BYTES = 64 * 2**20
"""What may travel to the device machine: the whole working tree, this bundle included."""
MASK_FOLDERS = {"ground_truth", "roi"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def shrink_tree(source: Path, target: Path, max_side: int) -> int:
    """Copy the image tree `source` to `target` with every image's longer side at most `max_side` (aspect kept);
    files under a `ground_truth` or `roi` folder are resized nearest, others with Lanczos. Returns files written."""
    count = 0
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            scale = max_side / max(image.size)
            if scale < 1:
                size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                is_mask = MASK_FOLDERS & set(path.relative_to(source).parts)
                image = image.resize(size, Image.Resampling.NEAREST if is_mask else Image.Resampling.LANCZOS)
            options = {"quality": 95} if out.suffix.lower() in {".jpg", ".jpeg"} else {}
            image.save(out, **options)
        count += 1
    return count


def texture_subset(source: Path, target: Path, per_class: int, side: int = 256) -> int:
    """The first `per_class` images of each class folder of `source` (DTD layout), resized to side × side JPEG."""
    count = 0
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:per_class]
        for path in files:
            out = target / folder.name / f"{path.stem}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as image:
                image.convert("RGB").resize((side, side), Image.Resampling.LANCZOS).save(out, quality=90)
            count += 1
    return count


def download_wheels(target: Path, python_version: str = "3.12") -> None:
    """The `MISSING_ON_GPU` wheels at this machine's installed versions, for that CPython on manylinux x86-64."""
    target.mkdir(parents=True, exist_ok=True)
    platforms = [arg for name in PLATFORMS for arg in ("--platform", name)]
    pins = [f"{name}=={version(name)}" for name in MISSING_ON_GPU]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", python_version, "--implementation", "cp", *platforms, "-d", str(target), *pins],
                   check=True)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mtd", type=Path, default=shared_data_dir() / "mtd" / "magnetic_tile",
                        help="the MTD category folder (MVTec layout)")
    parser.add_argument("--dtd", type=Path, default=shared_data_dir() / "dtd" / "images", help="DTD class folders")
    parser.add_argument("--out", type=Path, default=REPO / ".bundle")
    parser.add_argument("--max-side", type=int, default=320)
    parser.add_argument("--dtd-per-class", type=int, default=4)
    parser.add_argument("--no-wheels", action="store_true", help="skip the wheel download (no network)")
    parser.add_argument("--python-version", default="3.12", help="the device's Python (3.12 on the GPU host)")
    args = parser.parse_args(argv)

    for needed in (args.mtd, args.dtd):
        if not needed.is_dir():
            parser.error(f"{needed}: not a folder (set GRDNET_DATA_DIR or pass --mtd / --dtd)")
    shutil.rmtree(args.out, ignore_errors=True)
    images = shrink_tree(args.mtd, args.out / "data" / "mtd" / args.mtd.name, args.max_side)
    textures = texture_subset(args.dtd, args.out / "data" / "dtd" / "images", args.dtd_per_class)
    if not args.no_wheels:
        download_wheels(args.out / "wheels", args.python_version)
    size = folder_bytes(args.out)
    print(f"{args.out}: {images} MTD files (longer side <= {args.max_side}), {textures} textures, "
          f"{size / 2**20:.1f} MiB in all")
    if size > LIMIT_BYTES * 0.9:
        print(f"error: {size / 2**20:.1f} MiB leaves no room for the repository under the device's "
              f"{LIMIT_BYTES // 2**20} MiB; lower --max-side or --dtd-per-class", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
