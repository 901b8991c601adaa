"""Batches of a run's images for the loop: one pass for feature extraction (of each
image, or of augmented views of each), or an epoch's order over the decoded images, with
unreadable images reported once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .device import single_threaded


class ImageReader:
    """Reads the training and validation images of one run.

    The loader of a subset (and its worker processes) is kept from epoch to epoch while
    its decoded-image store stays the same; only its order changes.
    """

    def __init__(
        self,
        prepared,
        preprocessing,
        eval_transform,
        *,
        augment: str,
        batch_size: int,
        num_workers: int,
        seed: int,
        device: torch.device,
        log: Callable[[str, str], None],
    ) -> None:
        self.prepared = prepared
        self.preprocessing = preprocessing
        self.eval_transform = eval_transform
        self.augment = augment
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.device = device
        self.unreadable: dict[str, str] = {}  # path -> reason, in the order they were met
        self._log = log
        self._loaders: dict[tuple[str, bool], tuple[Any, Any, Any]] = {}

    def items(self, subset: str) -> list[tuple[str, int]]:
        return self.prepared.train if subset == "train" else self.prepared.val

    def close(self) -> None:
        self._loaders.clear()  # worker processes stop with their loader

    def _fetch(self, loader):
        """A loader's batches; decoding in this process runs on one thread (see
        :func:`~desktop_tl.core.device.single_threaded`)."""
        batches = loader.batches()
        while True:
            if loader.num_workers == 0:
                with single_threaded():
                    batch = next(batches, None)
            else:
                batch = next(batches, None)
            if batch is None:
                break
            yield batch
        for path, reason in loader.unreadable:
            if path not in self.unreadable:
                self.unreadable[path] = reason
                self._log("warning", f"skipped unreadable image {path}: {reason}")

    def extraction_batches(self, items):
        """One pass over ``items`` with the evaluation transform: (images, labels, item
        indices). The loader (and any workers) lives for this pass only."""
        from .loaders import ImageDataset, make_loader

        loader = make_loader(
            ImageDataset(items, self.eval_transform, with_index=True),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            seed=0,
            device=self.device,
        )
        for batch in self._fetch(loader):
            yield batch.images, batch.labels, batch.indices

    def augmented_batches(self, items, views: int, positions=None):
        """One pass over ``items`` with ``views`` augmented views of each image, one
        image's views after the other: (images, labels, indices into ``items``) with
        ``views`` rows per image. ``positions`` are the items' places in the training
        list, which seed their views (default: ``items`` is that list); see
        :mod:`desktop_tl.core.augmented_views`."""
        from .augmented_views import AugmentedViewsDataset
        from .loaders import make_loader

        loader = make_loader(
            AugmentedViewsDataset(items, self.preprocessing, self.augment, views, self.seed, positions),
            # about batch_size rows a batch, as in a pass without views
            batch_size=max(1, self.batch_size // views),
            shuffle=False,
            num_workers=self.num_workers,
            seed=0,
            device=self.device,
        )
        for batch in self._fetch(loader):
            images = batch.images.flatten(0, 1)
            yield images, batch.labels.repeat_interleave(views), batch.indices.repeat_interleave(views)

    def image_batches(self, subset: str, train: bool, order, seed: int, decoded):
        """(images, labels, item indices) over ``subset``'s items in ``order``, from
        ``decoded`` where it holds them; augmented when ``train`` and augmentation is on."""
        from .loaders import make_loader
        from .image_cache import DecodedImageDataset, EpochSampler

        key = (subset, train)
        entry = self._loaders.get(key)
        if entry is None or entry[2] is not decoded:
            dataset = DecodedImageDataset(
                self.items(subset), decoded, self.preprocessing, self.augment, train
            )
            sampler = EpochSampler()
            loader = make_loader(
                dataset,
                batch_size=self.batch_size,
                shuffle=False,
                sampler=sampler,
                num_workers=self.num_workers,
                seed=self.seed,
                device=self.device,
            )
            entry = self._loaders[key] = (loader, sampler, decoded)
        loader, sampler, _ = entry
        sampler.set_epoch(order.tolist() if torch.is_tensor(order) else list(order), seed)
        for batch in self._fetch(loader):
            yield batch.images, batch.labels, batch.indices
