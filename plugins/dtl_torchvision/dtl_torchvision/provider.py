"""Build torchvision classification models as staged backbones.

Each model is built as its torchvision builder would build it for its DEFAULT weights
(same image size, same input transform). The host finds and reads the weights from the
source declared here (torchvision's file name and URL, offline first) and this module
loads them strictly; the network is staged by :func:`.staging.to_staged_backbone`.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from desktop_tl.errors import UserError
from desktop_tl.plugin import (
    Backbone,
    PretrainedWeights,
    Preprocessing,
    WeightsSource,
    drop_aux_classifiers,
    file_name_from_url,
    final_linear,
)
from desktop_tl.plugin.staging import AUX_CLASSIFIER_ATTRIBUTES

from .staging import to_staged_backbone

if TYPE_CHECKING:  # pragma: no cover - typing only
    from torch import Tensor, nn
    from torchvision.models import Weights

PROVIDER_ID = "torchvision"

#: Old DenseNet checkpoints (the published ones) name layers ``norm.1`` where the
#: model now has ``norm1``; torchvision renames them the same way when it loads them.
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var"
    r"|num_batches_tracked))$"
)


def list_models() -> list[str]:
    """Every classification model torchvision registers (no detection, video, ...)."""
    return list(_model_names())


@functools.lru_cache(maxsize=1)
def _model_names() -> tuple[str, ...]:
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def default_weights(model_name: str) -> "Weights":
    """The DEFAULT weights entry of a model: file URL, transforms, categories."""
    import torchvision

    if model_name not in _model_names():
        import difflib

        close = difflib.get_close_matches(model_name, list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(
            f"torchvision has no classification model named {model_name!r}{hint} "
            "(`desktop-tl models --provider torchvision` lists them)"
        )
    return torchvision.models.get_model_weights(model_name).DEFAULT


def weights_source(model_name: str) -> WeightsSource:
    """Where the DEFAULT weights may be: torchvision's file name (in the torch hub cache
    or the local weights folder) and its download URL. The file name carries the first
    hex digits of the file's sha256, which the host checks."""
    weights = default_weights(model_name)
    return WeightsSource(
        file_names=(file_name_from_url(weights.url),), url=weights.url, label=f"torchvision {weights}"
    )


def preprocessing_of(weights: "Weights") -> Preprocessing:
    """The eval transform the weights were trained with (resize, crop, mean, std)."""
    transform = weights.transforms()
    return Preprocessing(
        resize=int(transform.resize_size[0]),
        crop=int(transform.crop_size[0]),
        mean=tuple(float(v) for v in transform.mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in transform.std),  # type: ignore[arg-type]
        interpolation=transform.interpolation.value,
    )


def build(model_name: str, weights: PretrainedWeights | None) -> Backbone:
    """Build ``model_name`` as a staged backbone, loading ``weights`` when given."""
    default = default_weights(model_name)
    model = build_model(model_name, pretrained=weights is not None)
    categories: list[str] | None = list(default.meta["categories"])
    if weights is not None:
        classifier_name, _ = final_linear(model)
        skipped = weights.load_into(
            model,
            optional_prefixes=(classifier_name + ".",),
            transform=lambda state_dict: adapt_state_dict(model, state_dict),
        )
        if skipped:  # e.g. a model fine-tuned on other classes: its features still transfer
            categories = None
    staged = to_staged_backbone(model)
    return Backbone(
        module=staged.module,
        feature_dim=staged.feature_dim,
        preprocessing=preprocessing_of(default),
        categories=categories,
    )


def build_model(model_name: str, pretrained: bool) -> "nn.Module":
    """The classification model, shaped as its DEFAULT weights need (a randomly
    initialised one when ``pretrained`` is false, else one ready to load them)."""
    import torchvision

    default = default_weights(model_name)
    kwargs: dict[str, Any] = {"num_classes": len(default.meta["categories"])}
    module = torchvision.models.get_model_builder(model_name).__module__
    min_size = default.meta.get("min_size")
    if module.endswith(".vision_transformer"):
        kwargs["image_size"] = min_size[0]  # e.g. 518 for vit_h_14's SWAG weights
    elif module.endswith(".maxvit"):
        kwargs["input_size"] = min_size
    elif module.endswith((".inception", ".googlenet")):
        # the published weights expect [-1, 1] inputs and carry auxiliary classifiers
        kwargs.update(transform_input=True, aux_logits=True, init_weights=not pretrained)
    return torchvision.models.get_model(model_name, weights=None, **kwargs)


def adapt_state_dict(model: "nn.Module", state_dict: dict[str, "Tensor"]) -> dict[str, "Tensor"]:
    """Fix what torchvision fixes when it loads its own files: old DenseNet key names,
    MNASNet's version tag; drop auxiliary classifiers the file does not have."""
    from collections import OrderedDict

    import torchvision

    if isinstance(model, torchvision.models.DenseNet):
        renamed = OrderedDict()
        for key, value in state_dict.items():
            match = _DENSENET_OLD_KEY.match(key)
            renamed[match.group(1) + match.group(2) if match else key] = value
        metadata = getattr(state_dict, "_metadata", None)
        if metadata is not None:
            renamed._metadata = metadata  # type: ignore[attr-defined]
        state_dict = renamed
    if isinstance(model, torchvision.models.MNASNet) and "" not in getattr(state_dict, "_metadata", {}):
        # MNASNet refuses a state dict without its version tag (safetensors files have
        # none); such a file holds the current layout, version 2.
        metadata = OrderedDict(getattr(state_dict, "_metadata", {}))
        metadata[""] = {"version": 2}
        state_dict = OrderedDict(state_dict)
        state_dict._metadata = metadata  # type: ignore[attr-defined]
    aux = tuple(f"{name}." for name in AUX_CLASSIFIER_ATTRIBUTES)
    if not any(key.startswith(aux) for key in state_dict):
        drop_aux_classifiers(model)
    return state_dict
