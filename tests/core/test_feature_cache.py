"""The feature store on its own: memory and spill, keys, entries kept for reuse, clean-up.

Features come from a small real convolutional network run over small generated images.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from desktop_tl.core.transforms import build_transform
from desktop_tl.core.loaders import ImageDataset, make_loader
from desktop_tl.core.cancelled import Cancelled
from desktop_tl.core.feature_cache import (
    ENTRY_SUFFIX,
    FeatureRangeError,
    FeatureWriter,
    MemoryBudget,
    extract_features,
    feature_key,
    open_entry,
    prune,
    state_digest,
)
from desktop_tl.plugin.descriptors import Preprocessing
from helpers_data import make_image_folder, write_image

PRE = Preprocessing(resize=36, crop=32)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    written = make_image_folder(root, {"red": 10, "green": 10}, size=(40, 40))
    return [(str(p), label) for label, paths in enumerate(written.values()) for p in paths]


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
    ).eval()


def batches(items, batch_size=6):
    loader = make_loader(
        ImageDataset(items, build_transform(PRE, "none", train=False), with_index=True),
        batch_size=batch_size,
        shuffle=False,
        num_workers=0,
    )
    for batch in loader.batches():
        yield batch.images, batch.labels, batch.indices


def extract(net, items, **options):
    def run(x):
        with torch.inference_mode():
            return net(x)

    return extract_features(run, batches(items), chain_index=5, **options)


def test_rows_are_the_same_in_memory_spilled_partly_spilled_and_kept(net, images, tmp_path):
    row_bytes = 8 * 16 * 16 * 2  # fp16 rows of (8, 16, 16)
    stores = {
        "memory": extract(net, images, budget=MemoryBudget(2**30)),
        "spilled": extract(net, images, budget=MemoryBudget(0), directory=tmp_path),
        "partly": extract(net, images, budget=MemoryBudget(7 * row_bytes), directory=tmp_path),
        "kept": extract(
            net, images, budget=MemoryBudget(3 * row_bytes), key="k" * 64, directory=tmp_path, persist=True
        ),
    }
    assert stores["memory"].spilled_bytes == 0 and stores["memory"].memory_rows == 20
    assert stores["spilled"].memory_rows == 0 and stores["spilled"].spilled_bytes == 20 * row_bytes
    assert stores["partly"].memory_rows == 7 and stores["kept"].memory_rows == 3
    # an anonymous spill file is not visible in the folder; the kept entry is
    assert [p.name for p in tmp_path.iterdir()] == ["k" * 64 + ENTRY_SUFFIX]

    rows = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    reference, labels = stores["memory"].take(rows)
    assert reference.dtype == torch.float16 and reference.shape == (20, 8, 16, 16)
    for name, store in stores.items():
        feats, store_labels = store.take(rows)
        assert torch.equal(feats, reference), name
        assert torch.equal(store_labels, labels), name
        assert torch.equal(store.keep, torch.arange(20)), name
        ordered = torch.cat([f for f, _, _ in store.batches(6)])
        assert torch.equal(ordered, stores["memory"].take(torch.arange(20))[0]), name

    # and they are the network's output, to fp16 precision
    with torch.inference_mode():
        direct = torch.cat([net(x) for x, _, _ in batches(images)])
    in_order = stores["memory"].take(torch.arange(20))[0]
    assert torch.allclose(in_order.float(), direct, rtol=1e-2, atol=1e-3)


def test_budget_is_shared_and_given_back(net, images, tmp_path):
    budget = MemoryBudget(30 * 8 * 16 * 16 * 2)
    first = extract(net, images, budget=budget, directory=tmp_path)
    second = extract(net, images, budget=budget, directory=tmp_path)
    assert first.memory_rows == 20 and second.memory_rows == 10  # what was left
    assert budget.used == 30 * 8 * 16 * 16 * 2
    first.close()
    second.close()
    assert budget.used == 0


def test_a_kept_entry_is_reused_and_read_like_the_original(net, images, tmp_path):
    key = feature_key({"backbone": "test"}, images)
    original = extract(net, images, key=key, directory=tmp_path, persist=True)
    reused = open_entry(key, MemoryBudget(5 * 8 * 16 * 16 * 2), directory=tmp_path)
    assert reused is not None and reused.reused and not original.reused
    assert reused.memory_rows == 5 and len(reused) == 20
    assert torch.equal(reused.take(torch.arange(20))[0], original.take(torch.arange(20))[0])
    assert torch.equal(reused.labels, original.labels) and reused.chain_index == 5
    assert open_entry("0" * 64, MemoryBudget(2**20), directory=tmp_path) is None


def test_keys_change_with_any_image_weights_or_preprocessing(images, tmp_path):
    items = [(str(write_image(tmp_path / f"{i}.png", seed=i, size=(12, 12))), i % 2) for i in range(4)]
    context = {
        "backbone": "tiny",
        "weights_sha256": "a" * 64,
        "prefix_state": "p",
        "preprocessing": PRE.to_dict(),
        "stage": [3, "backbone.blocks.0"],
        "precision": "fp32",
    }
    key = feature_key(context, items)
    assert feature_key(dict(context), list(items)) == key  # stable

    changed = [
        {**context, "weights_sha256": "b" * 64},
        {**context, "prefix_state": "q"},
        {**context, "preprocessing": Preprocessing(resize=40, crop=32).to_dict()},
        {**context, "stage": [4, "backbone.blocks.1"]},
        {**context, "precision": "bf16"},
    ]
    assert len({key, *(feature_key(c, items) for c in changed)}) == 1 + len(changed)
    assert feature_key(context, items[:3]) != key  # an image left out
    assert feature_key(context, [items[0], (items[1][0], 0), *items[2:]]) != key  # relabelled

    # the same path with new pixels (size and modification time change)
    before = os.stat(items[2][0])
    write_image(Path(items[2][0]), colour=(250, 0, 0), seed=99, size=(13, 12))
    os.utime(items[2][0], ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    assert feature_key(context, items) != key


def test_the_prefix_state_digest_sees_every_weight_and_buffer(net):
    digest = state_digest(list(net.children()))
    assert state_digest(list(net.children())) == digest
    assert state_digest(list(net.children())[:3]) != digest
    for tensor in (net[1].running_var, net[3].weight):  # a buffer and a parameter
        saved = tensor.detach().clone()
        with torch.no_grad():
            tensor.view(-1)[0] += 1.0
        try:
            assert state_digest(list(net.children())) != digest
        finally:
            with torch.no_grad():
                tensor.copy_(saved)
    assert state_digest(list(net.children())) == digest


def test_an_interrupted_extraction_leaves_no_entry_and_no_file(net, images, tmp_path):
    budget = MemoryBudget(2 * 8 * 16 * 16 * 2)

    def failing_batches():
        for n, batch in enumerate(batches(images)):
            if n == 2:
                raise OSError("disk went away")
            yield batch

    key = "f" * 64
    with pytest.raises(OSError, match="disk went away"):
        extract_features(
            lambda x: net(x).detach(),
            failing_batches(),
            5,
            budget=budget,
            key=key,
            directory=tmp_path,
            persist=True,
        )
    assert list(tmp_path.iterdir()) == [] and budget.used == 0

    calls = iter(range(100))
    with pytest.raises(Cancelled):
        extract_features(
            lambda x: net(x).detach(),
            batches(images),
            5,
            budget=budget,
            key=key,
            directory=tmp_path,
            persist=True,
            should_stop=lambda: next(calls) >= 2,
        )
    assert list(tmp_path.iterdir()) == [] and budget.used == 0
    assert open_entry(key, budget, directory=tmp_path) is None


def test_a_crashed_writer_leaves_only_a_temporary_file_that_is_never_read(net, images, tmp_path):
    key = "c" * 64
    writer = FeatureWriter(
        5, budget=MemoryBudget(0), dtype=torch.float16, key=key, directory=tmp_path, persist=True
    )
    for feats, labels, indices in batches(images[:12]):
        with torch.inference_mode():
            writer.add(net(feats), labels, indices)
    writer._file.close()  # the process dies here: no trailer, no rename
    leftovers = list(tmp_path.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.endswith(".tmp")
    assert open_entry(key, MemoryBudget(2**20), directory=tmp_path) is None

    assert prune(tmp_path, keep_bytes=2**30) == []  # too young: another process may be writing
    old = time.time() - 2 * 24 * 3600
    os.utime(leftovers[0], (old, old))
    assert prune(tmp_path, keep_bytes=2**30) == leftovers
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_entry_is_ignored_and_removed(net, images, tmp_path):
    key = "d" * 64
    extract(net, images, key=key, directory=tmp_path, persist=True).close()
    path = tmp_path / f"{key}{ENTRY_SUFFIX}"
    data = path.read_bytes()
    path.write_bytes(data[:1000] + data[-200:])  # rows lost in the middle
    assert open_entry(key, MemoryBudget(2**20), directory=tmp_path) is None
    assert not path.exists()


def test_prune_keeps_the_most_recently_used_entries(net, images, tmp_path):
    paths = []
    for n in range(3):
        key = str(n) * 64
        extract(net, images, key=key, directory=tmp_path, persist=True).close()
        path = tmp_path / f"{key}{ENTRY_SUFFIX}"
        stamp = time.time() - 1000 + n * 100
        os.utime(path, (stamp, stamp))
        paths.append(path)
    open_entry("0" * 64, MemoryBudget(2**20), directory=tmp_path).close()  # used now: newest
    # Room for the two most recently used (entries differ by a byte or two: the creation
    # time in each trailer is written with as many digits as it has).
    removed = prune(tmp_path, keep_bytes=paths[0].stat().st_size + paths[2].stat().st_size)
    assert removed == [paths[1]]
    assert paths[0].exists() and paths[2].exists()


def test_features_beyond_the_fp16_range_are_refused_not_stored_as_infinity():
    writer = FeatureWriter(1, budget=MemoryBudget(2**20), dtype=torch.float16)
    with pytest.raises(FeatureRangeError):
        writer.add(torch.full((2, 4), 1e6), torch.tensor([0, 1]), torch.tensor([0, 1]))
    writer.abort()
    bf16 = FeatureWriter(1, budget=MemoryBudget(2**20), dtype=torch.bfloat16)
    bf16.add(torch.full((2, 4), 1e6), torch.tensor([0, 1]), torch.tensor([0, 1]))
    store = bf16.finish()
    assert torch.isfinite(store.take(torch.tensor([0, 1]))[0]).all()
