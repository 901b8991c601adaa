"""Preparing data: checks, refusals, splits, transforms and loaders that survive bad files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from desktop_tl.core import data, loaders
from desktop_tl.core.cancelled import Cancelled
from desktop_tl.core.config import DataConfig
from desktop_tl.core.data import PreparedData, prepare_data, stratified_split
from desktop_tl.core.transforms import build_transform
from desktop_tl.core.loaders import default_num_workers, ImageDataset, make_loader
from desktop_tl.plugin.descriptors import DatasetError, DescriptorError, Preprocessing
from helpers_data import LoaderHost, make_image_folder, truncate_file

SAMPLE_DATASET = Path(__file__).resolve().parents[2] / "resources" / "sample_dataset"
SMALL = Preprocessing(resize=20, crop=16)


def prepare(path, **options) -> PreparedData:
    return prepare_data(DataConfig(path=str(path), **options), LoaderHost())


def refusal(path, **options) -> str:
    with pytest.raises(DatasetError) as info:
        prepare(path, **options)
    return str(info.value)


# --------------------------------------------------------------------------- preparing


def test_folder_without_split_is_split_stratified_and_disjoint(tmp_path):
    make_image_folder(tmp_path, {"cat": 10, "dog": 5, "owl": 2})
    prepared = prepare(tmp_path, val_fraction=0.2, test_fraction=0.2)
    assert prepared.split_source == "stratified"
    assert prepared.loader_id == "image-folder"
    assert prepared.class_names == ["cat", "dog", "owl"]
    counts = prepared.counts()
    assert counts["val"] == {"cat": 2, "dog": 1, "owl": 1}
    assert counts["test"] == {"cat": 2, "dog": 1, "owl": 0}
    assert counts["train"] == {"cat": 6, "dog": 3, "owl": 1}
    subsets = [{p for p, _ in getattr(prepared, s)} for s in ("train", "val", "test")]
    assert not (subsets[0] & subsets[1] or subsets[0] & subsets[2] or subsets[1] & subsets[2])
    assert len(set.union(*subsets)) == 17


def test_stratified_split_is_reproducible_for_a_seed():
    items = [(f"/d/{c}/{i}.png", label) for label, c in enumerate("ab") for i in range(20)]
    first = stratified_split(items, ["a", "b"], val_fraction=0.25, seed=7)
    again = stratified_split(list(reversed(items)), ["a", "b"], val_fraction=0.25, seed=7)
    other = stratified_split(items, ["a", "b"], val_fraction=0.25, seed=8)
    assert first == again
    assert first[1] != other[1]
    assert [label for _, label in first[1]].count(0) == 5


def test_split_of_one_class_does_not_move_when_another_class_grows():
    few = [("/d/a/1.png", 0), ("/d/a/2.png", 0), ("/d/a/3.png", 0), ("/d/b/1.png", 1)] + [
        (f"/d/b/{i}.png", 1) for i in range(2, 5)
    ]
    more = few + [(f"/d/b/{i}.png", 1) for i in range(5, 30)]

    def val_of_a(items):
        return [p for p, label in stratified_split(items, ["a", "b"], val_fraction=0.3)[1] if label == 0]

    assert val_of_a(few) == val_of_a(more)


def _subset_of(split) -> dict[str, str]:
    return {path: name for name, part in zip(("train", "val", "test"), split) for path, _ in part}


@pytest.mark.parametrize("test_fraction, most_moved", [(0.0, 1), (0.1, 2)])
def test_leaving_out_an_image_moves_at_most_one_other_image_per_share(test_fraction, most_moved):
    # Only the class's shares can move images: one for validation, one for test.
    items = [
        (f"/d/{c}/{i}.png", label) for label, (c, n) in enumerate([("a", 40), ("b", 23)]) for i in range(n)
    ]
    split = dict(val_fraction=0.2, test_fraction=test_fraction, seed=3, root="/d")
    before = _subset_of(stratified_split(items, ["a", "b"], **split))
    for left_out in items:
        after = _subset_of(stratified_split([it for it in items if it != left_out], ["a", "b"], **split))
        moved = [path for path in after if after[path] != before[path]]
        assert len(moved) <= most_moved, (left_out, moved)
        assert all(path.split("/")[2] == left_out[0].split("/")[2] for path in moved)


def test_a_moved_dataset_folder_keeps_its_split():
    def items_under(root):
        return [(f"{root}/{c}/{i}.png", label) for label, c in enumerate("ab") for i in range(15)]

    def relative(split, root):
        return [sorted(p[len(root) :] for p, _ in part) for part in split]

    here = stratified_split(items_under("/lab/data"), ["a", "b"], val_fraction=0.3, seed=1, root="/lab/data")
    there = stratified_split(
        items_under("/mnt/x/copy"), ["a", "b"], val_fraction=0.3, seed=1, root="/mnt/x/copy"
    )
    assert relative(here, "/lab/data") == relative(there, "/mnt/x/copy")


def test_every_class_with_two_images_gets_a_validation_image(tmp_path):
    make_image_folder(tmp_path, {"cat": 2, "dog": 2, "owl": 9})
    prepared = prepare(tmp_path, val_fraction=0.1)
    assert all(n >= 1 for n in prepared.counts()["val"].values())
    assert all(n >= 1 for n in prepared.counts()["train"].values())


def test_predefined_split_is_used_as_given(tmp_path):
    train = make_image_folder(tmp_path, {"cat": 3, "dog": 3}, subset="train")
    val = make_image_folder(tmp_path, {"cat": 1, "dog": 2}, subset="val")
    prepared = prepare(tmp_path, val_fraction=0.5)
    assert prepared.split_source == "predefined"
    assert sorted(p for p, _ in prepared.val) == sorted(str(p) for ps in val.values() for p in ps)
    assert sorted(p for p, _ in prepared.train) == sorted(str(p) for ps in train.values() for p in ps)
    assert prepared.test == []


def test_embedded_sample_dataset_is_ready_to_train():
    prepared = prepare(SAMPLE_DATASET)
    assert prepared.split_source == "predefined"
    assert prepared.class_names == ["brick", "grass", "gravel"]
    counts = prepared.counts()
    assert set(counts["train"].values()) == {80} and set(counts["val"].values()) == {25}
    assert prepared.bad_files == [] and prepared.ignored == []
    size = sum(p.stat().st_size for p in SAMPLE_DATASET.rglob("*") if p.is_file())
    assert size < 3_000_000


def test_unreadable_images_are_reported_and_left_out(tmp_path):
    images = make_image_folder(tmp_path, {"cat": 4, "dog": 4}, ext=".jpg", size=(48, 48))
    cut = truncate_file(images["cat"][0], 0.5)
    garbage = images["dog"][1]
    garbage.write_bytes(b"not an image, just text")
    prepared = prepare(tmp_path)
    bad = dict(prepared.bad_files)
    assert set(bad) == {str(cut), str(garbage)}
    assert "truncated" in bad[str(cut)]
    assert "not a recognised image" in bad[str(garbage)]
    used = {p for p, _ in prepared.train + prepared.val}
    assert str(cut) not in used and str(garbage) not in used
    assert len(used) == 6


def test_stray_files_are_ignored_not_refused(tmp_path):
    make_image_folder(tmp_path, {"cat": 2, "dog": 2})
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "dog" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (tmp_path / "dog" / "labels.txt").write_text("dog")
    prepared = prepare(tmp_path)
    assert {Path(p).name for p, _ in prepared.ignored} == {".DS_Store", "Thumbs.db", "labels.txt"}
    assert prepared.bad_files == []


def test_missing_path_is_refused(tmp_path):
    message = refusal(tmp_path / "no-such-folder")
    assert "does not exist" in message and "no-such-folder" in message


def test_empty_path_is_refused():
    assert "no dataset chosen" in refusal("")


def test_folder_without_images_is_refused_naming_the_extensions(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("nothing to see")
    message = refusal(tmp_path)
    assert "no images found" in message
    assert ".jpg" in message and ".png" in message
    assert "notes.txt" in message


def test_empty_class_is_refused_by_name(tmp_path):
    make_image_folder(tmp_path, {"cat": 3, "dog": 3})
    (tmp_path / "owl").mkdir()
    message = refusal(tmp_path)
    assert "'owl'" in message and "no readable images" in message
    assert "'cat'" not in message


def test_class_whose_images_are_all_unreadable_is_refused(tmp_path):
    images = make_image_folder(tmp_path, {"cat": 3, "dog": 2})
    for path in images["dog"]:
        path.write_bytes(b"corrupt")
    message = refusal(tmp_path)
    assert "'dog' (2 unreadable)" in message


def test_dataset_with_only_unreadable_images_is_refused(tmp_path):
    images = make_image_folder(tmp_path, {"cat": 2, "dog": 2})
    for path in images["cat"] + images["dog"]:
        path.write_bytes(b"corrupt")
    assert "none of the 4 images" in refusal(tmp_path)


def test_single_class_is_refused(tmp_path):
    make_image_folder(tmp_path, {"cat": 4})
    message = refusal(tmp_path)
    assert "only one class" in message and "'cat'" in message and "two" in message


def test_predefined_split_without_validation_images_draws_them_from_train(tmp_path):
    make_image_folder(tmp_path, {"cat": 5, "dog": 5}, subset="train")
    make_image_folder(tmp_path, {"cat": 1, "dog": 1}, subset="test")
    prepared = prepare(tmp_path, val_fraction=0.2)
    assert prepared.split_source == "drawn-from-train"
    assert prepared.counts()["val"] == {"cat": 1, "dog": 1}
    assert prepared.counts()["train"] == {"cat": 4, "dog": 4}
    assert prepared.counts()["test"] == {"cat": 1, "dog": 1}  # the dataset's own test stays
    assert not {p for p, _ in prepared.val} & {p for p, _ in prepared.train}


def test_predefined_split_without_validation_images_and_no_fraction_is_refused(tmp_path):
    make_image_folder(tmp_path, {"cat": 3, "dog": 3}, subset="train")
    message = refusal(tmp_path, val_fraction=0.0)
    assert "no validation images" in message and "val/" in message and "val_fraction" in message


def test_predefined_split_with_a_class_missing_from_train_is_refused(tmp_path):
    make_image_folder(tmp_path, {"cat": 3, "dog": 3}, subset="train")
    make_image_folder(tmp_path, {"cat": 1, "owl": 1}, subset="val")
    message = refusal(tmp_path)
    assert "'owl'" in message and "without training images" in message


def test_zero_validation_fraction_is_refused(tmp_path):
    make_image_folder(tmp_path, {"cat": 3, "dog": 3})
    message = refusal(tmp_path, val_fraction=0.0)
    assert "no validation images" in message and "val_fraction" in message


def test_one_image_per_class_is_refused_for_lack_of_validation_images(tmp_path):
    make_image_folder(tmp_path, {"cat": 1, "dog": 1})
    assert "at least 2" in refusal(tmp_path)


def test_unknown_loader_is_refused_with_the_installed_ones(tmp_path):
    make_image_folder(tmp_path, {"cat": 2, "dog": 2})
    message = refusal(tmp_path, loader="coco")
    assert "'coco'" in message and "image-folder" in message and "csv-manifest" in message


def test_loader_that_cannot_read_the_path_is_refused(tmp_path):
    make_image_folder(tmp_path, {"cat": 2, "dog": 2})
    message = refusal(tmp_path, loader="csv-manifest")
    assert "cannot read" in message and "file" in message


def test_auto_loader_prefers_image_folder_for_folders_and_skips_broken_loaders(tmp_path):
    import dtl_loaders
    from desktop_tl.plugin.descriptors import DatasetLoader

    def broken_can_load(path):
        raise RuntimeError("bug in a third-party loader")

    broken = DatasetLoader(
        id="broken", display_name="Broken", can_load=broken_can_load, load=lambda path, options: None
    )
    greedy = DatasetLoader(
        id="greedy", display_name="Greedy", can_load=lambda path: True, load=lambda path, options: None
    )
    host = LoaderHost([broken, greedy, *dtl_loaders.dtl_dataset_loaders()])
    make_image_folder(tmp_path, {"cat": 2, "dog": 2})
    assert data.choose_loader(str(tmp_path), host).id == "image-folder"
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n")
    host = LoaderHost([broken, *dtl_loaders.dtl_dataset_loaders()])
    assert data.choose_loader(str(manifest), host).id == "csv-manifest"


def test_duplicate_manifest_rows_are_ignored_with_reason(tmp_path):
    images = make_image_folder(tmp_path / "img", {"cat": 2, "dog": 2})
    rows = [f"{p},{name}" for name, paths in images.items() for p in paths]
    rows += [f"{images['cat'][0]},cat", f"{images['cat'][1]},dog"]
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    prepared = prepare(manifest, val_fraction=0.5)
    reasons = [reason for _, reason in prepared.ignored]
    assert "listed more than once" in reasons
    assert any("listed again with label 'dog'" in r for r in reasons)
    assert len(prepared.train) + len(prepared.val) == 4


def test_progress_is_reported_and_stopping_cancels(tmp_path):
    make_image_folder(tmp_path, {"cat": 3, "dog": 3})
    calls = []
    prepare_data(
        DataConfig(path=str(tmp_path)), LoaderHost(), progress=lambda done, total: calls.append((done, total))
    )
    assert calls[-1] == (6, 6)
    with pytest.raises(Cancelled):
        prepare_data(DataConfig(path=str(tmp_path)), LoaderHost(), should_stop=lambda: True)


# --------------------------------------------------------------------------- split manifest


def test_split_manifest_round_trip_gives_the_identical_split(tmp_path):
    root = tmp_path / "data"
    images = make_image_folder(root, {"cat": 5, "dog": 5})
    images["cat"][0].write_bytes(b"broken")
    (root / "dog" / "notes.txt").write_text("x")
    prepared = prepare(root, split_seed=3)
    manifest = tmp_path / "run" / "split.json"
    prepared.save_manifest(manifest)
    assert PreparedData.load_manifest(manifest) == prepared
    assert "cat/cat_001.png" in manifest.read_text()  # stored relative to the root


def test_split_manifest_follows_a_moved_dataset(tmp_path):
    make_image_folder(tmp_path / "data", {"cat": 3, "dog": 3})
    prepared = prepare(tmp_path / "data")
    prepared.save_manifest(tmp_path / "split.json")
    (tmp_path / "data").rename(tmp_path / "moved")
    moved = PreparedData.load_manifest(tmp_path / "split.json", root=tmp_path / "moved")
    assert all(Path(p).is_file() for p, _ in moved.train + moved.val)
    assert [label for _, label in moved.train] == [label for _, label in prepared.train]


def test_damaged_split_manifest_is_refused(tmp_path):
    path = tmp_path / "split.json"
    path.write_text('{"format": "desktop_tl-split", "version": 1, "train": [')
    with pytest.raises(DatasetError, match="cannot be read"):
        PreparedData.load_manifest(path)
    path.write_text(
        '{"format": "desktop_tl-split", "version": 1, "root": "/x", '
        '"loader_id": "image-folder", "class_names": ["a"], "train": [["a.png", 4]]}'
    )
    with pytest.raises(DatasetError, match="damaged"):
        PreparedData.load_manifest(path)
    with pytest.raises(DatasetError, match="does not exist"):
        PreparedData.load_manifest(tmp_path / "none.json")


# --------------------------------------------------------------------------- transforms


def uniform_image(value: int, size=(24, 30)) -> Image.Image:
    return Image.new("RGB", size, (value, value, value))


def test_eval_transform_resizes_crops_and_normalises():
    preprocessing = Preprocessing(
        resize=20, crop=16, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), interpolation="bicubic"
    )
    tensor = build_transform(preprocessing, "none", train=False)(uniform_image(204))
    assert tensor.shape == (3, 16, 16) and tensor.dtype == torch.float32
    assert type(tensor) is torch.Tensor
    expected = [(0.8 - 0.5) / 0.2, (0.8 - 0.4) / 0.25, (0.8 - 0.3) / 0.5]
    assert torch.allclose(tensor.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-3)


def test_eval_transform_keeps_aspect_ratio_before_the_centre_crop():
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    image[:, :5] = 255  # a white band on the far left is cropped away
    tensor = build_transform(
        Preprocessing(resize=16, crop=16, mean=(0, 0, 0), std=(1, 1, 1)), "none", train=False
    )(Image.fromarray(image))
    assert tensor.max() < 0.05


@pytest.mark.parametrize("augment", ["none", "light", "strong"])
def test_training_transforms_give_the_crop_size(augment):
    torch.manual_seed(0)
    transform = build_transform(SMALL, augment, train=True)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    outputs = [transform(image) for _ in range(3)]
    assert all(o.shape == (3, 16, 16) and o.dtype == torch.float32 for o in outputs)
    if augment != "none":
        assert not torch.equal(outputs[0], outputs[1])


def test_transforms_are_picklable_for_spawned_workers():
    for augment in ("none", "light", "strong"):
        transform = build_transform(SMALL, augment, train=True)
        restored = pickle.loads(pickle.dumps(transform))
        assert restored(uniform_image(10)).shape == (3, 16, 16)
    eval_transform = build_transform(SMALL, "none", train=False)
    restored = pickle.loads(pickle.dumps(eval_transform))
    assert torch.equal(restored(uniform_image(99)), eval_transform(uniform_image(99)))


def test_unknown_augmentation_or_interpolation_is_refused():
    with pytest.raises(DatasetError, match="none, light, strong"):
        build_transform(SMALL, "extreme", train=True)
    with pytest.raises(DescriptorError, match="interpolation 'sinc'"):  # refused when built
        Preprocessing(interpolation="sinc")


# --------------------------------------------------------------------------- loaders


def labelled_items(tmp_path, per_class=None, ext=".png"):
    images = make_image_folder(tmp_path, per_class or {"cat": 3, "dog": 3}, ext=ext)
    return [(str(p), label) for label, paths in enumerate(images.values()) for p in paths]


def test_dataset_returns_tensor_and_label(tmp_path):
    items = labelled_items(tmp_path)
    dataset = ImageDataset(items, build_transform(SMALL, "none", train=False))
    tensor, label = dataset[4]
    assert tensor.shape == (3, 16, 16) and label == 1
    assert ImageDataset(items, None, with_index=True)[2][2] == 2


def test_file_lost_after_probing_is_dropped_and_recorded(tmp_path):
    items = labelled_items(tmp_path)
    lost = Path(items[1][0])
    lost.unlink()
    loader = make_loader(
        ImageDataset(items, build_transform(SMALL, "none", train=False)),
        batch_size=4,
        shuffle=False,
        num_workers=0,
        seed=0,
    )
    batches = list(loader)
    assert [len(labels) for _, labels in batches] == [3, 2]
    assert loader.unreadable == [(str(lost), "file not found")]
    list(loader)  # a second epoch records it once
    assert len(loader.unreadable) == 1


def test_batch_whose_images_are_all_unreadable_is_skipped(tmp_path):
    items = labelled_items(tmp_path, {"cat": 2, "dog": 2})
    for path, _ in items[:2]:
        Path(path).write_bytes(b"gone bad")
    loader = make_loader(
        ImageDataset(items, build_transform(SMALL, "none", train=False), with_index=True),
        batch_size=2,
        shuffle=False,
        num_workers=0,
        seed=0,
    )
    batches = list(loader.batches())
    assert len(batches) == 1
    assert batches[0].indices.tolist() == [2, 3]
    assert len(loader.unreadable) == 2


def test_spawned_worker_survives_an_image_corrupted_after_probing(tmp_path):
    items = labelled_items(tmp_path, {"cat": 3, "dog": 3}, ext=".jpg")
    prepared = prepare(tmp_path, val_fraction=0.34)
    assert prepared.bad_files == []
    corrupted = Path(items[0][0])
    truncate_file(corrupted, 0.3)
    deleted = Path(items[4][0])
    deleted.unlink()
    dataset = ImageDataset(items, build_transform(SMALL, "light", train=True))
    loader = make_loader(
        dataset, batch_size=2, shuffle=True, num_workers=1, seed=0, multiprocessing_context="spawn"
    )
    assert loader.persistent_workers and loader.num_workers == 1
    assert loader.multiprocessing_context.get_start_method() == "spawn"
    assert not loader.pin_memory
    seen = sum(len(labels) for images, labels in loader)
    assert seen == 4
    assert {path for path, _ in loader.unreadable} == {str(corrupted), str(deleted)}


def test_same_seed_and_epoch_give_the_same_order(tmp_path):
    items = labelled_items(tmp_path, {"cat": 4, "dog": 4})
    dataset = ImageDataset(items, build_transform(SMALL, "none", train=False), with_index=True)

    def order(epoch):
        loader = make_loader(dataset, batch_size=8, shuffle=True, num_workers=0, seed=5)
        loader.set_epoch(epoch)
        return next(iter(loader.batches())).indices.tolist()

    assert order(2) == order(2)
    assert order(2) != order(3)


def test_default_worker_count_suits_the_machine(monkeypatch):
    monkeypatch.setattr(loaders, "_usable_cpus", lambda: 2)
    assert default_num_workers(100_000) == 0
    monkeypatch.setattr(loaders, "_usable_cpus", lambda: 16)
    assert default_num_workers(100_000) == 4
    assert default_num_workers(300) == 0
    monkeypatch.setattr(loaders, "_usable_cpus", lambda: 3)
    assert default_num_workers(100_000) == 2
    monkeypatch.setattr(loaders, "_usable_cpus", lambda: 1)
    loader = make_loader(
        torch.utils.data.TensorDataset(torch.zeros(4, 2)), batch_size=2, shuffle=False, num_workers=-1, seed=0
    )
    assert loader.num_workers == 0 and not loader.persistent_workers


def test_manifest_without_rows_is_refused(tmp_path):
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label\n")
    assert "lists no images" in refusal(manifest)


def test_relative_paths_from_a_third_party_loader_are_read_from_its_root(tmp_path):
    from desktop_tl.plugin.descriptors import DatasetLoader, LoadedDataset, Sample

    make_image_folder(tmp_path, {"cat": 2, "dog": 2})

    def load(path, options):
        samples = [Sample(f"{name}/{name}_{i:03d}.png", name) for name in ("cat", "dog") for i in range(2)]
        return LoadedDataset(samples, ["cat", "dog"], path)

    flat = DatasetLoader(id="relative", display_name="Relative paths", can_load=lambda path: True, load=load)
    prepared = prepare_data(DataConfig(path=str(tmp_path), loader="relative"), LoaderHost([flat]))
    assert prepared.bad_files == []
    assert all(Path(p).is_absolute() for p, _ in prepared.train + prepared.val)


@pytest.mark.cuda
def test_loader_for_cuda_pins_its_batches(tmp_path):
    items = labelled_items(tmp_path)
    loader = make_loader(
        ImageDataset(items, build_transform(SMALL, "none", train=False)),
        batch_size=3,
        shuffle=False,
        num_workers=0,
        seed=0,
        device="cuda",
    )
    assert loader.pin_memory
    images, labels = next(iter(loader))
    assert images.is_pinned() and labels.is_pinned()
    assert images.to("cuda", non_blocking=True).shape == (3, 3, 16, 16)
