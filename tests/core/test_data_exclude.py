"""Images left out by the user (data.exclude): in no split, in no run, kept in the project."""

from __future__ import annotations

import json

import pytest

from desktop_tl.core.config import ConfigError, DataConfig, RunConfig
from desktop_tl.core.data import prepare_data
from desktop_tl.core.exclusions import exclusion_key, exclusion_keys
from desktop_tl.plugin.descriptors import DatasetError
from helpers_data import LoaderHost, make_image_folder


def prepare(path, **options):
    return prepare_data(DataConfig(path=str(path), **options), LoaderHost())


def all_paths(prepared) -> set[str]:
    return {p for subset in ("train", "val", "test") for p, _ in getattr(prepared, subset)}


def test_excluded_images_are_in_no_split_and_reported_as_left_out(tmp_path):
    written = make_image_folder(tmp_path, {"cat": 10, "dog": 10})
    left_out = [written["cat"][0], written["dog"][3], written["dog"][7]]
    exclude = [exclusion_key(str(p), str(tmp_path)) for p in left_out]
    assert exclude == ["cat/cat_000.png", "dog/dog_003.png", "dog/dog_007.png"]

    prepared = prepare(tmp_path, val_fraction=0.2, test_fraction=0.2, exclude=exclude)

    assert all_paths(prepared).isdisjoint(str(p) for p in left_out)
    assert len(all_paths(prepared)) == 17
    assert sorted(prepared.excluded) == sorted((str(p), 0 if "cat" in p.name else 1) for p in left_out)
    assert prepared.excluded_gone == []
    assert prepared.bad_files == []  # left out is not the same as unreadable


def test_the_split_is_the_one_the_remaining_images_get(tmp_path):
    written = make_image_folder(tmp_path, {"cat": 12, "dog": 12})
    exclude = ["cat/cat_004.png", "dog/dog_000.png"]
    first = prepare(tmp_path, exclude=exclude)
    again = prepare(tmp_path, exclude=list(reversed(exclude)))
    assert (first.train, first.val) == (again.train, again.val)

    # The same images without the left-out ones on disk split exactly alike.
    remaining = tmp_path.parent / "remaining"
    for name, paths in written.items():
        for path in paths:
            if exclusion_key(str(path), str(tmp_path)) not in exclude:
                target = remaining / name / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
    alone = prepare(remaining)

    def names(items):
        return [(p.split("/")[-1].split("\\")[-1], label) for p, label in items]

    assert names(first.train) == names(alone.train) and names(first.val) == names(alone.val)


def test_a_predefined_split_drops_excluded_images_from_their_subset(tmp_path):
    make_image_folder(tmp_path, {"a": 5, "b": 5}, subset="train")
    make_image_folder(tmp_path, {"a": 2, "b": 2}, subset="val")
    prepared = prepare(tmp_path, exclude=["train/a/a_001.png", "val/b/b_000.png"])
    assert prepared.split_source == "predefined"
    assert prepared.counts()["train"] == {"a": 4, "b": 5}
    assert prepared.counts()["val"] == {"a": 2, "b": 1}
    assert len(prepared.excluded) == 2


def test_an_excluded_image_that_is_gone_is_reported_not_refused(tmp_path):
    make_image_folder(tmp_path, {"cat": 4, "dog": 4})
    prepared = prepare(tmp_path, exclude=["cat/cat_000.png", "cat/deleted_since.png"])
    assert prepared.excluded_gone == ["cat/deleted_since.png"]
    assert [exclusion_key(p, prepared.root) for p, _ in prepared.excluded] == ["cat/cat_000.png"]


def test_the_saved_split_keeps_what_was_left_out_for_a_resumed_run(tmp_path):
    from desktop_tl.core.data import PreparedData

    make_image_folder(tmp_path / "data", {"cat": 4, "dog": 4})
    prepared = prepare(tmp_path / "data", exclude=["cat/cat_000.png", "cat/deleted_since.png"])
    prepared.save_manifest(tmp_path / "split.json")
    again = PreparedData.load_manifest(tmp_path / "split.json")
    assert again.excluded == prepared.excluded and len(again.excluded) == 1
    assert again.excluded_gone == ["cat/deleted_since.png"]
    assert all_paths(again) == all_paths(prepared)


def test_leaving_out_every_image_of_a_class_says_so(tmp_path):
    make_image_folder(tmp_path, {"cat": 2, "dog": 4})
    with pytest.raises(DatasetError) as info:
        prepare(tmp_path, exclude=["cat/cat_000.png", "cat/cat_001.png"])
    message = str(info.value)
    assert "'cat'" in message and "2 left out by you" in message and "bring back" in message


def test_leaving_out_everything_says_so(tmp_path):
    make_image_folder(tmp_path, {"cat": 1, "dog": 1})
    with pytest.raises(DatasetError, match="all 2 images .* are left out"):
        prepare(tmp_path, exclude=["cat/cat_000.png", "dog/dog_000.png"])


def test_an_image_outside_the_dataset_folder_is_named_by_its_absolute_path(tmp_path):
    root = tmp_path / "data"
    assert exclusion_key(str(tmp_path / "elsewhere" / "x.png"), str(root)) == (
        (tmp_path / "elsewhere" / "x.png").as_posix()
    )
    assert exclusion_key(str(root / "cat" / "x.png"), str(root)) == "cat/x.png"


def test_keys_of_many_paths_are_those_of_one_path_at_a_time(tmp_path, monkeypatch):
    root = tmp_path / "data"
    monkeypatch.chdir(tmp_path)
    paths = [
        str(root / "cat" / "x.png"),
        str(root / "cat" / ".." / "dog" / "y.png"),  # spelt with ..
        str(tmp_path / "data2" / "cat" / "x.png"),  # a sibling whose name starts like root's
        str(tmp_path / "elsewhere" / "z.png"),
        str(root),  # the folder itself
        "data/cat/relative.png",  # relative to the working folder
        str(root / "a picture with spaces.png"),
    ]
    for spelt_root in (str(root), str(root) + "/", "data", str(tmp_path / "x" / ".." / "data")):
        assert exclusion_keys(paths, spelt_root) == [exclusion_key(p, spelt_root) for p in paths], spelt_root
    assert exclusion_keys(paths[:2], str(root)) == ["cat/x.png", "dog/y.png"]
    assert exclusion_keys(paths, "/")[0] == exclusion_key(paths[0], "/")


def test_the_exclude_list_survives_the_toml_round_trip():
    config = RunConfig()
    config.data.exclude = ["cat/cat_000.png", "dog/a picture with spaces.png"]
    again = RunConfig.from_toml(config.to_toml())
    assert again.data.exclude == config.data.exclude
    assert RunConfig.from_toml(RunConfig().to_toml()).data.exclude == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[data]\nexclude = "cat/cat_000.png"\n', "data.exclude must be a list"),
        ("[data]\nexclude = [1, 2]\n", r"data.exclude\[0\] = 1 must be a non-empty text"),
        ('[data]\nexclude = ["ok.png", ""]\n', r"data.exclude\[1\] = '' must be a non-empty text"),
    ],
)
def test_a_bad_exclude_value_is_refused_naming_the_setting(text, expected):
    with pytest.raises(ConfigError, match=expected):
        RunConfig.from_toml(text)


def test_a_non_list_set_in_code_is_refused_by_validate():
    config = RunConfig()
    config.data.exclude = "cat/cat_000.png"
    with pytest.raises(ConfigError, match="data.exclude must be a list"):
        config.validate()


def test_a_run_trains_without_the_excluded_images(tmp_path):
    """A real run: its split file and run.toml, and its log and summary say how many."""
    from desktop_tl.core.training import Trainer
    from helpers_training import lite0_config, sample_subset

    photos = sample_subset(tmp_path / "photos", n_train=6, n_val=3)
    left_out = sorted((photos / "train" / "brick").iterdir())[:2]
    exclude = [exclusion_key(str(p), str(photos)) for p in left_out]
    config = lite0_config(photos, tmp_path / "run", epochs=1)
    config.data.exclude = exclude
    finished = Trainer(config).run()
    assert finished.status == "completed", finished.reason

    split = json.loads((tmp_path / "run" / "split.json").read_text(encoding="utf-8"))
    listed = {p for subset in ("train", "val", "test") for p, _ in split[subset]}
    assert len(listed) == 2 * 6 + 2 * 3 - 2
    assert listed.isdisjoint(exclude)
    assert RunConfig.load(tmp_path / "run" / "run.toml").data.exclude == exclude
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    assert summary["num_excluded"] == 2 and summary["num_train"] == 10
    assert "2 image(s) left out by you" in (tmp_path / "run" / "run.log").read_text(encoding="utf-8")
