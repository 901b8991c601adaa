"""A fixed number of augmented views of each training image, for a cache that keeps the
benefit of augmentation.

With a frozen prefix and random augmentation, the prefix's output changes every epoch
only because the crop and flip do. Extracting K augmented views of each image once and
drawing one of them per image each epoch costs K passes of the prefix instead of one per
epoch, and the head still sees a different view of most images from epoch to epoch.

View ``v`` of image ``i`` is drawn under :func:`view_seed` ``(seed, i, v)``: the same
views whatever the batch order, the number of decoding threads or worker processes, and
whether the run was resumed. Each image is decoded once for all its views. The epoch's
choice of view per image (:func:`epoch_rows`) comes from the epoch's own generator, so a
resumed run draws the same views as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from .image_cache import DecodedImageDataset


def view_seed(seed: int, index: int, view: int) -> int:
    """The seed of view ``view`` of image ``index`` under the run seed ``seed`` (63 bits,
    well mixed, so neighbouring images and views do not draw related crops)."""
    digest = hashlib.sha256(f"desktop_tl.view/{int(seed)}/{int(index)}/{int(view)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class AugmentedViewsDataset(Dataset):
    """Items as ``(views, class index, item index)``, ``views`` being ``(K, C, H, W)``: the
    image decoded once and augmented K times, each view under its own seed.

    ``positions[i]`` is item ``i``'s index in the run's training list (for its seeds);
    the caller's random state is left as it was. Splits a sample into :meth:`read`
    (decoding, on any thread) and :meth:`finish` (the random draws), as the loaders'
    decoding threads expect.
    """

    def __init__(
        self,
        items: Sequence[tuple[str, int]],
        preprocessing,
        augment: str,
        views: int,
        seed: int,
        positions: Sequence[int] | None = None,
    ) -> None:
        if views < 1:
            raise ValueError(f"augmented views per image must be at least 1, got {views}")
        self.images = DecodedImageDataset(items, None, preprocessing, augment, train=True)
        self.views = int(views)
        self.seed = int(seed)
        self.positions = [int(p) for p in positions] if positions is not None else list(range(len(items)))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.finish(index, self.read(index))

    def read(self, index: int):
        return self.images.read(index)

    def finish(self, index: int, image):
        from .loaders import UnreadableImage

        if isinstance(image, UnreadableImage):
            return image
        position = self.positions[index]
        samples = [
            self.images.finish((index, view_seed(self.seed, position, view)), image)
            for view in range(self.views)
        ]
        return torch.stack([sample[0] for sample in samples]), samples[0][1], int(index)


def epoch_rows(images: int, views: int, generator: torch.Generator) -> torch.Tensor:
    """The store rows one epoch trains on: the images in an order drawn from
    ``generator``, each as one of its ``views`` views drawn from it next (rows hold an
    image's views one after the other). With one view, the order over images itself."""
    order = torch.randperm(images, generator=generator)
    if views == 1:
        return order
    chosen = torch.randint(views, (images,), generator=generator)
    return order * views + chosen[order]
