"""desktop_tl plugin: every torchvision classification model as a backbone.

Weights are resolved offline-first (a chosen file, the torch hub cache, the local weights
folder, a download only when allowed); preprocessing and category names come from each
model's default torchvision weights. torch and torchvision are imported only when a
provider function is called.
"""

from __future__ import annotations

from desktop_tl.plugin import hookimpl
from desktop_tl.plugin.descriptors import BackboneProvider

DTL_API_VERSION = "1.0"


@hookimpl
def dtl_backbone_providers() -> list[BackboneProvider]:
    from . import provider

    return [
        BackboneProvider(
            id=provider.PROVIDER_ID,
            display_name="torchvision",
            list_models=provider.list_models,
            create=provider.create,
            weights_status=provider.weights_status,
            weight_file_names=provider.weight_file_names,
            description="Every torchvision image classification model, with its ImageNet "
            "weights when they are on this machine",
        )
    ]
