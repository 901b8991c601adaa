"""timm models as staged backbones, with preprocessing from timm's data config.

A model is built as ``timm.create_model(name)`` builds it for its pretrained tag (image
size, classes), the host's weights are loaded into it as timm would load them (timm's
own state-dict filter first), then its classifier is removed with
``reset_classifier(0)`` and it is staged by :func:`.staging.stage`.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from desktop_tl.errors import UserError
from desktop_tl.plugin import INTERPOLATIONS, Backbone, Preprocessing, PretrainedWeights

if TYPE_CHECKING:  # pragma: no cover - typing only
    from torch import Tensor, nn

PROVIDER_ID = "timm"


def list_models() -> list[str]:
    """Every timm model with pretrained weights, under its tagged name, whose input is
    square (the engine's preprocessing ends in a square crop)."""
    return list(_model_names())


@functools.lru_cache(maxsize=1)
def _model_names() -> tuple[str, ...]:
    import timm

    names = []
    for name in timm.list_models(pretrained=True):
        _, height, width = timm.models.get_pretrained_cfg(name).input_size
        if height == width:
            names.append(name)
    return tuple(names)


def pretrained_cfg(model_name: str) -> Any:
    """timm's pretrained config of a listed model (file locations, input size...)."""
    import timm

    if model_name not in _model_names():
        import difflib

        if "." not in model_name and timm.is_model(model_name):  # an architecture
            tags = [n for n in _model_names() if n.startswith(model_name + ".")][:3]
            hint = (
                f"; a model is named with its weights tag, e.g. {', '.join(tags)}"
                if tags
                else "; timm has no pretrained weights for it"
            )
        else:
            close = difflib.get_close_matches(model_name, _model_names(), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(
            f"timm has no pretrained model named {model_name!r}{hint} "
            "(`desktop-tl models --provider timm` lists them)"
        )
    return timm.models.get_pretrained_cfg(model_name)


def build(model_name: str, weights: PretrainedWeights | None) -> Backbone:
    """``model_name`` as a staged backbone, with ``weights`` loaded when given."""
    import timm

    from .staging import stage

    pretrained_cfg(model_name)  # a clear message for a name timm does not offer
    model = timm.create_model(model_name, pretrained=False)
    categories = None
    if weights is not None:
        skipped = weights.load_into(model, transform=lambda state_dict: timm_filter(model, state_dict))
        if not skipped:  # a classifier fine-tuned on other classes names none of these
            categories = categories_of(model)
    preprocessing = preprocessing_of(model)
    model.reset_classifier(0)
    staged = stage(model)
    return Backbone(
        module=staged.module,
        feature_dim=staged.feature_dim,
        preprocessing=preprocessing,
        categories=categories,
    )


def timm_filter(model: nn.Module, state_dict: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
    """What timm does to a state dict before loading it into this model: its module's
    ``checkpoint_filter_fn`` (converting original-format files, resizing position
    embeddings); files timm publishes pass through unchanged."""
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filter_fn is None:
        return state_dict
    try:
        return filter_fn(dict(state_dict), model)
    except Exception:  # a file the filter does not know: the host's key check explains
        return state_dict


def preprocessing_of(model: nn.Module) -> Preprocessing:
    """timm's eval transform for the model's pretrained tag: resize the short side to
    ``floor(crop / crop_pct)``, centre-crop ``input_size``, normalise (as
    ``timm.data.create_transform`` does for ``crop_mode="center"``; the few tags that
    squash or pad instead get the centre crop)."""
    from timm.data import resolve_model_data_config

    config = resolve_model_data_config(model)
    _, height, width = config["input_size"]
    if height != width:
        raise UserError(
            f"timm model {model.pretrained_cfg.get('architecture')} expects {height}x{width} "
            "images; desktop_tl crops images square, so choose another model"
        )
    crop_pct = float(config.get("crop_pct") or 1.0)
    interpolation = str(config.get("interpolation") or "bilinear")
    return Preprocessing(
        resize=math.floor(height / crop_pct),
        crop=int(height),
        mean=tuple(float(v) for v in config["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in config["std"]),  # type: ignore[arg-type]
        # timm also knows box, hamming, lanczos (no released weights use them)
        interpolation=interpolation if interpolation in INTERPOLATIONS else "bicubic",
    )


def categories_of(model: nn.Module) -> list[str] | None:
    """The names of the classes the loaded weights predict, when timm knows them (from
    the pretrained config, or the ImageNet subset its class count implies)."""
    classes = int(getattr(model, "num_classes", 0) or 0)
    if not classes:
        return None
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    named = cfg.get("label_descriptions") or cfg.get("label_names")
    if named is not None and len(named) == classes:
        return [str(name) for name in named]
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(model)
    if subset is None or cfg.get("label_offset"):
        return None
    try:
        descriptions = ImageNetInfo(subset).label_descriptions()
    except Exception:  # the label files of a subset missing from this timm version
        return None
    return list(descriptions) if len(descriptions) == classes else None
