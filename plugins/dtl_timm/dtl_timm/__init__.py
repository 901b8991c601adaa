"""desktop_tl plugin: the pretrained models of timm (PyTorch Image Models) as backbones.

Each model is offered under its timm name with its pretrained tag
(``resnet50.a1_in1k``, ``vit_small_patch16_224.augreg_in21k_ft_in1k``): the tag picks the
weights, and with them the preprocessing, so two tags of one architecture are two
models. Weights are found offline first (a file the user chose, the Hugging Face cache,
the local weights folder; a download only when allowed and HF_HUB_OFFLINE is not set).

Written only against ``desktop_tl.plugin`` and ``desktop_tl.errors``, as a third-party
plugin would be. timm is imported only when a provider function is called.
"""

from __future__ import annotations

from desktop_tl.plugin import BackboneProvider, hookimpl

DTL_API_VERSION = "1.1"


@hookimpl
def dtl_backbone_providers() -> list[BackboneProvider]:
    from . import provider, weights

    return [
        BackboneProvider(
            id=provider.PROVIDER_ID,
            display_name="timm (PyTorch Image Models)",
            list_models=provider.list_models,
            build=provider.build,
            weights_source=weights.weights_source,
            description="Every pretrained timm image model, named with its weights tag; "
            "weights from the Hugging Face cache or the local weights folder",
        )
    ]
