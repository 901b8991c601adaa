"""Model assembly: a plugin's backbone joined to a plugin's classifier head."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import UserError
from ..plugin.descriptors import Backbone

if TYPE_CHECKING:  # pragma: no cover
    from .config import RunConfig


class ModelBuildError(UserError):
    """The backbone or head cannot be built as configured."""


class TransferModel(nn.Module):
    """``head(backbone(images))``; the backbone is an ``nn.Sequential`` of named stages."""

    def __init__(self, backbone: nn.Sequential, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


@dataclass
class BuiltModel:
    """A model plus what must be recorded about how it was made."""

    model: TransferModel
    backbone: Backbone
    provider_id: str
    model_name: str
    head_id: str
    head_options: dict[str, Any] = field(default_factory=dict)

    @property
    def backbone_id(self) -> str:
        return f"{self.provider_id}:{self.model_name}"


def build_model(config: "RunConfig", host: Any, num_classes: int) -> BuiltModel:
    """Create the configured backbone (resolving its weights) and a fresh head."""
    provider, model_name = host.resolve_backbone(config.model.backbone)
    # The host finds and checks the weights (WeightsSource) and names the plugin when
    # create() breaks; a test's host may serve the provider bare.
    create = getattr(host, "create_backbone", None)
    if create is not None:
        backbone = create(provider, model_name, config.model.weights)
    else:
        backbone = provider.create(model_name, config.model.weights)
    head_id, head_options, head = build_head(
        host, config.model.head, config.model.head_options, backbone.feature_dim, num_classes
    )
    model = TransferModel(backbone.module, head)
    return BuiltModel(model, backbone, provider.id, model_name, head_id, head_options)


def build_head(
    host: Any, head_id: str, options: dict[str, Any], in_features: int, num_classes: int
) -> tuple[str, dict[str, Any], nn.Module]:
    from ..plugin.manager import find_head

    head_type = find_head(host.head_types(), head_id)
    allowed = {opt.name for opt in head_type.options}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ModelBuildError(
            f"head {head_id!r} has no option {', '.join(unknown)}; "
            f"its options are: {', '.join(sorted(allowed)) or 'none'}"
        )
    resolved = {**head_type.defaults(), **options}
    try:
        head = head_type.build(in_features, num_classes, **resolved)
    except UserError:
        raise
    except (TypeError, ValueError) as exc:
        raise ModelBuildError(f"head {head_id!r} cannot be built with {resolved}: {exc}") from exc
    return head_id, resolved, head
