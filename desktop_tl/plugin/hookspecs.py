"""The hooks a desktop_tl plugin may implement.

A plugin is a module registered under the ``desktop_tl`` entry-point group. It declares
the API version it was written for and implements any of the hooks below with
``@hookimpl``. Hooks return descriptors (see :mod:`desktop_tl.plugin.descriptors`);
import torch and other heavy libraries inside the functions the descriptors point to,
not at module level, so that listing plugins stays fast.

Every hook is documented with a runnable example; ``tests/plugin`` fails when one is not.
"""

from __future__ import annotations

from typing import Any, Sequence

import pluggy

from .descriptors import BackboneProvider, DatasetLoader, HeadType

PROJECT_NAME = "desktop_tl"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def dtl_backbone_providers() -> Sequence[BackboneProvider]:
    """Return the backbone providers this plugin offers.

    Example::

        from desktop_tl.plugin import hookimpl
        from desktop_tl.plugin.descriptors import (
            Backbone, BackboneProvider, Preprocessing, WeightsProvenance, WeightsStatus)

        DTL_API_VERSION = "1.0"

        def _create(model_name, weights):
            import torch
            from torch import nn
            module = nn.Sequential()
            module.add_module("stem", nn.Conv2d(3, 8, 3, stride=2))
            module.add_module("pool", nn.AdaptiveAvgPool2d(1))
            module.add_module("flatten", nn.Flatten())
            provenance = WeightsProvenance(source="random", pretrained=False,
                                           detail="tiny demo network, never pretrained")
            return Backbone(module, feature_dim=8, preprocessing=Preprocessing(),
                            provenance=provenance)

        @hookimpl
        def dtl_backbone_providers():
            return [BackboneProvider(
                id="tiny", display_name="Tiny demo nets",
                list_models=lambda: ["tiny8"], create=_create,
                weights_status=lambda name: WeightsStatus(False, "missing",
                                                          detail="never pretrained"))]
    """


@hookspec
def dtl_dataset_loaders() -> Sequence[DatasetLoader]:
    """Return the dataset loaders this plugin offers.

    Example::

        import pathlib
        from desktop_tl.plugin import hookimpl
        from desktop_tl.plugin.descriptors import DatasetLoader, LoadedDataset, Sample

        DTL_API_VERSION = "1.0"

        def _load(path, options):
            root = pathlib.Path(path)
            samples = [Sample(str(p), p.stem.split("_")[0]) for p in root.glob("*.png")]
            return LoadedDataset(samples, sorted({s.label for s in samples}), str(root))

        @hookimpl
        def dtl_dataset_loaders():
            return [DatasetLoader(
                id="flat-prefix", display_name="Flat folder, label_name.png",
                can_load=lambda path: pathlib.Path(path).is_dir(), load=_load)]
    """


@hookspec
def dtl_head_types() -> Sequence[HeadType]:
    """Return the classifier head types this plugin offers.

    Example::

        from desktop_tl.plugin import hookimpl
        from desktop_tl.plugin.descriptors import HeadOption, HeadType

        DTL_API_VERSION = "1.0"

        def _build(in_features, num_classes, dropout=0.0):
            from torch import nn
            return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))

        @hookimpl
        def dtl_head_types():
            return [HeadType(id="dropout-linear", display_name="Dropout + linear",
                             build=_build,
                             options=(HeadOption("dropout", "float", 0.0, minimum=0.0,
                                                 maximum=0.9),))]
    """


@hookspec
def dtl_on_epoch_end(run_dir: str, epoch: int, metrics: dict[str, Any]) -> None:
    """Called by the engine after each epoch, on the training thread (never the GUI's).

    ``metrics`` holds at least ``train_loss``, ``val_loss`` and ``val_acc``. A plugin that
    raises here is reported in the run log; training goes on.

    Example::

        from desktop_tl.plugin import hookimpl

        DTL_API_VERSION = "1.0"

        @hookimpl
        def dtl_on_epoch_end(run_dir, epoch, metrics):
            print(f"{run_dir}: epoch {epoch} val_acc={metrics['val_acc']:.3f}")
    """
