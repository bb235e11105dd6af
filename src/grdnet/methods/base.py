"""What a method declares: its `Method` record and the base of its typed options.

Pydantic only (no torch): the configuration imports the options, and the record names its model and recipe
as "module:Class" strings that are imported when first used, so `import grdnet.methods` stays light.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, Mapping, get_args

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from torch import nn

    from grdnet.config import RunConfig

Width = Annotated[int, Field(ge=4)]
"""Channels of a network's first (base) or widest (max) stage."""
Norm = Literal["group", "batch", "instance"]
"""Normalisation in the residual / U-Net blocks: GroupNorm (default, batch-independent), BatchNorm, InstanceNorm."""
Upsample = Literal["transpose", "resize"]
"""Decoder upsampling: transposed convolution, or nearest resize followed by a convolution."""
SegmenterOutput = Literal["sigmoid", "softmax"]
Backbone = Literal["efficientnet_lite0", "resnet18", "wide_resnet50_2"]
"""Pretrained feature extractors of `grdnet.models.backbones`."""
Level = Literal["layer1", "layer2", "layer3", "layer4"]
"""Backbone stages at strides 4, 8, 16 and 32."""


class MethodOptions(BaseModel):
    """Base of a method's options, the configuration's `model` section: `name` (a Literal of the method's
    name, the section's discriminator) and the method's own fields with its defaults. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str
    """Each method narrows it to `Literal["<its name>"]` with that default."""


@dataclass(frozen=True)
class Method:
    """One method: the only place it is listed. Sub-package `grdnet.methods.<name>` exposes it as `METHOD`."""

    name: str
    summary: str
    """One line: what the method is (shown in docs and errors)."""
    options: type[MethodOptions]
    """The `model` section's model for this method; its field defaults are the method's model defaults."""
    model: str
    """"module:Class" of the `nn.Module`; the class has `from_config(cfg: RunConfig)`."""
    recipe: str
    """"module:Class" of its training recipe (`grdnet.training.recipes.base.Recipe` subclass)."""
    map_scored: bool
    """The image score is the maximum of the (smoothed, region-masked) anomaly map, so the `ScoringHead`
    computes it and the method may be tiled (`data.tile_size`); otherwise the model's own `score` is kept."""
    single_pass: bool = False
    """Fitted in one pass over the training images (no optimiser): every image is seen once, an interrupted
    pass is not saved, and the hardware profiles set no epoch or time budget."""
    tileable: bool = False
    """The `cpu` / `gpu` hardware profiles fit the photos at native resolution and train on tiles of them
    (with the profiles' shared synthesis settings); needs `map_scored`."""
    onnx_exportable: bool = True
    """`grdnet export` can write its inference graph to ONNX."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Dotted settings outside `model` where this method's defaults differ from `RunConfig`'s (GRD-Net's)."""
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per hardware profile ("cpu", "gpu"): dotted settings the profile gives this method."""
    quick: Mapping[str, Any] = field(default_factory=dict)
    """`model` options of a toy-sized network for 64² smoke runs (the tests, the benchmarks' `--quick`)."""

    def __post_init__(self) -> None:
        declared = get_args(self.options.model_fields["name"].annotation)
        if declared != (self.name,):
            raise TypeError(f"method '{self.name}': its options need `name: Literal['{self.name}'] = '{self.name}'`")
        if any(key.startswith("model.") or "." not in key for key in self.defaults):
            raise TypeError(f"method '{self.name}': `defaults` are dotted keys outside `model` (model defaults are its options')")
        if self.tileable and not self.map_scored:
            raise TypeError(f"method '{self.name}': only map-scored methods can be tiled")

    def build_model(self, cfg: RunConfig) -> nn.Module:
        """The method's model built from `cfg` (whose `model` section is this method's options)."""
        return load(self.model).from_config(cfg)

    def recipe_class(self) -> type:
        """The training recipe's class (imports the training layer)."""
        return load(self.recipe)


def load(target: str) -> Any:
    """The object a "package.module:Name" string names."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
