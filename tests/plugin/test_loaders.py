"""The shipped dataset loaders: image folders and CSV/TSV manifests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import dtl_loaders
from desktop_tl.core.config import DataConfig
from desktop_tl.core.data import prepare_data
from desktop_tl.plugin.descriptors import DatasetError, DatasetLoader
from helpers_data import LoaderHost, make_image_folder, write_image

image_folder = dtl_loaders.IMAGE_FOLDER
csv_manifest = dtl_loaders.CSV_MANIFEST


def reasons_by_name(loaded) -> dict[str, str]:
    return {Path(path).name: reason for path, reason in loaded.ignored}


# --------------------------------------------------------------------------- registration


def test_module_declares_api_version_and_both_loaders():
    assert dtl_loaders.DTL_API_VERSION == "1.0"
    loaders = dtl_loaders.dtl_dataset_loaders()
    assert [loader.id for loader in loaders] == ["image-folder", "csv-manifest"]
    assert all(isinstance(loader, DatasetLoader) for loader in loaders)
    assert image_folder.path_kind == "folder" and csv_manifest.path_kind == "file"


def test_plugin_host_finds_the_loaders_through_the_entry_point():
    from desktop_tl.plugin.manager import PluginHost

    host = PluginHost(strict=False)
    host.load()
    record = next(r for r in host.records if r.module == "dtl_loaders")
    assert record.status == "loaded", record.error
    assert record.name == "loaders"
    assert {"loader:image-folder", "loader:csv-manifest"} <= set(record.provides)
    assert host.dataset_loaders()["image-folder"].load is image_folder.load


# --------------------------------------------------------------------------- image folder


def test_image_folder_reads_one_class_per_subfolder(tmp_path):
    make_image_folder(tmp_path, {"dog": 2, "cat": 3})
    loaded = image_folder.load(str(tmp_path), {})
    assert loaded.class_names == ["cat", "dog"]  # sorted
    assert sorted(s.label for s in loaded.samples) == ["cat"] * 3 + ["dog"] * 2
    assert all(s.subset is None for s in loaded.samples)
    assert not loaded.has_predefined_split
    assert loaded.root == str(tmp_path)


def test_image_folder_keeps_empty_class_folder_so_it_can_be_refused(tmp_path):
    make_image_folder(tmp_path, {"cat": 2})
    (tmp_path / "dog").mkdir()
    loaded = image_folder.load(str(tmp_path), {})
    assert loaded.class_names == ["cat", "dog"]
    assert {s.label for s in loaded.samples} == {"cat"}


def test_image_folder_reads_nested_folders_inside_a_class(tmp_path):
    make_image_folder(tmp_path, {"cat": 1, "dog": 1})
    write_image(tmp_path / "cat" / "2023" / "june" / "kitten.jpg")
    loaded = image_folder.load(str(tmp_path), {})
    nested = [s for s in loaded.samples if s.path.endswith("kitten.jpg")]
    assert len(nested) == 1 and nested[0].label == "cat"


def test_image_folder_uses_train_val_test_subfolders(tmp_path):
    make_image_folder(tmp_path, {"cat": 3, "dog": 3}, subset="train")
    make_image_folder(tmp_path, {"cat": 1, "dog": 1}, subset="validation")
    make_image_folder(tmp_path, {"cat": 1, "dog": 2}, subset="test")
    loaded = image_folder.load(str(tmp_path), {})
    assert loaded.has_predefined_split
    assert loaded.class_names == ["cat", "dog"]
    subsets = {}
    for sample in loaded.samples:
        subsets.setdefault(sample.subset, []).append(sample)
    assert {k: len(v) for k, v in subsets.items()} == {"train": 6, "val": 2, "test": 3}
    assert all(f"{os.sep}validation{os.sep}" in s.path for s in subsets["val"])


def test_image_folder_split_layout_ignores_other_folders_beside_train(tmp_path):
    make_image_folder(tmp_path, {"cat": 1, "dog": 1}, subset="train")
    make_image_folder(tmp_path, {"cat": 1, "dog": 1}, subset="val")
    make_image_folder(tmp_path, {"cat": 1}, subset="old_stuff")
    loaded = image_folder.load(str(tmp_path), {})
    assert "not val/ or test/" in reasons_by_name(loaded)["old_stuff"]
    assert len(loaded.samples) == 4


def test_image_folder_ignores_stray_files_with_reasons(tmp_path):
    make_image_folder(tmp_path, {"cat": 2, "dog": 2})
    for name in (".DS_Store", "Thumbs.db", "desktop.ini", "notes.txt", ".hidden.jpg"):
        (tmp_path / "cat" / name).write_bytes(b"\x00junk")
    (tmp_path / "dog" / "._dog_000.png").write_bytes(b"\x00\x05\x16\x07")  # macOS AppleDouble
    (tmp_path / "dog" / ".thumbnails").mkdir()
    write_image(tmp_path / "dog" / ".thumbnails" / "t.png")
    write_image(tmp_path / "loose.png")
    (tmp_path / "README.md").write_text("about this data")
    loaded = image_folder.load(str(tmp_path), {})
    reasons = reasons_by_name(loaded)
    assert (
        reasons[".DS_Store"] == reasons["Thumbs.db"] == reasons["desktop.ini"] == "system file, not an image"
    )
    assert "not an image file" in reasons["notes.txt"] and ".txt" in reasons["notes.txt"]
    assert reasons[".hidden.jpg"] == reasons["._dog_000.png"] == "hidden file"
    assert reasons[".thumbnails"] == "hidden folder"
    assert reasons["loose.png"] == "image outside any class folder"
    assert "not an image file" in reasons["README.md"]
    assert len(loaded.samples) == 4
    assert all(Path(s.path).suffix == ".png" for s in loaded.samples)


def test_image_folder_accepts_upper_case_extensions(tmp_path):
    make_image_folder(tmp_path, {"cat": 1, "dog": 1}, ext=".JPG")
    assert len(image_folder.load(str(tmp_path), {}).samples) == 2


def test_image_folder_accepts_folders_only(tmp_path):
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label\n")
    assert image_folder.can_load(str(tmp_path))
    assert not image_folder.can_load(str(manifest))
    assert not image_folder.can_load(str(tmp_path / "missing"))
    with pytest.raises(DatasetError, match="does not exist"):
        image_folder.load(str(tmp_path / "missing"), {})


# --------------------------------------------------------------------------- manifests


def make_manifest_images(tmp_path: Path) -> dict[str, list[Path]]:
    return make_image_folder(tmp_path / "images", {"cat": 3, "dog": 3})


def test_csv_manifest_resolves_relative_paths_against_its_folder(tmp_path):
    images = make_manifest_images(tmp_path)
    lines = ["path,label"] + [
        f"images/{name}/{p.name},{name}" for name, paths in images.items() for p in paths
    ]
    manifest = tmp_path / "labels.csv"
    manifest.write_text("\n".join(lines) + "\n")
    assert csv_manifest.can_load(str(manifest))
    loaded = csv_manifest.load(str(manifest), {})
    assert loaded.class_names == ["cat", "dog"]
    assert len(loaded.samples) == 6
    assert all(Path(s.path).is_file() for s in loaded.samples)
    assert loaded.root == str(tmp_path)


def test_tsv_manifest_with_split_column_in_any_order(tmp_path):
    images = make_manifest_images(tmp_path)
    rows = ["Split\tLabel\tPath"]
    for name, paths in images.items():
        rows += [
            f"train\t{name}\timages/{name}/{paths[0].name}",
            f"train\t{name}\timages/{name}/{paths[1].name}",
            f"val\t{name}\t{paths[2]}",
        ]  # an absolute path too
    manifest = tmp_path / "labels.tsv"
    manifest.write_text("\n".join(rows) + "\n")
    loaded = csv_manifest.load(str(manifest), {})
    assert loaded.has_predefined_split
    assert sorted(s.subset for s in loaded.samples) == ["train"] * 4 + ["val"] * 2
    assert all(Path(s.path).is_file() for s in loaded.samples)


def test_manifest_with_windows_separators_and_bom(tmp_path):
    images = make_manifest_images(tmp_path)
    lines = ["path,label"] + [
        f"images\\{name}\\{p.name},{name}" for name, paths in images.items() for p in paths
    ]
    manifest = tmp_path / "labels.csv"
    manifest.write_text("\ufeff" + "\r\n".join(lines) + "\r\n", encoding="utf-8")
    loaded = csv_manifest.load(str(manifest), {})
    assert len(loaded.samples) == 6
    assert all(Path(s.path).is_file() for s in loaded.samples)


def test_manifest_semicolon_separated(tmp_path):
    images = make_manifest_images(tmp_path)
    manifest = tmp_path / "labels.csv"
    manifest.write_text(
        "path;label\n" + "".join(f"images/{n}/{p.name};{n}\n" for n, paths in images.items() for p in paths)
    )
    assert len(csv_manifest.load(str(manifest), {}).samples) == 6


def test_manifest_row_with_missing_file_becomes_a_bad_file(tmp_path):
    images = make_manifest_images(tmp_path)
    lines = ["path,label"] + [
        f"images/{name}/{p.name},{name}" for name, paths in images.items() for p in paths
    ]
    lines.append("images/cat/never_copied.png,cat")
    manifest = tmp_path / "labels.csv"
    manifest.write_text("\n".join(lines) + "\n")
    prepared = prepare_data(DataConfig(path=str(manifest), val_fraction=0.34), LoaderHost())
    assert prepared.loader_id == "csv-manifest"
    assert prepared.bad_files == [(str(tmp_path / "images" / "cat" / "never_copied.png"), "file not found")]
    assert len(prepared.train) + len(prepared.val) == 6


def test_manifest_with_bad_header_is_refused_clearly(tmp_path):
    manifest = tmp_path / "labels.csv"
    manifest.write_text("filename,class\na.png,cat\n")
    with pytest.raises(DatasetError) as info:
        csv_manifest.load(str(manifest), {})
    message = str(info.value)
    assert "header" in message and "path" in message and "label" in message
    assert "filename,class" in message


def test_empty_manifest_is_refused(tmp_path):
    manifest = tmp_path / "labels.csv"
    manifest.write_text("\n\n")
    with pytest.raises(DatasetError, match="empty"):
        csv_manifest.load(str(manifest), {})


def test_manifest_with_unknown_split_value_is_refused(tmp_path):
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label,split\na.png,cat,trian\n")
    with pytest.raises(DatasetError) as info:
        csv_manifest.load(str(manifest), {})
    assert "'trian'" in str(info.value) and ":2" in str(info.value)


def test_manifest_rows_without_label_or_columns_are_ignored_with_reason(tmp_path):
    images = make_manifest_images(tmp_path)
    cat = images["cat"][0]
    manifest = tmp_path / "labels.csv"
    manifest.write_text(f"path,label\n{cat},cat\n{cat},\njust-one-column\n\n")
    loaded = csv_manifest.load(str(manifest), {})
    assert len(loaded.samples) == 1
    reasons = [reason for _, reason in loaded.ignored]
    assert any("no label" in r for r in reasons)
    assert any("1 column" in r for r in reasons)
    assert any(path.endswith(":4") for path, _ in loaded.ignored)


def test_manifest_that_is_not_utf8_is_refused(tmp_path):
    manifest = tmp_path / "labels.csv"
    manifest.write_bytes("path,label\nkätzchen.png,cat\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="UTF-8"):
        csv_manifest.load(str(manifest), {})


def test_manifest_loader_accepts_csv_and_tsv_files_only(tmp_path):
    (tmp_path / "a.txt").write_text("path,label\n")
    (tmp_path / "a.TSV").write_text("path\tlabel\n")
    assert csv_manifest.can_load(str(tmp_path / "a.TSV"))
    assert not csv_manifest.can_load(str(tmp_path / "a.txt"))
    assert not csv_manifest.can_load(str(tmp_path))
