"""desktop_tl plugin: every torchvision classification model as a backbone.

Weights are resolved offline-first (a chosen file, the torch hub cache, the local weights
folder, a download only when allowed); preprocessing and category names come from each
model's default torchvision weights. torch and torchvision are imported only when a
provider function is called.
"""

from __future__ import annotations

from desktop_tl.plugin import BackboneProvider, hookimpl

DTL_API_VERSION = "1.1"


@hookimpl
def dtl_backbone_providers() -> list[BackboneProvider]:
    from . import provider

    return [
        BackboneProvider(
            id=provider.PROVIDER_ID,
            display_name="torchvision",
            list_models=provider.list_models,
            build=provider.build,
            weights_source=provider.weights_source,
            description="Every torchvision image classification model, with its ImageNet "
            "weights when they are on this machine",
        )
    ]
