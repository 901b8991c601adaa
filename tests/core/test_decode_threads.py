"""Decoding on a thread pool ahead of the network gives exactly the batches, order and
random draws of decoding one image after the other."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from desktop_tl.core import loaders
from desktop_tl.core.transforms import build_transform
from desktop_tl.core.loaders import ImageDataset, make_loader
from desktop_tl.core.feature_cache import MemoryBudget
from desktop_tl.core.image_cache import DecodedImageDataset, DecodedImages, EpochSampler
from desktop_tl.plugin.descriptors import Preprocessing
from helpers_data import truncate_file

PREPROCESSING = Preprocessing(resize=72, crop=64)


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    """Real photo crops of different sizes, two classes, one file cut short."""
    from skimage import data as photos

    folder = tmp_path_factory.mktemp("threads")
    sources = [photos.astronaut(), photos.coffee(), photos.chelsea(), photos.rocket()]
    result = []
    for i in range(22):
        source = sources[i % len(sources)]
        top, left = (i * 7) % 60, (i * 11) % 80
        crop = source[top : top + 200 + i * 3, left : left + 240 - i * 2]
        path = folder / f"photo_{i:02d}.jpg"
        Image.fromarray(crop).save(path, quality=88)
        result.append((str(path), i % 2))
    truncate_file(Path(result[5][0]), 0.3)
    return result


def batches(loader):
    return [
        (b.images.clone(), b.labels.clone(), None if b.indices is None else b.indices.clone())
        for b in loader.batches()
    ]


def assert_same(left, right):
    assert len(left) == len(right)
    for (images_a, labels_a, indices_a), (images_b, labels_b, indices_b) in zip(left, right):
        assert torch.equal(images_a, images_b)
        assert torch.equal(labels_a, labels_b)
        assert (indices_a is None) == (indices_b is None)
        if indices_a is not None:
            assert torch.equal(indices_a, indices_b)


@pytest.mark.parametrize("augment, shuffle", [("none", False), ("light", True), ("strong", True)])
def test_threaded_loader_equals_sequential(items, augment, shuffle):
    def run(threads):
        torch.manual_seed(123)  # the augmentation draws from the global generator
        dataset = ImageDataset(
            items, build_transform(PREPROCESSING, augment, train=augment != "none"), with_index=True
        )
        loader = make_loader(
            dataset, batch_size=4, shuffle=shuffle, num_workers=0, seed=7, decode_threads=threads
        )
        loader.set_epoch(3)
        return batches(loader), loader.unreadable

    sequential, unreadable_sequential = run(0)
    threaded, unreadable_threaded = run(4)
    assert_same(sequential, threaded)
    one_thread, _ = run(1)
    assert_same(sequential, one_thread)
    assert unreadable_sequential == unreadable_threaded
    assert [path for path, _ in unreadable_threaded] == [items[5][0]]
    assert "truncated" in unreadable_threaded[0][1]
    assert sum(len(labels) for _, labels, _ in threaded) == len(items) - 1


def test_threaded_loader_stopped_early_leaves_nothing_running(items):
    import threading

    dataset = ImageDataset(items, build_transform(PREPROCESSING, "none", train=False))
    loader = make_loader(dataset, batch_size=2, shuffle=False, num_workers=0, decode_threads=3)
    iterator = iter(loader)
    next(iterator)
    iterator.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("decode-image")]


@pytest.mark.parametrize("augment", ["none", "light"])
def test_decoded_image_epochs_equal_sequential(items, augment):
    # a budget for about half the images: the rest are decoded from their files
    decoded = DecodedImages.build(items, PREPROCESSING, MemoryBudget(200_000), decode_threads=0)
    assert 0 < decoded.held < len(items) - 1

    def run(threads):
        dataset = DecodedImageDataset(items, decoded, PREPROCESSING, augment, train=True)
        sampler = EpochSampler()
        loader = make_loader(
            dataset,
            batch_size=5,
            shuffle=False,
            sampler=sampler,
            num_workers=0,
            seed=1,
            decode_threads=threads,
        )
        epochs = []
        for epoch in range(2):
            sampler.set_epoch(
                list(reversed(range(len(items)))) if epoch else list(range(len(items))), seed=epoch + 10
            )
            epochs.append(batches(loader))
        return epochs, loader.unreadable

    sequential, unreadable_sequential = run(0)
    threaded, unreadable_threaded = run(3)
    for a, b in zip(sequential, threaded):
        assert_same(a, b)
    assert unreadable_sequential == unreadable_threaded == [(items[5][0], unreadable_threaded[0][1])]


def test_decoded_images_built_on_threads_equal_sequential(items):
    one = DecodedImages.build(items, PREPROCESSING, MemoryBudget(1 << 30), decode_threads=0)
    many = DecodedImages.build(items, PREPROCESSING, MemoryBudget(1 << 30), decode_threads=4)
    assert one.held == many.held == len(items) - 1
    assert torch.equal(one.offsets, many.offsets) and torch.equal(one.shapes, many.shapes)
    assert torch.equal(one.data, many.data)
    assert many.get(5) is None


def test_decoded_images_build_on_threads_stops_when_asked(items):
    budget = MemoryBudget(1 << 30)
    seen = []
    decoded = DecodedImages.build(
        items,
        PREPROCESSING,
        budget,
        decode_threads=3,
        progress=seen.append,
        should_stop=lambda: len(seen) >= 3,
    )
    assert decoded.held == 0 and budget.used == 0 and len(seen) == 3


def test_decode_threads_suit_the_machine(monkeypatch):
    monkeypatch.setattr(loaders, "_usable_cpus", lambda: 1)
    assert loaders.default_decode_threads() == 0 and loaders.decode_threads_alone() == 1
    monkeypatch.setattr(loaders, "_usable_cpus", lambda: 2)
    assert loaders.default_decode_threads() == 1 and loaders.decode_threads_alone() == 2
    monkeypatch.setattr(loaders, "_usable_cpus", lambda: 64)
    assert loaders.default_decode_threads() == 4 and loaders.decode_threads_alone() == 8
    dataset = ImageDataset([("x.jpg", 0)])
    assert make_loader(dataset, batch_size=1, shuffle=False, num_workers=0).decode_threads == 4


def test_only_transforms_without_random_draws_run_on_the_decoding_threads():
    from desktop_tl.core.transforms import is_deterministic

    assert is_deterministic(build_transform(PREPROCESSING, "none", train=False))
    assert not is_deterministic(build_transform(PREPROCESSING, "light", train=True))
    assert not is_deterministic(build_transform(PREPROCESSING, "strong", train=True))
    assert not is_deterministic(lambda image: image)  # unknown code: run where it was asked
