"""A split turned into batches: :class:`ImageDataset` and :func:`make_loader`.

An image that becomes unreadable after the check (deleted, overwritten, a network share
gone) is not allowed to crash a DataLoader worker: it is dropped from its batch and
recorded on the loader (:attr:`ImageLoader.unreadable`). Everything handed to worker
processes is a top-level class or function, so the loaders work under the ``spawn`` start
method used on Windows, macOS and in frozen apps.

Images are decoded at the size their transform needs
(:func:`~desktop_tl.core.transforms.decode_short_side`), and a loader without worker
processes decodes the next batches on a thread pool while the network computes
(:class:`ImageLoader`); both give batches in the same order as decoding one image after
the other, and the same random draws.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from .images import ImageReadError, open_rgb
from .transforms import apply_on_any_thread, decode_short_side, is_deterministic

#: Below this many images, worker processes cost more to start (each imports torch)
#: than decoding in the training process costs over a whole run.
SMALL_DATASET_IMAGES = 1000


@dataclass(frozen=True)
class UnreadableImage:
    """Returned by :class:`ImageDataset` instead of a sample whose file no longer decodes;
    :func:`collate_skip_unreadable` drops it from the batch."""

    index: int
    path: str
    reason: str


class ImageDataset(Dataset):
    """``(path, class index)`` items as ``(image tensor, class index)`` samples.

    With ``with_index=True`` a sample is ``(image tensor, class index, item index)``, for
    callers that must know which image each row of a batch is (feature caches, lists of
    misclassified images). An image that fails to decode yields an
    :class:`UnreadableImage` marker rather than an exception, so a worker process survives
    it; :func:`make_loader`'s batches leave it out.

    A sample is made in two steps so that a thread pool can do the first: :meth:`read`
    (decode, and the transform too when it draws nothing at random; safe on any thread)
    and :meth:`finish` (a random transform, drawn in the caller's order).
    """

    def __init__(
        self, items: Sequence[tuple[str, int]], transform: Callable | None = None, *, with_index: bool = False
    ) -> None:
        self.items = [(str(path), int(label)) for path, label in items]
        self.transform = transform
        self.with_index = with_index
        self.decode_short_side = decode_short_side(transform)
        self._transform_on_read = transform is not None and is_deterministic(transform)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.finish(index, self.read(index))

    def read(self, index: int):
        """The decoded image (transformed, when the transform is deterministic), or an
        :class:`UnreadableImage`."""
        path, _ = self.items[index]
        try:
            image = open_rgb(path, self.decode_short_side)
        except ImageReadError as exc:
            return UnreadableImage(index=int(index), path=path, reason=exc.reason)
        return apply_on_any_thread(self.transform, image) if self._transform_on_read else image

    def finish(self, index: int, read: Any):
        """The sample from what :meth:`read` gave for ``index``."""
        if isinstance(read, UnreadableImage):
            return read
        _, label = self.items[index]
        if self.transform is not None and not self._transform_on_read:
            read = self.transform(read)
        return (read, label, int(index)) if self.with_index else (read, label)


@dataclass
class ImageBatch:
    """A collated batch: ``images`` and ``labels`` are ``None`` when every sample in it was
    unreadable. ``indices`` is set when the dataset returns item indices. ``skipped``
    lists ``(path, reason)`` of the samples left out."""

    images: torch.Tensor | None
    labels: torch.Tensor | None
    indices: torch.Tensor | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def pin_memory(self) -> "ImageBatch":  # called by DataLoader(pin_memory=True)
        def pin(tensor):
            return tensor.pin_memory() if tensor is not None else None

        return ImageBatch(pin(self.images), pin(self.labels), pin(self.indices), self.skipped)


def collate_skip_unreadable(samples: list) -> ImageBatch:
    """Collate ``(tensor, label[, index])`` samples, leaving out :class:`UnreadableImage`
    markers (listed in ``ImageBatch.skipped``). Runs inside worker processes."""
    skipped = [(s.path, s.reason) for s in samples if isinstance(s, UnreadableImage)]
    kept = [s for s in samples if not isinstance(s, UnreadableImage)]
    if not kept:
        return ImageBatch(None, None, None, skipped)
    columns = list(zip(*kept))
    images = default_collate(list(columns[0]))
    labels = default_collate(list(columns[1]))
    indices = default_collate(list(columns[2])) if len(columns) > 2 else None
    return ImageBatch(images, labels, indices, skipped)


class ImageLoader(DataLoader):
    """A DataLoader that yields ``(images, labels)`` and never an unreadable image.

    Iterating gives ``(images, labels)`` tuples; :meth:`batches` gives the
    :class:`ImageBatch` objects (with item indices). Batches whose every image was
    unreadable are skipped, and each unreadable file is recorded once in
    :attr:`unreadable` as ``(path, reason)``.

    Without worker processes, and with ``decode_threads`` of 1 or more over a dataset
    that splits a sample into ``read`` and ``finish`` (:class:`ImageDataset`,
    :class:`~desktop_tl.core.image_cache.DecodedImageDataset`), the next
    :data:`PREFETCH_BATCHES` batches are read on that many threads (Pillow and torch
    release the GIL) while the caller computes on the current one; 0 reads each batch
    here when it is asked for. The sampler, the random
    draws of ``finish`` and the collation run here, in order, so the batches equal those
    of decoding one image after the other.
    """

    def __init__(self, *args: Any, seed: int = 0, decode_threads: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seed = seed
        self.decode_threads = max(0, int(decode_threads))
        self.unreadable: list[tuple[str, str]] = []
        self._unreadable_paths: set[str] = set()

    def set_epoch(self, epoch: int) -> None:
        """Make the shuffle order (and workers' random seeds) a function of (seed, epoch),
        so a resumed run draws the same batches as an uninterrupted one. With persistent
        workers the workers' seeds are drawn once, on the first epoch iterated."""
        if self.generator is not None:
            self.generator.manual_seed((self.seed * 1_000_003 + epoch) % (2**63))

    def batches(self) -> Iterator[Any]:
        for batch in self._collated():
            if isinstance(batch, ImageBatch):
                for path, reason in batch.skipped:
                    if path not in self._unreadable_paths:
                        self._unreadable_paths.add(path)
                        self.unreadable.append((path, reason))
                if batch.images is None:
                    continue
            yield batch

    def __iter__(self) -> Iterator[Any]:
        for batch in self.batches():
            if isinstance(batch, ImageBatch):
                yield batch.images, batch.labels
            else:
                yield batch

    def _collated(self) -> Iterator[Any]:
        threaded = (
            self.num_workers == 0
            and self.decode_threads >= 1
            and self._auto_collation
            and hasattr(self.dataset, "read")
            and hasattr(self.dataset, "finish")
        )
        if not threaded:
            yield from super().__iter__()
            return

        from torch.utils.data._utils.pin_memory import pin_memory

        # The loader's own iterator draws its base seed and starts the sampler exactly as
        # the sequential path does; only fetching the samples is done differently.
        state = super().__iter__()
        dataset = self.dataset
        pending: deque = deque()
        pool = ThreadPoolExecutor(max_workers=self.decode_threads, thread_name_prefix="decode-image")

        def submit_next() -> None:
            try:
                indices = state._next_index()
            except StopIteration:
                return
            pending.append((indices, [pool.submit(dataset.read, i) for i in indices]))

        try:
            for _ in range(PREFETCH_BATCHES):
                submit_next()
            while pending:
                indices, futures = pending.popleft()
                submit_next()
                batch = self.collate_fn(
                    [dataset.finish(index, future.result()) for index, future in zip(indices, futures)]
                )
                if state._pin_memory:
                    batch = pin_memory(batch, state._pin_memory_device)
                yield batch
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


#: Batches read ahead by a loader's decoding threads: one being computed on, one ready,
#: one being decoded; more would only hold more decoded images in memory.
PREFETCH_BATCHES = 3


def default_decode_threads() -> int:
    """Threads that decode ahead for a loader without worker processes, while the network
    computes on torch's own threads: half the usable CPUs (decoding at the size needed
    is several times faster than the network's forward pass, so half keeps ahead of it,
    and the other half stays free for the network's threads), at most 4; none on a
    single CPU, where there is nothing to overlap."""
    cpus = _usable_cpus()
    return 0 if cpus <= 1 else max(1, min(4, cpus // 2))


def decode_threads_alone() -> int:
    """Threads for decoding when nothing else computes (building the decoded-image
    store): one per usable CPU, at most 8."""
    return max(1, min(8, _usable_cpus()))


def default_num_workers(num_items: int | None = None) -> int:
    """Worker processes for loading ``num_items`` images on this machine.

    0 (decode in the training process) on machines with 2 or fewer CPUs, where a worker
    would take a core from the model's own threads, and for datasets under
    :data:`SMALL_DATASET_IMAGES` images, where starting workers (each imports torch, a few
    seconds under ``spawn``) costs more than it saves. Otherwise one core is left for the
    training process and at most 4 workers are used, past which JPEG decoding of typical
    batches is no longer the bottleneck.
    """
    cpus = _usable_cpus()
    if cpus <= 2:
        return 0
    if num_items is not None and num_items < SMALL_DATASET_IMAGES:
        return 0
    return min(4, cpus - 1)


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int = -1,
    seed: int = 0,
    drop_last: bool = False,
    device: str | torch.device | None = None,
    multiprocessing_context: str | None = "spawn",
    collate_fn: Callable[[list], Any] = collate_skip_unreadable,
    sampler: Sampler | None = None,
    decode_threads: int = -1,
) -> ImageLoader:
    """A loader over ``dataset`` (usually an :class:`ImageDataset`).

    ``num_workers=-1`` sizes the workers with :func:`default_num_workers`. Workers are
    persistent (started once per loader, not per epoch) and started with ``spawn`` on
    every system: forking a process that runs threads (the GUI, torch's own pools) can
    deadlock, and using one start method everywhere means a Linux test run catches what
    would break on Windows and macOS. Memory is pinned only when ``device`` is CUDA.
    ``seed`` fixes the shuffle order and the workers' random seeds. A ``sampler`` (with
    ``shuffle=False``) sets the order instead, e.g. one whose order changes per epoch
    while the loader and its workers stay. Without workers, ``decode_threads`` threads
    read the next batches ahead (``-1``: :func:`default_decode_threads`; ``0``: one
    image after the other, here, when asked); see :class:`ImageLoader`.
    """
    if num_workers < 0:
        num_workers = default_num_workers(len(dataset))  # type: ignore[arg-type]
    if decode_threads < 0:
        decode_threads = default_decode_threads()
    generator = torch.Generator()
    generator.manual_seed(seed)
    options: dict[str, Any] = {}
    if num_workers > 0:
        options.update(persistent_workers=True, multiprocessing_context=multiprocessing_context)
    return ImageLoader(
        dataset,
        seed=seed,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=collate_fn,
        pin_memory=torch.device(device).type == "cuda" if device is not None else False,
        generator=generator,
        decode_threads=decode_threads,
        **options,
    )


def _usable_cpus() -> int:
    if hasattr(os, "process_cpu_count"):  # Python 3.13+
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1
