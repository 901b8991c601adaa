"""Images decoded once and kept in memory, and the dataset that serves them every epoch.

When the features cannot be cached (random augmentation, or the first backbone stage
trains), each epoch still needs every image, but not a fresh JPEG decode and full-size
resize of it: :class:`DecodedImages` keeps each image decoded and resized (short side to
``preprocessing.resize``) as uint8, within a memory budget, and
:class:`DecodedImageDataset` applies the epoch's random crop and flip to that tensor.
Cropping the resized image rather than the original gives the same crops at the
resolution the network sees; evaluation's resize, centre-crop and normalise on it equals
:func:`desktop_tl.core.transforms.build_transform` exactly, since that resizes the same way.

Each sample is drawn under its own seed, a function of (run seed, epoch, image index), so
augmentations do not depend on the number of worker processes or on resuming. All
decoded images share one flat buffer, which worker processes receive as one block of
shared memory (one file descriptor, not one per image).

Decoding needs only the resized short side, so JPEGs are decoded at the smallest DCT
scale that keeps it (:func:`~desktop_tl.core.images.open_rgb`); without worker
processes the decoding runs on a thread pool, results kept in item order.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..plugin.descriptors import Preprocessing
from .images import ImageReadError, open_rgb


def decode_transform(preprocessing: Preprocessing):
    """RGB PIL image -> uint8 tensor with its short side resized to ``resize``."""
    from torchvision.transforms import v2

    from .transforms import interpolation_mode

    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(preprocessing.resize, interpolation=interpolation_mode(preprocessing), antialias=True),
            v2.ToPureTensor(),
        ]
    )


def tensor_transform(preprocessing: Preprocessing, augment: str, train: bool):
    """Decoded uint8 image -> normalised float tensor: the random steps of ``augment``
    when training with augmentation, else the centre crop of evaluation."""
    from torchvision.transforms import v2

    from .transforms import augmentation_steps, normalization_steps

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

    def __init__(
        self, data: torch.Tensor, offsets: torch.Tensor, shapes: torch.Tensor, budget: Any = None
    ) -> None:
        self.data = data  # (total,) uint8
        self.offsets = offsets  # (N,) int64
        self.shapes = shapes  # (N, 3) int64; (-1, -1, -1) where not held
        self._budget = budget
        self._reserved = int(data.numel())

    @classmethod
    def empty(cls, count: int) -> "DecodedImages":
        return cls(
            torch.empty(0, dtype=torch.uint8),
            torch.zeros(count, dtype=torch.long),
            torch.full((count, 3), -1, dtype=torch.long),
        )

    @classmethod
    def build(
        cls,
        items: Sequence[tuple[str, int]],
        preprocessing: Preprocessing,
        budget: Any,
        *,
        num_workers: int = 0,
        progress: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        decode_threads: int = -1,
    ) -> "DecodedImages":
        """Decode every item once (in ``num_workers`` processes, or on ``decode_threads``
        threads: ``-1`` sizes them to the machine, ``0`` decodes here), keeping what
        ``budget`` (a :class:`~desktop_tl.core.feature_cache.MemoryBudget`) allows."""
        from .loaders import decode_threads_alone
        from .device import single_threaded

        dataset = _DecodeOnly(list(items), decode_transform(preprocessing), preprocessing.resize)
        if num_workers > 0:
            # its own generator: iterating must not draw from the caller's random state
            loader = DataLoader(
                dataset,
                batch_size=None,
                shuffle=False,
                num_workers=num_workers,
                collate_fn=_keep,
                generator=torch.Generator(),
                multiprocessing_context="spawn",
            )
            samples = iter(loader)
            threads = None
        else:
            threads = decode_threads_alone() if decode_threads < 0 else max(0, decode_threads)
            samples = _decoded_in_order(dataset, threads)
        held: dict[int, torch.Tensor] = {}
        total = 0
        done = 0
        # decoding here: each image's resize on one torch thread, the threads are the
        # parallelism (and the pool's synchronisation costs more than it gains)
        torch_threads = single_threaded() if threads is not None else contextlib.nullcontext()
        with torch_threads:
            while True:
                if should_stop is not None and should_stop():
                    _close(samples)
                    budget.release(total)
                    return cls.empty(len(items))
                sample = next(samples, None)
                if sample is None:
                    break
                index, image = sample
                done += 1
                if image is not None and budget.reserve(image.numel()):
                    held[index] = image
                    total += image.numel()
                if progress is not None:
                    progress(done)
        return cls._packed(held, len(items), total, budget)

    @classmethod
    def _packed(cls, held: dict[int, torch.Tensor], count: int, total: int, budget: Any) -> "DecodedImages":
        """One buffer holding ``held`` (item index -> image), in item order."""
        data = torch.empty(total, dtype=torch.uint8)
        offsets = torch.zeros(count, dtype=torch.long)
        shapes = torch.full((count, 3), -1, dtype=torch.long)
        position = 0
        for index in sorted(held):
            image = held.pop(index)  # free each as it is packed: peak stays near the total
            n = image.numel()
            data[position : position + n] = image.reshape(-1)
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
        return self.data[start : start + c * h * w].view(c, h, w)

    def close(self) -> None:
        """Free the buffer and give its bytes back to the budget."""
        if self._budget is not None:
            self._budget.release(self._reserved)
            self._budget = None
        self._reserved = 0
        self.data = torch.empty(0, dtype=torch.uint8)
        self.shapes = torch.full_like(self.shapes, -1)

    def __getstate__(self) -> dict[str, Any]:  # worker processes get the tensors, not the budget
        return {
            "data": self.data,
            "offsets": self.offsets,
            "shapes": self.shapes,
            "_budget": None,
            "_reserved": 0,
        }


def _close(samples) -> None:
    close = getattr(samples, "close", None)
    if close is not None:
        close()  # a generator's close stops its decoding threads


def _keep(sample):  # collate for batch_size=None: leave the sample as it is
    return sample


class _DecodeOnly(Dataset):
    """``(index, uint8 tensor)`` per item, ``(index, None)`` where unreadable."""

    def __init__(self, items: list[tuple[str, int]], decode, short_side: int) -> None:
        self.items = items
        self.decode = decode
        self.short_side = int(short_side)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        try:
            image = open_rgb(self.items[index][0], self.short_side)
        except ImageReadError:
            return index, None
        from .transforms import apply_on_any_thread

        return index, apply_on_any_thread(self.decode, image).contiguous()


#: Images decoded ahead of the one being stored, per decoding thread.
_AHEAD_PER_THREAD = 4


def _decoded_in_order(dataset: _DecodeOnly, threads: int) -> Iterator[tuple[int, Any]]:
    """``dataset[0], dataset[1], ...`` decoded on ``threads`` threads (0: here), in
    order, with a bounded number decoded ahead so memory stays small."""
    if threads <= 0:
        for index in range(len(dataset)):
            yield dataset[index]
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode-image")
    pending: deque = deque()
    upcoming = iter(range(len(dataset)))
    try:
        for index in upcoming:
            pending.append(pool.submit(dataset.__getitem__, index))
            if len(pending) >= threads * _AHEAD_PER_THREAD:
                break
        while pending:
            sample = pending.popleft().result()
            index = next(upcoming, None)
            if index is not None:
                pending.append(pool.submit(dataset.__getitem__, index))
            yield sample
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class DecodedImageDataset(Dataset):
    """Items as ``(image tensor, class index, item index)`` from a :class:`DecodedImages`
    (decoding from the file only what it does not hold).

    Indexed by ``(item index, seed)`` pairs from :class:`EpochSampler`: the transform's
    random draws come from ``seed`` and the caller's random state is left as it was. An
    image that fails to decode yields :class:`~desktop_tl.core.loaders.UnreadableImage`.
    """

    def __init__(
        self,
        items: Sequence[tuple[str, int]],
        decoded: DecodedImages | None,
        preprocessing: Preprocessing,
        augment: str,
        train: bool,
    ) -> None:
        self.items = [(str(path), int(label)) for path, label in items]
        self.decoded = decoded
        self.decode = decode_transform(preprocessing)
        self.short_side = int(preprocessing.resize)
        self.transform = tensor_transform(preprocessing, augment, train)
        self.random = train and augment != "none"

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key):
        return self.finish(key, self.read(key))

    def read(self, key):
        """The decoded uint8 image (held or decoded from the file; safe on any thread),
        already transformed when the transform draws nothing at random."""
        from .transforms import apply_on_any_thread
        from .loaders import UnreadableImage

        index = key[0] if isinstance(key, tuple) else key
        path = self.items[index][0]
        image = self.decoded.get(index) if self.decoded is not None else None
        if image is None:
            try:
                image = apply_on_any_thread(self.decode, open_rgb(path, self.short_side))
            except ImageReadError as exc:
                return UnreadableImage(index=int(index), path=path, reason=exc.reason)
        return image if self.random else apply_on_any_thread(self.transform, image)

    def finish(self, key, image):
        """The sample from :meth:`read`'s image: the random transform drawn under the
        key's seed, here, so that the caller's random state is restored on this thread."""
        from .loaders import UnreadableImage

        if isinstance(image, UnreadableImage):
            return image
        index, seed = key if isinstance(key, tuple) else (key, None)
        label = self.items[index][1]
        if not self.random:
            return image, label, int(index)
        if seed is not None:
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
