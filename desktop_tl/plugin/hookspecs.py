"""The hooks a desktop_tl plugin may implement.

A plugin is a module registered under the ``desktop_tl`` entry-point group. It declares
the API version it was written for (``DTL_API_VERSION = "1.1"``) and implements any of
the hooks below with ``@hookimpl``. Hooks return descriptors (see
:mod:`desktop_tl.plugin.descriptors`); import torch and other heavy libraries inside the
functions the descriptors point to, not at module level, so that listing plugins stays
fast.

Threads. The collection hooks (``dtl_backbone_providers``, ``dtl_dataset_loaders``,
``dtl_head_types``) are called once, when the host loads plugins: on whichever thread
first asks the host for anything (the window does so on a background thread at start;
the command line on its main thread). The callables a descriptor points to are called
later, on these threads:

============================================  ==========================================
callable                                      thread
============================================  ==========================================
``BackboneProvider.list_models``              background (the window lists models while
                                              it starts); the result is cached
``BackboneProvider.weights_source``,          the window's GUI thread too (the model
``weights_status``, ``weight_file_names``     list shows which models have weights):
                                              keep them to file-existence checks
``BackboneProvider.build`` / ``create``       a background or training thread, never the
                                              GUI thread
``DatasetLoader.can_load``                    background (data preparation); keep it
                                              cheap: it is asked for every path
``DatasetLoader.load``                        background (data preparation)
``HeadType.build``                            background or training thread
``dtl_on_epoch_end``                          the training thread
============================================  ==========================================

So a descriptor's callables must be safe to call from a thread other than the one that
built it, and none of them may touch Qt.

Epochs are counted from 1 everywhere a plugin sees them: ``dtl_on_epoch_end``'s
``epoch`` is the same number as ``metrics["epoch"]``, the ``epoch`` column of
``metrics.csv`` and the "epoch 3/10" the window and the log show.

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

    Args:
        none.

    Returns:
        A list of :class:`~desktop_tl.plugin.descriptors.BackboneProvider`. Each declares
        ``weights_source(model_name)`` (where pretrained weights may be: usual file
        names, files inside a package, a URL and its sha256) and
        ``build(model_name, weights)``, which returns a
        :class:`~desktop_tl.plugin.descriptors.Backbone` whose ``module`` is an
        ``nn.Sequential`` of named stages. ``weights`` is ``None`` (random
        initialisation) or a :class:`~desktop_tl.plugin.weights.PretrainedWeights` the
        host has found, checked and read; ``build`` loads it with
        ``weights.load_into(network)``, which refuses weights that do not fit.

    Example::

        from desktop_tl.plugin import (
            Backbone, BackboneProvider, Preprocessing, WeightsSource, hookimpl, sequential)

        DTL_API_VERSION = "1.1"

        def _build(model_name, weights):
            from torch import nn
            module = sequential([
                ("stem", nn.Conv2d(3, 8, 3, stride=2)),
                ("pool", nn.AdaptiveAvgPool2d(1)),
                ("flatten", nn.Flatten()),
            ])
            if weights is not None:
                weights.load_into(module)
            return Backbone(module, feature_dim=8, preprocessing=Preprocessing())

        @hookimpl
        def dtl_backbone_providers():
            return [BackboneProvider(
                id="tiny", display_name="Tiny demo nets", list_models=["tiny8"],
                build=_build,
                weights_source=lambda name: WeightsSource(
                    file_names=(f"{name}-demo.safetensors",)))]
    """


@hookspec
def dtl_dataset_loaders() -> Sequence[DatasetLoader]:
    """Return the dataset loaders this plugin offers.

    Args:
        none.

    Returns:
        A list of :class:`~desktop_tl.plugin.descriptors.DatasetLoader`. The host picks
        the loader for a path: the loaders whose ``path_kind`` and ``file_patterns``
        fit it, highest ``priority`` first, the first whose ``can_load(path)`` is true.
        ``load(path, options)`` returns a
        :class:`~desktop_tl.plugin.descriptors.LoadedDataset` or raises
        :class:`~desktop_tl.plugin.descriptors.DatasetError` saying what to fix.

    Example::

        import pathlib
        from desktop_tl.plugin import DatasetLoader, LoadedDataset, Sample, hookimpl

        DTL_API_VERSION = "1.1"

        def _load(path, options):
            root = pathlib.Path(path)
            samples = [Sample(str(p), p.stem.split("_")[0]) for p in root.glob("*.png")]
            return LoadedDataset(samples, sorted({s.label for s in samples}), str(root))

        @hookimpl
        def dtl_dataset_loaders():
            return [DatasetLoader(
                id="flat-prefix", display_name="Flat folder, label_name.png",
                can_load=lambda path: any(pathlib.Path(path).glob("*_*.png")),
                load=_load, path_kind="folder")]
    """


@hookspec
def dtl_head_types() -> Sequence[HeadType]:
    """Return the classifier head types this plugin offers.

    Args:
        none.

    Returns:
        A list of :class:`~desktop_tl.plugin.descriptors.HeadType`.
        ``build(in_features, num_classes, **options)`` returns an ``nn.Module`` mapping
        ``(N, in_features)`` to ``(N, num_classes)`` logits; ``options`` holds every
        declared :class:`~desktop_tl.plugin.descriptors.HeadOption` (defaults filled in).

    Example::

        from desktop_tl.plugin import HeadOption, HeadType, hookimpl

        DTL_API_VERSION = "1.1"

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

    Args:
        run_dir: the run folder (``run.toml``, ``metrics.csv``, checkpoints).
        epoch: the epoch just finished, counted from 1 (equal to ``metrics["epoch"]``).
        metrics: a copy of the epoch's row of ``metrics.csv``: at least ``epoch``,
            ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc`` and ``lr``.

    Returns:
        Nothing. A plugin that raises here is reported in the run log; training goes on.

    Example::

        from desktop_tl.plugin import hookimpl

        DTL_API_VERSION = "1.1"

        @hookimpl
        def dtl_on_epoch_end(run_dir, epoch, metrics):
            print(f"{run_dir}: epoch {epoch} val_acc={metrics['val_acc']:.3f}")
    """
