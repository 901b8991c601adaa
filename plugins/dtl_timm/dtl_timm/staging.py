"""Turn a timm model (classifier already removed) into a backbone of named stages.

The engine splits a backbone at stage boundaries and caches what the frozen stages
before the first trainable one compute, so each family is staged along the forward that
timm runs, with timm's own module objects under timm's names:

- ResNet: ``stem`` (conv1, bn1, act1, maxpool), ``layer1`` ... ``layer4``, ``head``
- EfficientNet, MobileNetV3: ``stem`` (conv_stem, bn1), ``blocks`` (``blocks.N``), ``head``
- ConvNeXt: ``stem``, ``stages`` (``stages.N``), ``head``
- ViT: ``stem`` (patch_embed, tokens: class token and position embedding), ``blocks``
  (``blocks.N``), ``norm``, ``head`` (token pooling)

``head`` is what timm's ``forward_head(x, pre_logits=True)`` runs, with the dropout timm
applies before its classifier. A family is used only when the model runs that family's
forward unchanged (the same ``forward_features`` and ``forward_head`` functions); any
other model becomes one stage, ``body``: the whole network, which still trains and
freezes layer by layer, only without a partial feature cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from desktop_tl.plugin import sequential


@dataclass
class StagedModel:
    """``module`` maps ``(N, 3, H, W)`` to ``(N, feature_dim)``; ``family`` names the
    layout used (``"body"`` when no family fitted)."""

    module: nn.Sequential
    feature_dim: int
    family: str

    @property
    def stage_names(self) -> list[str]:
        return [name for name, _ in self.module.named_children()]


def stage(model: nn.Module) -> StagedModel:
    """Stage ``model``, a timm model after ``reset_classifier(0)``; the stages share
    their modules with it."""
    feature_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
    for family, cls, layout, steps in _families():
        if _runs_forward_of(model, cls, steps):
            return StagedModel(sequential(layout(model)), feature_dim, family)
    return StagedModel(sequential([("body", model)]), feature_dim, "body")


def _runs_forward_of(model: nn.Module, cls: type, steps: tuple[str, ...]) -> bool:
    """Whether ``model`` runs ``cls``'s forward, including the methods a layout re-does."""
    if not isinstance(model, cls):
        return False
    return all(
        getattr(type(model), name) is getattr(cls, name)
        for name in ("forward", "forward_features", "forward_head", *steps)
    )


def _families() -> list[tuple[str, type, Callable, tuple[str, ...]]]:
    from timm.models import ConvNeXt, EfficientNet, MobileNetV3, ResNet, VisionTransformer

    return [
        ("resnet", ResNet, _resnet, ()),
        ("efficientnet", EfficientNet, _efficientnet, ()),
        ("mobilenetv3", MobileNetV3, _mobilenetv3, ()),
        ("convnext", ConvNeXt, _convnext, ()),
        ("vit", VisionTransformer, _vit, ("_pos_embed", "pool")),  # ViTTokens, ViTPool
    ]


def _children(model: nn.Module, *names: str) -> list[tuple[str, nn.Module]]:
    return [(name, getattr(model, name)) for name in names]


def _pre_logits_dropout(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """timm's ``F.dropout(x, drop_rate)`` before the classifier, as a module, so that a
    fine-tuned head is regularised as timm trains one."""
    rate = float(getattr(model, "drop_rate", 0.0) or 0.0)
    return [("drop", nn.Dropout(rate))] if rate > 0 else []


def _resnet(model: nn.Module):
    return [
        ("stem", sequential(_children(model, "conv1", "bn1", "act1", "maxpool"))),
        *_children(model, "layer1", "layer2", "layer3", "layer4"),
        ("head", sequential(_children(model, "global_pool") + _pre_logits_dropout(model))),
    ]


def _efficientnet(model: nn.Module):
    return [
        ("stem", sequential(_children(model, "conv_stem", "bn1"))),
        ("blocks", model.blocks),
        (
            "head",
            sequential(_children(model, "conv_head", "bn2", "global_pool") + _pre_logits_dropout(model)),
        ),
    ]


def _mobilenetv3(model: nn.Module):
    return [
        ("stem", sequential(_children(model, "conv_stem", "bn1"))),
        ("blocks", model.blocks),
        (
            "head",
            sequential(
                _children(model, "global_pool", "conv_head", "norm_head", "act2", "flatten")
                + _pre_logits_dropout(model)
            ),
        ),
    ]


def _convnext(model: nn.Module):
    # norm_pre is a norm only in the head_norm_first variant; timm's head module (its
    # classifier now nn.Identity) pools, normalises and flattens.
    tail = [] if isinstance(model.norm_pre, nn.Identity) else _children(model, "norm_pre")
    return [*_children(model, "stem", "stages"), *tail, ("head", model.head)]


def _vit(model: nn.Module):
    return [
        ("stem", sequential([("patch_embed", model.patch_embed), ("tokens", ViTTokens(model))])),
        ("blocks", model.blocks),
        ("norm", model.norm),
        ("head", ViTPool(model)),
    ]


class ViTTokens(nn.Module):
    """The vision transformer's step between patch embedding and blocks, which is not a
    module in timm (``VisionTransformer._pos_embed``, then patch dropout and the pre-norm):
    class and register tokens prepended, position embedding added. Holds the model's own
    parameters, so loading, freezing and moving them works as for any stage."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        for name in ("cls_token", "reg_token", "pos_embed"):
            self.register_parameter(name, getattr(model, name, None))
        self.pos_drop = model.pos_drop
        self.patch_drop = model.patch_drop
        self.norm_pre = model.norm_pre
        self.no_embed_class = bool(model.no_embed_class)
        self.dynamic_img_size = bool(model.dynamic_img_size)
        self.num_prefix_tokens = int(model.num_prefix_tokens)
        self.grid_size = tuple(model.patch_embed.grid_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prefix = []
        if self.cls_token is not None:
            prefix.append(self.cls_token.expand(x.shape[0], -1, -1))
        if self.reg_token is not None:
            prefix.append(self.reg_token.expand(x.shape[0], -1, -1))
        if self.pos_embed is None:
            x = torch.cat(prefix + [x.view(x.shape[0], -1, x.shape[-1])], dim=1)
        else:
            pos_embed = self.pos_embed
            if self.dynamic_img_size:
                from timm.layers import resample_abs_pos_embed

                batch, height, width, channels = x.shape
                pos_embed = resample_abs_pos_embed(
                    self.pos_embed,
                    new_size=(height, width),
                    old_size=self.grid_size,
                    num_prefix_tokens=0 if self.no_embed_class else self.num_prefix_tokens,
                )
                x = x.view(batch, -1, channels)
            if self.no_embed_class:  # deit-3 and big_vision: add, then prepend
                x = x + pos_embed
                if prefix:
                    x = torch.cat(prefix + [x], dim=1)
            else:
                if prefix:
                    x = torch.cat(prefix + [x], dim=1)
                x = x + pos_embed
            x = self.pos_drop(x)
        return self.norm_pre(self.patch_drop(x))


class ViTPool(nn.Module):
    """``VisionTransformer.forward_head(x, pre_logits=True)``: the class token (or the
    mean of the patch tokens, or attention pooling), then the head norm and dropout."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.attn_pool = model.attn_pool
        self.fc_norm = model.fc_norm
        self.head_drop = model.head_drop
        self.pool_type = str(model.global_pool)
        self.num_prefix_tokens = int(model.num_prefix_tokens)
        self.include_prefix = bool(getattr(model, "pool_include_prefix", False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.attn_pool is not None:
            if not self.include_prefix:
                x = x[:, self.num_prefix_tokens :]
            x = self.attn_pool(x)
        else:
            from timm.layers import global_pool_nlc

            x = global_pool_nlc(
                x,
                pool_type=self.pool_type,
                num_prefix_tokens=self.num_prefix_tokens,
                reduce_include_prefix=self.include_prefix,
            )
        return self.head_drop(self.fc_norm(x))
