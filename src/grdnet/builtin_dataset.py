"""Built-in inspection data set: textured tiles on a conveyor, in MVTec AD layout, with ROI masks.

`make_builtin_dataset(root)` writes `root/tiles` and returns it. Use it with::

    DataConfig(root=root, category="tiles", layout="mvtec",
               roi=root / "tiles" / "roi", test_roi=root / "tiles" / "roi", channels=3)

The ROI folder mirrors the image paths relative to the category folder: `roi/train/good/000.png` is
the ROI of `train/good/000.png`, `roi/test/crack/003.png` the ROI of `test/crack/003.png`. The ROI is
the nominal product outline (0/255).

Each image shows one brick-patterned terracotta tile on a dark gravel conveyor; position, rotation,
size, pattern phase, tint and lighting vary from image to image. Defect types on the tile (inside the
ROI): scratch, spot, crack, missing, contamination. Defect types on the conveyor only (outside the ROI):
background_spot, background_scratch. Ground-truth masks (`ground_truth/<type>/<stem>_mask.png`, 0/255)
mark every defect wherever it is; with ROIs, only defects that touch the ROI count as anomalies
(`grdnet.metrics.effective_labels`), so the background types are normal for a ROI-aware evaluation.

Each image is drawn from its own stream of `grdnet.seeds` ("builtin_dataset", keyed by split, type and
index): the same arguments give byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from grdnet.errors import DataError
from grdnet.seeds import numpy_generator

CATEGORY = "tiles"
DEFECT_TYPES = ("scratch", "spot", "crack", "missing", "contamination")
"""Defects on the product (inside the ROI)."""
BACKGROUND_DEFECT_TYPES = ("background_spot", "background_scratch")
"""Defects on the conveyor only (outside the ROI)."""
FORMAT_VERSION = 3  # 3: drawn from grdnet.seeds streams
_GENERATOR = "grdnet.builtin_dataset"
_SPLIT_IDS = {"train": 0, "test": 1}
_TYPE_IDS = {name: i for i, name in enumerate(("good",) + DEFECT_TYPES + BACKGROUND_DEFECT_TYPES)}
_MASK_THRESHOLD = 0.3
_OUR_ENTRIES = {"train", "test", "ground_truth", "roi", "README.txt", "dataset.json"}


@dataclass(frozen=True)
class RenderedSample:
    """One generated image; arrays are uint8, `mask` and `roi` are 0/255 of shape (H, W)."""

    image: np.ndarray  # (H, W, 3), with the defect
    clean: np.ndarray  # (H, W, 3), the same scene without the defect
    mask: np.ndarray
    roi: np.ndarray


# --------------------------------------------------------------------------------------------- textures
@lru_cache(maxsize=None)
def _texture(name: str, sigma: float) -> np.ndarray:
    """A bundled scikit-image texture as float32 in [0, 1], low-pass filtered against aliasing."""
    from skimage import data

    tex = getattr(data, name)().astype(np.float32)
    if sigma > 0:
        tex = ndimage.gaussian_filter(tex, sigma, mode="wrap")
    lo, hi = np.percentile(tex, (1, 99))
    return np.clip((tex - lo) / (hi - lo), 0.0, 1.0)


def _sample_texture(name: str, step: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Texture values at texture coordinates (x, y) given in output pixels; `step` texels per pixel."""
    tex = _texture(name, 0.45 * step)
    return ndimage.map_coordinates(tex, [y * step, x * step], order=1, mode="grid-wrap")


# --------------------------------------------------------------------------------------------- geometry
def _segments_distance(px: np.ndarray, py: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance from each pixel centre to a polyline through `points` (N, 2) as (x, y)."""
    dist = np.full(px.shape, np.inf, dtype=np.float64)
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((px - x0) * dx + (py - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
        dist = np.minimum(dist, np.hypot(px - x0 - t * dx, py - y0 - t * dy))
    return dist


def _blob_alpha(px, py, cx, cy, radius, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased irregular blob: an ellipse with a wobbly outline."""
    aspect = rng.uniform(0.6, 1.0)
    theta = rng.uniform(0, np.pi)
    dx, dy = px - cx, py - cy
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) / aspect
    r = np.hypot(u, v)
    phi = np.arctan2(v, u)
    wobble = 1.0 + sum(rng.uniform(0.0, 0.12) * np.sin(k * phi + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    return np.clip(radius * wobble - r + 0.5, 0.0, 1.0)


@dataclass(frozen=True)
class _Scene:
    cx: float
    cy: float
    half_w: float
    half_h: float
    corner: float
    angle: float
    tex_x: float
    tex_y: float
    bg_x: float
    bg_y: float
    tint: tuple[float, float, float]
    belt: tuple[float, float, float]
    gain: float
    gradient: tuple[float, float]
    shadow: tuple[float, float]


def _sample_scene(rng: np.random.Generator, size: int) -> _Scene:
    half = rng.uniform(0.24, 0.28) * size
    aspect = rng.uniform(0.9, 1.1)
    base_tint = np.array([0.80, 0.47, 0.33])
    base_belt = np.array([0.20, 0.23, 0.27])
    return _Scene(
        cx=size / 2 + rng.uniform(-0.12, 0.12) * size,
        cy=size / 2 + rng.uniform(-0.12, 0.12) * size,
        half_w=half * aspect,
        half_h=half / aspect,
        corner=rng.uniform(0.12, 0.25) * half,
        angle=rng.uniform(-12, 12) * np.pi / 180,
        tex_x=rng.uniform(0, 4 * size),
        tex_y=rng.uniform(0, 4 * size),
        bg_x=rng.uniform(0, 4 * size),
        bg_y=rng.uniform(0, 4 * size),
        tint=tuple(np.clip(base_tint + rng.normal(0, 0.02, 3), 0, 1)),
        belt=tuple(np.clip(base_belt + rng.normal(0, 0.01, 3), 0, 1)),
        gain=rng.uniform(0.9, 1.1),
        gradient=tuple(rng.uniform(-0.08, 0.08, 2)),
        shadow=tuple(rng.uniform(0.02, 0.05, 2) * size),
    )


class _Canvas:
    """The rendered layers of one scene, in float [0, 1]."""

    def __init__(self, scene: _Scene, size: int):
        self.scene, self.size = scene, size
        y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
        self.x, self.y = x, y
        cos, sin = np.cos(scene.angle), np.sin(scene.angle)
        # product-local coordinates (pixels), so the pattern moves and turns with the tile
        self.u = (x - scene.cx) * cos + (y - scene.cy) * sin
        self.v = -(x - scene.cx) * sin + (y - scene.cy) * cos
        self.sd = self._rounded_rect_sd(self.u, self.v)
        self.roi = self.sd <= 0.0
        self.alpha = np.clip(0.5 - self.sd, 0.0, 1.0)[..., None]

        scale = 64.0 / size  # texture detail is fixed relative to the image, whatever the size
        belt_tex = _sample_texture("gravel", 3.0 * scale, x + scene.bg_x, y + scene.bg_y)
        self.background = np.asarray(scene.belt) * (0.75 + 0.5 * belt_tex)[..., None]
        su, sv = self.u - scene.shadow[0], self.v - scene.shadow[1]
        shadow = 0.45 * np.clip(1.0 - self._rounded_rect_sd(su, sv) / (0.06 * size), 0.0, 1.0)
        shaded = self.background * (1.0 - shadow)[..., None]

        brick = _sample_texture("brick", 4.0 * scale, self.u + scene.tex_x, self.v + scene.tex_y)
        self.product = np.asarray(scene.tint) * (0.55 + 0.6 * brick)[..., None]
        self.clean = shaded * (1 - self.alpha) + self.product * self.alpha

    def _rounded_rect_sd(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        s = self.scene
        qx = np.abs(u) - (s.half_w - s.corner)
        qy = np.abs(v) - (s.half_h - s.corner)
        outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
        return outside + np.minimum(np.maximum(qx, qy), 0) - s.corner

    def to_image(self, local_u: float, local_v: float) -> tuple[float, float]:
        """Image coordinates of a point given in product-local coordinates."""
        cos, sin = np.cos(self.scene.angle), np.sin(self.scene.angle)
        return (self.scene.cx + local_u * cos - local_v * sin, self.scene.cy + local_u * sin + local_v * cos)

    def finish(self, image: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Lighting (gain and linear gradient), sensor noise, quantisation to uint8."""
        s = self.scene
        gx, gy = s.gradient
        light = s.gain * (1.0 + gx * (self.x / self.size - 0.5) * 2 + gy * (self.y / self.size - 0.5) * 2)
        out = image * light[..., None] + noise
        return np.round(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- defects
def _inside_point(canvas: _Canvas, rng: np.random.Generator, margin: float = 0.75) -> tuple[float, float]:
    s = canvas.scene
    return canvas.to_image(rng.uniform(-margin, margin) * s.half_w, rng.uniform(-margin, margin) * s.half_h)


def _outside_point(canvas: _Canvas, rng: np.random.Generator, clearance: float) -> tuple[float, float]:
    candidates = np.argwhere(canvas.sd > clearance)
    iy, ix = candidates[rng.integers(len(candidates))]
    return ix + 0.5, iy + 0.5


def _line_points(start, length, angle, rng, jagged: bool) -> np.ndarray:
    if not jagged:
        end = (start[0] + length * np.cos(angle), start[1] + length * np.sin(angle))
        return np.array([start, end])
    n = int(rng.integers(4, 7))
    points = [np.array(start, dtype=np.float64)]
    for _ in range(n):
        heading = angle + rng.uniform(-0.7, 0.7)
        points.append(points[-1] + (length / n) * np.array([np.cos(heading), np.sin(heading)]))
    return np.array(points)


def _draw_defect(kind: str, canvas: _Canvas, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(alpha (H, W), target (H, W, 3)): the defect's coverage and the colour it gives those pixels."""
    f = canvas.size / 64.0
    x, y, clean = canvas.x, canvas.y, canvas.clean
    if kind in ("scratch", "background_scratch"):
        start = _inside_point(canvas, rng) if kind == "scratch" else _outside_point(canvas, rng, 2 * f)
        points = _line_points(start, rng.uniform(10, 18) * f, rng.uniform(0, 2 * np.pi), rng, jagged=False)
        width = rng.uniform(1.2, 1.8) * f
        alpha = np.clip(width / 2 + 0.5 - _segments_distance(x, y, points), 0.0, 1.0)
        dark = kind == "scratch" and rng.random() < 0.4  # on the dark belt only bright scratches show
        shade = rng.uniform(0.0, 0.1) if dark else rng.uniform(0.85, 1.0)
        target = 0.25 * clean + 0.75 * shade
    elif kind in ("spot", "background_spot"):
        centre = _inside_point(canvas, rng) if kind == "spot" else _outside_point(canvas, rng, 5 * f)
        alpha = _blob_alpha(x, y, *centre, rng.uniform(2.5, 4.0) * f, rng)
        target = clean * rng.uniform(0.1, 0.3) if kind == "spot" else np.broadcast_to(
            np.array([0.75, 0.72, 0.62]) * rng.uniform(0.8, 1.0), clean.shape)  # pale dust on the belt
    elif kind == "crack":
        points = _line_points(_inside_point(canvas, rng), rng.uniform(14, 22) * f,
                              rng.uniform(0, 2 * np.pi), rng, jagged=True)
        width = rng.uniform(1.6, 2.2) * f
        alpha = np.clip(width / 2 + 0.5 - _segments_distance(x, y, points), 0.0, 1.0)
        target = clean * rng.uniform(0.05, 0.2)
    elif kind == "missing":
        s = canvas.scene
        # a bite out of an edge or a corner of the tile
        side = rng.integers(4)
        t = rng.uniform(-0.8, 0.8)
        local = [(s.half_w, t * s.half_h), (-s.half_w, t * s.half_h),
                 (t * s.half_w, s.half_h), (t * s.half_w, -s.half_h)][side]
        centre = canvas.to_image(*local)
        alpha = _blob_alpha(x, y, *centre, rng.uniform(4.5, 7.0) * f, rng) * canvas.alpha[..., 0]
        target = canvas.background
    elif kind == "contamination":
        centre = _inside_point(canvas, rng)
        alpha = _blob_alpha(x, y, *centre, rng.uniform(2.5, 4.0) * f, rng)
        colour = np.array([[0.30, 0.55, 0.20], [0.20, 0.35, 0.70], [0.12, 0.10, 0.08]])[rng.integers(3)]
        grass = _sample_texture("grass", 3.0 * 64.0 / canvas.size, x + rng.uniform(0, 500), y + rng.uniform(0, 500))
        target = colour * (0.6 + 0.7 * grass)[..., None]
    else:
        raise ValueError(f"unknown defect type {kind!r}")
    return alpha, np.asarray(target)


def _defect_mask(kind: str, canvas: _Canvas, alpha: np.ndarray) -> np.ndarray:
    mask = alpha >= _MASK_THRESHOLD
    if kind in BACKGROUND_DEFECT_TYPES:
        return mask & (canvas.sd > 1.0)  # keep clear of the ROI, including its anti-aliased rim
    return mask & canvas.roi


def render_sample(seed: int, split: str, defect_type: str, index: int, size: int = 64) -> RenderedSample:
    """Render one image of the data set exactly as `make_builtin_dataset` writes it.

    Also returns the same scene without the defect (`clean`): pixels outside `mask` are identical.
    """
    if defect_type != "good" and defect_type not in DEFECT_TYPES + BACKGROUND_DEFECT_TYPES:
        raise ValueError(f"unknown defect type {defect_type!r}")
    rng = numpy_generator(seed, "builtin_dataset", _SPLIT_IDS[split], _TYPE_IDS[defect_type], index)
    canvas = _Canvas(_sample_scene(rng, size), size)
    noise = rng.normal(0.0, 0.012, (size, size, 3))
    clean = canvas.finish(canvas.clean, noise)
    roi = canvas.roi.astype(np.uint8) * 255
    if defect_type == "good":
        return RenderedSample(clean, clean, np.zeros((size, size), np.uint8), roi)
    min_area = 6 * (size / 64.0) ** 2
    for _ in range(100):
        alpha, target = _draw_defect(defect_type, canvas, rng)
        mask = _defect_mask(defect_type, canvas, alpha)
        if mask.sum() >= min_area:
            break
    else:  # pragma: no cover - the defect sizes make this practically impossible
        raise RuntimeError(f"could not place a {defect_type} defect")
    a = np.where(mask, alpha, 0.0)[..., None]
    blended = canvas.clean * (1 - a) + target * a
    image = canvas.finish(np.where(mask[..., None], blended, canvas.clean), noise)
    return RenderedSample(image, clean, mask.astype(np.uint8) * 255, roi)


# ---------------------------------------------------------------------------------------------- writing
def _parameters(seed: int, size: int, n_train: int, n_test_good: int, n_test_defect_per_type: int) -> dict:
    return {
        "generator": _GENERATOR,
        "format_version": FORMAT_VERSION,
        "category": CATEGORY,
        "seed": seed,
        "size": size,
        "n_train": n_train,
        "n_test_good": n_test_good,
        "n_test_defect_per_type": n_test_defect_per_type,
        "defect_types": list(DEFECT_TYPES),
        "background_defect_types": list(BACKGROUND_DEFECT_TYPES),
    }


def _readme(params: dict) -> str:
    n_def = params["n_test_defect_per_type"]
    types = ", ".join(DEFECT_TYPES)
    bg_types = ", ".join(BACKGROUND_DEFECT_TYPES)
    return f"""grdnet built-in data set "{CATEGORY}" (MVTec AD layout, {params['size']}x{params['size']} RGB PNG)

A brick-patterned terracotta tile on a dark gravel conveyor. Tile position, rotation, size, pattern,
tint and lighting vary between images. Generated by grdnet.builtin_dataset.make_builtin_dataset
(seed {params['seed']}); parameters in dataset.json.

train/good/NNN.png                      {params['n_train']} normal images
test/good/NNN.png                       {params['n_test_good']} normal images
test/<type>/NNN.png                     {n_def} images per defect type
ground_truth/<type>/NNN_mask.png        defect masks, 0/255, wherever the defect is
roi/<split>/<type>/NNN.png              ROI (the tile), 0/255; mirrors the image paths

Defects on the tile (inside the ROI): {types}.
Defects on the conveyor only (outside the ROI): {bg_types}.
Only defects that touch the ROI count as anomalies when ROIs are used: images of the background
types are then normal (grdnet.metrics.effective_labels); without ROIs they are defects.

grdnet settings: data.root=<parent of this folder>, data.category={CATEGORY}, data.layout=mvtec,
data.roi=<this folder>/roi, data.test_roi=<this folder>/roi
"""


def _save(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", optimize=False, compress_level=6)


def _write(target: Path, params: dict) -> None:
    seed, size = params["seed"], params["size"]
    groups = [("train", "good", params["n_train"]), ("test", "good", params["n_test_good"])]
    groups += [("test", kind, params["n_test_defect_per_type"]) for kind in DEFECT_TYPES + BACKGROUND_DEFECT_TYPES]
    for split, kind, count in groups:
        width = max(3, len(str(count - 1)))
        image_dir, roi_dir = target / split / kind, target / "roi" / split / kind
        image_dir.mkdir(parents=True)
        roi_dir.mkdir(parents=True)
        if kind != "good":
            (target / "ground_truth" / kind).mkdir(parents=True)
        for index in range(count):
            stem = f"{index:0{width}d}"
            sample = render_sample(seed, split, kind, index, size)
            _save(sample.image, image_dir / f"{stem}.png")
            _save(sample.roi, roi_dir / f"{stem}.png")
            if kind != "good":
                _save(sample.mask, target / "ground_truth" / kind / f"{stem}_mask.png")
    (target / "README.txt").write_text(_readme(params))
    (target / "dataset.json").write_text(json.dumps(params, indent=2) + "\n")  # last: marks it complete


def _existing_parameters(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "dataset.json").read_text())
    except (OSError, ValueError):
        return None


def make_builtin_dataset(
    root: Path,
    seed: int = 0,
    size: int = 64,
    n_train: int = 160,
    n_test_good: int = 30,
    n_test_defect_per_type: int = 10,
    overwrite: bool = False,
) -> Path:
    """Write the built-in data set to `root/tiles` (if not already there) and return that folder.

    An existing folder whose dataset.json matches the arguments is reused; otherwise (or with
    `overwrite`) it is regenerated. Point `DataConfig` at it with `root=root, category="tiles",
    layout="mvtec", roi=root/"tiles"/"roi", test_roi=root/"tiles"/"roi"`.
    """
    if size < 32:
        raise ValueError(f"size must be at least 32, got {size}")
    if min(n_train, n_test_good, n_test_defect_per_type) < 1:
        raise ValueError("n_train, n_test_good and n_test_defect_per_type must be at least 1")
    root = Path(root)
    folder = root / CATEGORY
    params = _parameters(seed, size, n_train, n_test_good, n_test_defect_per_type)
    if folder.exists():
        existing = _existing_parameters(folder)
        if existing == params and not overwrite:
            return folder
        ours = (existing or {}).get("generator") == _GENERATOR
        if not ours and not {p.name for p in folder.iterdir()} <= _OUR_ENTRIES:
            raise DataError(
                f"{folder}: exists and is not a grdnet built-in data set; choose another root or remove the folder"
            )
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{CATEGORY}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        _write(staging, params)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
