"""Run history read back from real run folders: listing, comparing, names and notes,
per-class CSV, the trash, and damaged, half-written, newer or vanished folders."""

from __future__ import annotations

import csv
import json
import os
import shutil

import pytest

from desktop_tl.core import run_history as rh
from desktop_tl.core.run_comparison import compare_runs
from desktop_tl.core.run_folder import lock_run_dir
from desktop_tl.core.training import Trainer

from helpers_training import lite0_config, sample_subset


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three real short runs: two on brick/grass (lr 1e-3 and 3e-3), one on brick/gravel."""
    root = tmp_path_factory.mktemp("history")
    grass = sample_subset(root / "grass_data", classes=("brick", "grass"), n_train=4, n_val=2)
    gravel = sample_subset(root / "gravel_data", classes=("brick", "gravel"), n_train=4, n_val=2)
    folder = root / "runs"
    made = {}
    for key, data, lr, epochs in (("a", grass, 1e-3, 2), ("b", grass, 3e-3, 1), ("c", gravel, 1e-3, 1)):
        out = folder / f"run_{key}"
        result = Trainer(lite0_config(data, out, epochs=epochs, batch_size=4, lr=lr)).run()
        assert result.status == "completed", result.reason
        made[key] = out
    made["folder"] = folder
    return made


def test_lists_every_run_with_what_it_was(runs):
    records = {r.folder_name: r for r in rh.list_runs([runs["folder"]])}
    assert set(records) == {"run_a", "run_b", "run_c"}
    a = records["run_a"]
    assert a.status == "completed" and a.epochs_text == "2/2"
    assert a.backbone == "efficientnet_lite:efficientnet_lite0" and a.head == "linear"
    assert a.freeze == "head-only" and a.dataset_name == "grass_data"
    assert a.classes == ["brick", "grass"] and 0 <= a.val_acc <= 1 and a.best_val_acc >= a.val_acc
    assert a.duration_s > 0 and a.started is not None and not a.problem
    assert [row["epoch"] for row in a.metrics()] == [1.0, 2.0]
    # a run folder given directly counts too, and nothing is listed twice
    assert len(rh.list_runs([runs["folder"], runs["a"]])) == 3


def test_display_name_and_note_are_kept_in_the_run_folder(runs, tmp_path):
    run = tmp_path / "renamed"
    shutil.copytree(runs["a"], run)
    record = rh.set_display_name(run, "  baseline  ")
    assert record.name == "baseline" and record.folder_name == "renamed"
    record = rh.set_note(run, "head only, before augmentation")
    assert record.name == "baseline" and record.note == "head only, before augmentation"
    notes = json.loads((run / rh.NOTES_FILE).read_text())
    assert notes["format"] == rh.NOTES_FORMAT and notes["name"] == "baseline"
    assert rh.find_run("baseline", [tmp_path]).path == run
    assert rh.find_run("renamed", [tmp_path]).path == run
    assert rh.set_display_name(run, "").name == "renamed"  # empty: the folder name again
    with pytest.raises(rh.RunHistoryError, match="one line"):
        rh.set_display_name(run, "two\nlines")
    with pytest.raises(rh.RunHistoryError, match="no run 'nothing'"):
        rh.find_run("nothing", [tmp_path])


def test_comparison_lists_differing_settings_and_marks_other_datasets(runs):
    a, b, c = (rh.read_run(runs[k]) for k in "abc")
    comparison = compare_runs([a, b, c])
    differing = dict(comparison.differing)
    assert differing["train.lr"] == [1e-3, 3e-3, 1e-3]
    assert differing["train.epochs"] == [2, 1, 1]
    assert "data.path" in differing and "out" not in differing
    assert 1 not in comparison.not_comparable  # same data, another learning rate
    assert "different dataset" in comparison.not_comparable[2]
    assert comparison.metric_rows()[0] == ("status", ["completed"] * 3)
    assert any("run_c is not comparable" in m for m in comparison.messages())
    with pytest.raises(rh.RunHistoryError, match="at least two"):
        compare_runs([a])


def test_a_different_class_set_on_the_same_folder_is_not_comparable(runs, tmp_path):
    # The same dataset folder, later holding other classes: the summaries tell them apart.
    run = tmp_path / "other_classes"
    shutil.copytree(runs["c"], run)
    config = (run / "run.toml").read_text()
    (run / "run.toml").write_text(config.replace("gravel_data", "grass_data"))
    comparison = compare_runs([rh.read_run(runs["a"]), rh.read_run(run)])
    assert "different class set" in comparison.not_comparable[1]


def test_per_class_csv_is_readable(runs, tmp_path):
    target = rh.write_per_class_csv(rh.read_run(runs["a"]), tmp_path / "per_class.csv")
    rows = list(csv.DictReader(target.open()))
    assert [r["class"] for r in rows] == ["brick", "grass"]
    assert sum(int(r["support"]) for r in rows) == 4  # two validation images per class
    assert all(0 <= float(r["recall"]) <= 1 for r in rows)


def test_damaged_half_written_newer_and_running_folders_each_say_so(runs, tmp_path):
    folder = tmp_path / "bad"
    for name in ("damaged", "half", "newer", "running"):
        shutil.copytree(runs["a"], folder / name)
    (folder / "damaged" / "summary.json").write_text('{"status": "compl')
    (folder / "half" / "summary.json").unlink()
    (folder / "half" / "run.toml").unlink()
    summary = json.loads((folder / "newer" / "summary.json").read_text())
    summary["versions"]["desktop_tl"] = "99.0"
    summary["format_added_later"] = {"x": 1}
    (folder / "newer" / "summary.json").write_text(json.dumps(summary))
    (folder / "running" / "summary.json").unlink()
    (folder / "running" / "metrics.csv").unlink()

    with lock_run_dir(folder / "running"):  # as a training process holds it
        records = {r.folder_name: r for r in rh.list_runs([folder])}
    assert records["damaged"].status == "damaged"
    assert "summary.json is damaged" in records["damaged"].problem
    assert records["damaged"].backbone  # what could be read is still there
    assert records["half"].status == "damaged" and "not written completely" in records["half"].problem
    assert records["newer"].status == "completed" and "newer" in records["newer"].problem
    assert records["running"].status == "running" and records["running"].metrics() == []

    comparison = compare_runs([records["newer"], records["running"]])
    assert comparison.without_metrics == [1]
    assert any("no metrics yet" in m for m in comparison.messages())


def test_a_folder_deleted_while_shown_gives_a_clear_message(runs, tmp_path):
    run = tmp_path / "gone"
    shutil.copytree(runs["b"], run)
    record = rh.read_run(run)
    shutil.rmtree(run)
    for action in (
        lambda: rh.read_run(record.path),
        lambda: rh.set_note(record.path, "x"),
        lambda: rh.move_to_trash(record.path),
    ):
        with pytest.raises(rh.RunHistoryError, match="deleted or moved"):
            action()


def test_move_to_trash_moves_the_folder_and_refuses_a_running_run(runs, tmp_path, monkeypatch):
    from send2trash import plat_other

    trash = tmp_path / "Trash"
    monkeypatch.setattr(plat_other, "XDG_DATA_HOME", os.fsencode(tmp_path))
    monkeypatch.setattr(plat_other, "HOMETRASH_B", os.fsencode(trash))
    monkeypatch.setattr(plat_other, "HOMETRASH", str(trash))
    run = tmp_path / "to_trash"
    shutil.copytree(runs["b"], run)
    rh.move_to_trash(run)
    assert not run.exists() and (trash / "files" / "to_trash" / "summary.json").exists()

    running = tmp_path / "still_training"
    shutil.copytree(runs["b"], running)
    with lock_run_dir(running), pytest.raises(rh.RunHistoryError, match="still training"):
        rh.move_to_trash(running)
    assert running.exists()
    with pytest.raises(rh.RunHistoryError, match="not a run folder"):
        rh.move_to_trash(tmp_path)


def test_durations_read_as_a_person_would_say_them():
    assert rh.format_duration(None) == ""
    assert rh.format_duration(0.3) == "under 1 s"  # a run on cached features, not "0 s"
    assert rh.format_duration(1.4) == "1 s"
    assert rh.format_duration(75) == "1 min 15 s"
    assert rh.format_duration(3 * 3600 + 120) == "3 h 02 min"
