"""Images decoded once and kept in memory, and the dataset that serves them every epoch.

When the features cannot be cached (random augmentation, or the first backbone stage
trains), each epoch still needs every image, but not a fresh JPEG decode and full-size
resize of it: :class:`DecodedImages` keeps each image decoded and resized (short side to
``preprocessing.resize``) as uint8, within a memory budget, and
:class:`DecodedImageDataset` applies the epoch's random crop and flip to that tensor.
Cropping the resized image rather than the original gives the same crops at the
resolution the network sees; evaluation's resize, centre-crop and normalise on it equals
:func:`desktop_tl.core.data.build_transform` exactly, since that resizes the same way.

Each sample is drawn under its own seed, a function of (run seed, epoch, image index), so
augmentations do not depend on the number of worker processes or on resuming. All
decoded images share one flat buffer, which worker processes receive as one block of
shared memory (one file descriptor, not one per image).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..plugin.descriptors import Preprocessing
from .images import ImageReadError, open_rgb


def decode_transform(preprocessing: Preprocessing):
    """RGB PIL image -> uint8 tensor with its short side resized to ``resize``."""
    from torchvision.transforms import v2

    from .data import interpolation_mode

    return v2.Compose([
        v2.ToImage(),
        v2.Resize(preprocessing.resize, interpolation=interpolation_mode(preprocessing), antialias=True),
        v2.ToPureTensor(),
    ])


def tensor_transform(preprocessing: Preprocessing, augment: str, train: bool):
    """Decoded uint8 image -> normalised float tensor: the random steps of ``augment``
    when training with augmentation, else the centre crop of evaluation."""
    from torchvision.transforms import v2

    from .data import augmentation_steps, normalization_steps

    if train and augment != "none":
        steps = augmentation_steps(preprocessing, augment)
    else:
        steps = [v2.CenterCrop(preprocessing.crop)]
    return v2.Compose([*steps, *normalization_steps(preprocessing)])


class DecodedImages:
    """Decoded, resized uint8 images (C, H, W) for a list of items, packed in one buffer.

    Images that did not fit the memory budget (or were unreadable) are not held;
    :meth:`get` returns ``None`` for them and the dataset decodes them from the file.
    """

    def __init__(self, data: torch.Tensor, offsets: torch.Tensor, shapes: torch.Tensor,
                 budget: Any = None) -> None:
        self.data = data  # (total,) uint8
        self.offsets = offsets  # (N,) int64
        self.shapes = shapes  # (N, 3) int64; (-1, -1, -1) where not held
        self._budget = budget
        self._reserved = int(data.numel())

    @classmethod
    def empty(cls, count: int) -> "DecodedImages":
        return cls(torch.empty(0, dtype=torch.uint8), torch.zeros(count, dtype=torch.long),
                   torch.full((count, 3), -1, dtype=torch.long))

    @classmethod
    def build(cls, items: Sequence[tuple[str, int]], preprocessing: Preprocessing, budget: Any, *,
              num_workers: int = 0, progress: Callable[[int], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> "DecodedImages":
        """Decode every item once (in ``num_workers`` processes, or here), keeping what
        ``budget`` (a :class:`~desktop_tl.core.feature_cache.MemoryBudget`) allows."""
        from .device import single_threaded

        dataset = _DecodeOnly(list(items), decode_transform(preprocessing))
        options: dict[str, Any] = {}
        if num_workers > 0:
            options["multiprocessing_context"] = "spawn"
        # its own generator: iterating must not draw from the caller's random state
        loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers,
                            collate_fn=_keep, generator=torch.Generator(), **options)
        held: dict[int, torch.Tensor] = {}
        total = 0
        iterator = iter(loader)
        done = 0
        while True:
            if should_stop is not None and should_stop():
                budget.release(total)
                return cls.empty(len(items))
            if num_workers == 0:
                with single_threaded():
                    sample = next(iterator, None)
            else:
                sample = next(iterator, None)
            if sample is None:
                break
            index, image = sample
            done += 1
            if image is not None and budget.reserve(image.numel()):
                held[index] = image
                total += image.numel()
            if progress is not None:
                progress(done)
        data = torch.empty(total, dtype=torch.uint8)
        offsets = torch.zeros(len(items), dtype=torch.long)
        shapes = torch.full((len(items), 3), -1, dtype=torch.long)
        position = 0
        for index in sorted(held):
            image = held.pop(index)  # free each as it is packed: peak stays near the total
            n = image.numel()
            data[position:position + n] = image.reshape(-1)
            offsets[index] = position
            shapes[index] = torch.tensor(image.shape)
            position += n
        return cls(data, offsets, shapes, budget)

    def __len__(self) -> int:
        return int(self.shapes.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.data.numel())

    @property
    def held(self) -> int:
        return int((self.shapes[:, 0] > 0).sum())

    def get(self, index: int) -> torch.Tensor | None:
        c, h, w = (int(v) for v in self.shapes[index])
        if c < 0:
            return None
        start = int(self.offsets[index])
        return self.data[start:start + c * h * w].view(c, h, w)

    def close(self) -> None:
        """Free the buffer and give its bytes back to the budget."""
        if self._budget is not None:
            self._budget.release(self._reserved)
            self._budget = None
        self._reserved = 0
        self.data = torch.empty(0, dtype=torch.uint8)
        self.shapes = torch.full_like(self.shapes, -1)

    def __getstate__(self) -> dict[str, Any]:  # worker processes get the tensors, not the budget
        return {"data": self.data, "offsets": self.offsets, "shapes": self.shapes,
                "_budget": None, "_reserved": 0}


def _keep(sample):  # collate for batch_size=None: leave the sample as it is
    return sample


class _DecodeOnly(Dataset):
    """``(index, uint8 tensor)`` per item, ``(index, None)`` where unreadable."""

    def __init__(self, items: list[tuple[str, int]], decode) -> None:
        self.items = items
        self.decode = decode

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        try:
            image = open_rgb(self.items[index][0])
        except ImageReadError:
            return index, None
        return index, self.decode(image).contiguous()


class DecodedImageDataset(Dataset):
    """Items as ``(image tensor, class index, item index)`` from a :class:`DecodedImages`
    (decoding from the file only what it does not hold).

    Indexed by ``(item index, seed)`` pairs from :class:`EpochSampler`: the transform's
    random draws come from ``seed`` and the caller's random state is left as it was. An
    image that fails to decode yields :class:`~desktop_tl.core.data.UnreadableImage`.
    """

    def __init__(self, items: Sequence[tuple[str, int]], decoded: DecodedImages | None,
                 preprocessing: Preprocessing, augment: str, train: bool) -> None:
        self.items = [(str(path), int(label)) for path, label in items]
        self.decoded = decoded
        self.decode = decode_transform(preprocessing)
        self.transform = tensor_transform(preprocessing, augment, train)
        self.random = train and augment != "none"

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key):
        from .data import UnreadableImage

        index, seed = key if isinstance(key, tuple) else (key, None)
        path, label = self.items[index]
        image = self.decoded.get(index) if self.decoded is not None else None
        if image is None:
            try:
                image = self.decode(open_rgb(path))
            except ImageReadError as exc:
                return UnreadableImage(index=int(index), path=path, reason=exc.reason)
        if self.random and seed is not None:
            state = torch.get_rng_state()
            torch.manual_seed(seed)
            try:
                sample = self.transform(image)
            finally:
                torch.set_rng_state(state)
        else:
            sample = self.transform(image)
        return sample, label, int(index)


class EpochSampler(Sampler):
    """Yields ``(item index, sample seed)`` in the order set for the epoch.

    A loader built once keeps its worker processes for the whole run; setting
    :attr:`order` and :attr:`seed` before iterating it again is all an epoch needs.
    """

    def __init__(self) -> None:
        self.order: list[int] = []
        self.seed = 0

    def set_epoch(self, order: Sequence[int], seed: int) -> None:
        self.order = [int(i) for i in order]
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = self.seed * 1_000_003
        for index in self.order:
            yield index, (base + index) % (2**63)
