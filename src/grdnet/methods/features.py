"""Options PatchCore and PaDiM share: the frozen pretrained backbone and the map's Gaussian smoothing."""

from pydantic import Field

from grdnet.methods.base import Backbone, MethodOptions


class FeatureOptions(MethodOptions):
    backbone: Backbone = "efficientnet_lite0"
    backbone_weights: str | None = None
    """State dict file of the backbone (a torchvision or timm one for the ResNets); None = the weights of the
    installed EfficientNet-Lite0 package (a dependency of grdnet)."""
    sigma: float = Field(4.0, gt=0.0)
    """σ in pixels of the Gaussian that smooths the map."""
