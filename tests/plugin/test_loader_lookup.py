"""The registry picks the loader for a path from what loaders declare (path kind, file
patterns, priority), never from a loader's id."""

from __future__ import annotations

import pytest

import dtl_loaders
from helpers_data import make_image_folder
from desktop_tl.plugin import DatasetError, DatasetLoader, DescriptorError
from desktop_tl.plugin.manager import (
    LoaderNotFoundError,
    PathNotLoadableError,
    choose_loader,
    loader_candidates,
)


def by_id(*loaders: DatasetLoader) -> dict[str, DatasetLoader]:
    return {loader.id: loader for loader in loaders}


def shipped() -> list[DatasetLoader]:
    return list(dtl_loaders.dtl_dataset_loaders())


def test_a_higher_priority_folder_loader_is_asked_first(tmp_path):
    make_image_folder(tmp_path, {"cat": 1, "dog": 1})
    greedy = DatasetLoader(
        id="greedy", display_name="Greedy", can_load=lambda p: True, load=lambda p, o: None
    )
    assert choose_loader(by_id(greedy, *shipped()), str(tmp_path)).id == "image-folder"
    special = DatasetLoader(
        id="special", display_name="Special", can_load=lambda p: True, load=lambda p, o: None, priority=20
    )
    assert choose_loader(by_id(*shipped(), special), str(tmp_path)).id == "special"


def test_file_patterns_decide_which_loaders_see_a_file(tmp_path):
    manifest = tmp_path / "labels.tsv"
    manifest.write_text("path\tlabel\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a manifest")
    loaders = shipped()
    assert [loader.id for loader in loader_candidates(loaders, str(manifest))] == ["csv-manifest"]
    assert loader_candidates(loaders, str(notes)) == []
    with pytest.raises(PathNotLoadableError, match=r"\*\.csv \*\.tsv"):
        choose_loader(by_id(*loaders), str(notes))


def test_one_error_type_per_mistake(tmp_path):
    loaders = by_id(*shipped())
    with pytest.raises(LoaderNotFoundError, match="did you mean 'csv-manifest'"):
        choose_loader(loaders, str(tmp_path), "csv-manifst")
    with pytest.raises(PathNotLoadableError, match="expects a file"):
        choose_loader(loaders, str(tmp_path), "csv-manifest")
    with pytest.raises(LoaderNotFoundError, match="no dataset loaders are installed"):
        choose_loader({}, str(tmp_path))
    # both are data problems to the engine and lookup problems to the registry
    assert issubclass(LoaderNotFoundError, DatasetError)
    assert issubclass(PathNotLoadableError, DatasetError)


def test_a_loader_declares_sensible_values_when_built():
    with pytest.raises(DescriptorError, match="path_kind 'files'"):
        DatasetLoader(id="x", display_name="x", can_load=bool, load=print, path_kind="files")
    with pytest.raises(DescriptorError, match="file_patterns must be a tuple"):
        DatasetLoader(
            id="x", display_name="x", can_load=bool, load=print, path_kind="file", file_patterns="*.csv"
        )
