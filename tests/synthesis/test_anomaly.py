"""AnomalySynthesizer, blend and texture sources."""

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from grdnet.config import SynthesisConfig
from grdnet.errors import ConfigError
from grdnet.synthesis import (
    AUGMENTATIONS,
    AnomalySynthesizer,
    FolderTextures,
    augment_textures,
    blend,
    self_textures,
)

DATA_DIR = Path(os.environ.get("GRDNET_DATA_DIR", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
DTD = DATA_DIR / "dtd" / "images"
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def synth(size=(32, 32), channels=3, **kw) -> AnomalySynthesizer:
    return AnomalySynthesizer(SynthesisConfig(**kw), size, channels, "cpu")


@pytest.fixture
def texture_dir(tmp_path: Path) -> Path:
    """Solid-colour PNGs, one of them in a sub-folder (the folder is read recursively)."""
    (tmp_path / "sub").mkdir()
    for i, colour in enumerate(COLOURS):
        folder = tmp_path / "sub" if i == 0 else tmp_path
        Image.new("RGB", (40, 24), colour).save(folder / f"t{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_blend_hand_made_case():
    x = torch.tensor([0.2, 0.4, 0.6, 0.8]).view(1, 1, 2, 2)
    t = torch.tensor([1.0, 0.0, 0.5, 0.5]).view(1, 1, 2, 2)
    m = torch.tensor([1.0, 1.0, 0.0, 1.0]).view(1, 1, 2, 2)
    out = blend(x, t, m, torch.tensor([0.25]))
    expected = torch.tensor([0.75 * 1.0 + 0.25 * 0.2, 0.25 * 0.4, 0.6, 0.75 * 0.5 + 0.25 * 0.8]).view(1, 1, 2, 2)
    assert torch.allclose(out, expected)


@pytest.mark.parametrize("texture", ["random", "self", "folder"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("batch", [1, 16])
def test_shapes_ranges_and_masks(texture, channels, batch, texture_dir):
    s = synth(channels=channels, texture=texture, texture_dir=texture_dir if texture == "folder" else None)
    images = torch.rand(batch, channels, 32, 32)
    out, masks, labels = s(images, gen())
    assert out.shape == images.shape and masks.shape == (batch, 1, 32, 32) and labels.shape == (batch,)
    assert labels.dtype == torch.float32 and set(labels.tolist()) <= {0.0, 1.0}
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    assert 0.0 <= out.min().item() and out.max().item() <= 1.0
    area = masks.sum(dim=(1, 2, 3))
    assert ((area > 0) == (labels == 1)).all()  # never empty when label 1, empty when label 0
    assert torch.equal(out * (1 - masks), images * (1 - masks))  # only the mask is touched


def test_probability_respected():
    s = synth(probability=0.5, texture_augmentations=0)
    _, masks, labels = s(torch.rand(2000, 3, 32, 32), gen())
    assert abs(labels.mean().item() - 0.5) < 0.05
    assert (masks.sum(dim=(1, 2, 3)) > 0).sum().item() == labels.sum().item()


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_probability_extremes(p):
    images = torch.rand(16, 3, 32, 32)
    out, masks, labels = synth(probability=p)(images, gen())
    assert (labels == p).all()
    if p == 0.0:
        assert torch.equal(out, images) and masks.sum() == 0


def test_beta_range_recovered_from_known_texture():
    # x = 0 and T = 1 give x_n = (1 - β) inside the mask, so β = 1 - x_n per pixel.
    s = synth(probability=1.0, beta=(0.3, 0.6), texture_augmentations=0)
    s.texture_source = lambda images, generator: torch.ones_like(images)
    out, masks, _ = s(torch.zeros(400, 3, 32, 32), gen())
    beta = 1 - out.amax(dim=(1, 2, 3))
    assert torch.allclose(out, (1 - beta).view(-1, 1, 1, 1) * masks.expand_as(out))  # one β per sample
    assert beta.min().item() >= 0.3 - 1e-6 and beta.max().item() <= 0.6 + 1e-6
    assert beta.min().item() < 0.32 and beta.max().item() > 0.58  # spans the range


def test_deterministic_per_seed(texture_dir):
    s = synth(texture="folder", texture_dir=texture_dir)
    images = torch.rand(16, 3, 32, 32, generator=gen(9))
    a, b, c = s(images, gen(1)), s(images, gen(1)), s(images, gen(2))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_folder_textures_come_from_the_folder(texture_dir):
    s = synth(probability=1.0, beta=(0.0, 0.0), texture="folder", texture_dir=texture_dir, texture_augmentations=0)
    out, masks, _ = s(torch.rand(16, 3, 32, 32), gen())
    colours = torch.tensor(COLOURS, dtype=torch.float32) / 255
    for sample, mask in zip(out, masks):
        pixels = sample[:, mask[0].bool()].T  # β = 0: the texture itself
        assert any(torch.allclose(pixels, c.expand_as(pixels)) for c in colours)
    assert len(s.texture_source.bank) == len(COLOURS)


def test_folder_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        synth(texture="folder", texture_dir=tmp_path / "missing")
    with pytest.raises(ConfigError, match="no .jpg/.png"):
        synth(texture="folder", texture_dir=tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    s = synth(texture="folder", texture_dir=tmp_path)
    with pytest.warns(UserWarning, match="unreadable"), pytest.raises(ConfigError, match="no readable"):
        s(torch.rand(2, 3, 32, 32), gen())


@pytest.mark.skipif(not DTD.is_dir(), reason=f"no DTD textures at {DTD} (set GRDNET_DATA_DIR)")
def test_dtd_folder():
    textures = FolderTextures(DTD, (32, 32), 3, "cpu", max_images=12)
    assert len(textures.bank) == 12 and textures.bank.dtype == torch.uint8
    assert len({p.parent.name for p in textures.files}) > 6  # spread over categories
    s = synth(probability=1.0, texture="folder", texture_dir=DTD)
    s.texture_source = textures
    out, masks, labels = s(torch.rand(8, 3, 32, 32), gen())
    assert labels.sum() == 8 and 0.0 <= out.min().item() and out.max().item() <= 1.0


def test_self_texture_is_a_shifted_or_flipped_copy():
    images = torch.randperm(16 * 3 * 16 * 16).float().view(16, 3, 16, 16) / (16 * 3 * 16 * 16)
    textures = self_textures(images, gen())
    assert torch.equal(textures.flatten(1).sort(dim=1).values, images.flatten(1).sort(dim=1).values)
    for image, texture in zip(images, textures):
        candidates = [image, image.flip(-1), image.flip(-2), image.flip(-1, -2)]
        assert any(
            torch.equal(torch.roll(c, (dy, dx), dims=(-2, -1)), texture)
            for c in candidates for dy in range(16) for dx in range(16)
        )
    assert not torch.equal(textures, images)


@pytest.mark.parametrize(
    ("name", "channels"), [(n, c) for n in AUGMENTATIONS for c in (1, 3) if c == 3 or n != "hue_saturation"]
)
def test_each_augmentation_keeps_shape_and_range(name, channels):
    x = torch.rand(4, channels, 16, 16)
    out = AUGMENTATIONS[name](x, torch.rand(4, 2, generator=gen())).clamp(0, 1)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, x)


@pytest.mark.parametrize("channels", [1, 3])
def test_augment_textures(channels):
    x = torch.rand(16, channels, 16, 16)
    assert torch.equal(augment_textures(x, 0, gen()), x)
    out = augment_textures(x, 3, gen())
    assert out.shape == x.shape and 0.0 <= out.min().item() and out.max().item() <= 1.0
    assert not torch.equal(out, x)
    assert augment_textures(x, 20, gen()).shape == x.shape  # more than available: all of them


def test_wrong_image_shape():
    with pytest.raises(ValueError, match="built for"):
        synth(channels=3)(torch.rand(2, 1, 32, 32), gen())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda(texture_dir):
    for texture in ("random", "self", "folder"):
        s = AnomalySynthesizer(SynthesisConfig(texture=texture, texture_dir=texture_dir), (64, 64), 3, "cuda")
        out, masks, labels = s(torch.rand(16, 3, 64, 64, device="cuda"), torch.Generator("cuda").manual_seed(0))
        assert out.device.type == masks.device.type == labels.device.type == "cuda"


def test_local_anomalies_are_single_small_blobs():
    """local_extent confines anomalies to one ellipse of at most 2·hi pixels across, never empty."""
    from grdnet.config import SynthesisConfig
    from grdnet.synthesis import AnomalySynthesizer

    images = torch.rand(32, 1, 96, 96, generator=torch.Generator().manual_seed(1))
    local = SynthesisConfig(texture="self", probability=1.0, local_extent=(2.0, 8.0), local_share=1.0)
    _, masks, _ = AnomalySynthesizer(local, (96, 96), 1, "cpu")(images, torch.Generator().manual_seed(0))
    rows, cols = masks[:, 0].amax(dim=2), masks[:, 0].amax(dim=1)
    assert (masks.flatten(1).amax(1) == 1).all()
    assert (rows.sum(1) <= 17).all() and (cols.sum(1) <= 17).all()
    spread = SynthesisConfig(texture="self", probability=1.0)
    _, wide, _ = AnomalySynthesizer(spread, (96, 96), 1, "cpu")(images, torch.Generator().manual_seed(0))
    assert wide.flatten(1).sum(1).median() > 4 * masks.flatten(1).sum(1).median()


def test_local_extent_is_validated():
    from grdnet.config import SynthesisConfig

    with pytest.raises(ValueError, match="local_extent"):
        SynthesisConfig(local_extent=(8.0, 2.0))


def test_stroke_share_draws_thin_strokes_and_zero_keeps_the_old_anomalies():
    """stroke_share 1 turns every local anomaly into a stroke; 0 (the default) leaves the synthesis unchanged."""
    from grdnet.config import SynthesisConfig
    from grdnet.synthesis import AnomalySynthesizer

    images = torch.rand(32, 1, 96, 96, generator=torch.Generator().manual_seed(1))
    base = dict(texture="self", probability=1.0, local_extent=(3.0, 8.0), local_share=1.0)
    blobs = AnomalySynthesizer(SynthesisConfig(**base), (96, 96), 1, "cpu")
    unchanged = AnomalySynthesizer(SynthesisConfig(**base, stroke_share=0.0), (96, 96), 1, "cpu")
    strokes = AnomalySynthesizer(SynthesisConfig(**base, stroke_share=1.0), (96, 96), 1, "cpu")
    first = blobs(images, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(first, unchanged(images, torch.Generator().manual_seed(0))))
    _, masks, _ = strokes(images, torch.Generator().manual_seed(0))
    assert (masks.flatten(1).amax(1) == 1).all()
    thin = masks[:, 0]
    # a stroke is at most 3 px wide: no pixel has a full 5×5 neighbourhood of stroke pixels
    assert torch.nn.functional.avg_pool2d(thin[:, None], 5, stride=1).amax() < 1.0
    assert torch.nn.functional.avg_pool2d(first[1][:, :1], 5, stride=1).amax() == 1.0  # blobs do have one
