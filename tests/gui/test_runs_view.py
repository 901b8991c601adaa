"""The Runs tab of the real window on real runs made by the CLI and by the window:
listing, sorting, filtering, rename, note, comparison, exports, the trash, bad folders."""

from __future__ import annotations

import csv
import json
import os
import shutil

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from helpers_training import train_with_cli
from window_helpers import FAST_BACKBONE, configure_fast_run, make_tiny_dataset, save_screenshot

RUN_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def shared_runs(tmp_path_factory):
    """The runs folder of this module, holding one real run made by `desktop-tl train`."""
    root = tmp_path_factory.mktemp("gui_runs")
    data = make_tiny_dataset(root / "data", per_class_train=4, per_class_val=2)
    folder = root / "runs"
    fast = ("--weights", "none", "--epochs", "2", "--batch-size", "4", "--precision", "fp32")
    cli_run = train_with_cli(folder, data, FAST_BACKBONE, *fast)
    return {"folder": folder, "data": data, "cli_run": cli_run}


@pytest.fixture
def runs_dir(shared_runs, monkeypatch):  # the window's runs folder: this module's
    monkeypatch.setenv("DTL_RUNS_DIR", str(shared_runs["folder"]))
    return shared_runs["folder"]


@pytest.fixture
def trash(tmp_path, monkeypatch):
    from send2trash import plat_other

    folder = tmp_path / "Trash"
    monkeypatch.setattr(plat_other, "XDG_DATA_HOME", os.fsencode(tmp_path))
    monkeypatch.setattr(plat_other, "HOMETRASH_B", os.fsencode(folder))
    monkeypatch.setattr(plat_other, "HOMETRASH", str(folder))
    return folder


def _select(view, qtbot, *paths):
    view.select_runs(list(paths))
    qtbot.waitUntil(lambda: len(view.selected_runs()) == len(paths), timeout=5_000)


def test_runs_from_the_cli_and_the_window_compared_and_exported(
    window, qtbot, shared_runs, runs_dir, tmp_path, trash, monkeypatch
):
    cli_run = shared_runs["cli_run"]
    configure_fast_run(window, qtbot, shared_runs["data"], epochs=3, lr=3e-3)
    with qtbot.waitSignal(window.training.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        assert window.start_training()
    assert blocker.args[0].status == "completed", blocker.args[0].reason
    window_run = blocker.args[0].run_dir

    view = window.runs_view
    window.runs_action.trigger()  # Run > Run history shows the tab
    assert window.tabs.currentWidget().isAncestorOf(view)
    qtbot.waitUntil(lambda: len(view.records) == 2, timeout=5_000)  # refreshed after the run
    assert {r.status for r in view.records} == {"completed"}
    assert {str(r.path) for r in view.records} == {str(cli_run), window_run}
    window_record = next(r for r in view.records if str(r.path) == window_run)
    assert window_record.epochs_text == "3/3" and window_record.backbone == FAST_BACKBONE

    # rename and note, kept in the run folder
    _select(view, qtbot, window_run)
    view.ask_text = lambda title, label, text: "lr 3e-3" if title == "Rename run" else "from the window"
    view.rename_button.click()
    view.note_button.click()
    notes = json.loads((window_run_path := view.selected_runs()[0].path).joinpath("notes.json").read_text())
    assert notes["name"] == "lr 3e-3" and notes["note"] == "from the window"
    assert "lr 3e-3" in view.visible_names()

    # sort by epochs (3 > 2), filter by note
    view.table.sortByColumn(6, Qt.SortOrder.DescendingOrder)
    assert view.visible_names()[0] == "lr 3e-3"
    view.filter_edit.setText("window")
    assert view.visible_names() == ["lr 3e-3"]
    view.filter_edit.clear()
    view.status_filter.setCurrentText("failed")
    assert view.visible_names() == []
    view.status_filter.setCurrentIndex(0)

    # compare: both curves overlaid with the run names in the legend, settings that differ
    _select(view, qtbot, str(cli_run), window_run)
    comparison = view.comparison
    assert len(comparison.curves["acc"]) == 2 and len(comparison.curves["loss"]) == 2
    legend = [label.text for _sample, label in comparison.acc_legend.items]
    assert legend == [cli_run.name[:14] + "…" + cli_run.name[-14:], "lr 3e-3"]
    assert list(comparison.curves["acc"][1].getData()[0]) == [1.0, 2.0, 3.0]
    headers, rows = comparison.table_rows()
    settings = dict(rows)
    assert settings["train.lr"] == ["0.001", "0.003"] and settings["train.epochs"] == ["2", "3"]
    assert not any("not comparable" in h for h in headers)
    save_screenshot(window, "runs_compare_two")

    # results out: curves PNG and SVG, table CSV, per-class CSV, confusion matrix PNG
    png = comparison.save_curves(tmp_path / "curves.png")
    image = QImage(str(png))
    assert not image.isNull() and image.width() >= 800
    svg = comparison.save_curves(tmp_path / "curves.svg").read_text()
    assert "<svg" in svg and ("<path" in svg or "<polyline" in svg)
    table = list(csv.reader(comparison.save_table(tmp_path / "table.csv").open()))
    assert table[0][1:] == [cli_run.name, "lr 3e-3"] and ["train.lr", "0.001", "0.003"] in table
    comparison.status.clear()
    comparison.ask_save_path = lambda *_: str(tmp_path / "curves.jpeg")
    comparison.save_curves_button.click()
    assert "Not saved" in comparison.status.text() and ".png or .svg" in comparison.status.text()

    _select(view, qtbot, window_run)
    view.ask_save_path = lambda title, name, filters: str(tmp_path / name)
    view.per_class_button.click()
    rows = list(csv.DictReader((tmp_path / "per_class.csv").open()))
    assert [r["class"] for r in rows] == ["blue", "green", "red"]
    assert sum(int(r["support"]) for r in rows) == 6
    view.matrix_button.click()
    matrix = QImage(str(tmp_path / "confusion_matrix.png"))
    assert not matrix.isNull() and matrix.width() >= 420
    save_screenshot(window, "runs_one_selected")

    # open the folder (the desktop's file manager is not called in a test)
    opened = []
    from PySide6.QtGui import QDesktopServices

    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    view.open_folder_button.click()
    assert opened and opened[0].toLocalFile() == str(window_run_path)

    # open the run's evaluation in the Evaluation tab
    view.evaluation_button.click()
    assert window.tabs.currentWidget().isAncestorOf(window.evaluation_view)
    assert window.evaluation_view.has_results()
    assert window.evaluation_view.matrix.class_names() == ["blue", "green", "red"]

    # delete: asked first; No keeps it, Yes moves it to the trash
    copy = runs_dir / "copy_to_trash"
    shutil.copytree(cli_run, copy)
    view.refresh()
    _select(view, qtbot, copy)
    asked = []
    view.confirm = lambda title, text: asked.append(text) or False
    view.trash_button.click()
    assert copy.exists() and "copy_to_trash" in asked[0] and "trash" in asked[0]
    view.confirm = lambda title, text: True
    view.trash_button.click()
    assert not copy.exists() and (trash / "files" / "copy_to_trash" / "run.toml").exists()
    assert "copy_to_trash" not in [r.folder_name for r in view.records]
    assert "Moved copy_to_trash to the trash" in view.notice.text()


def test_bad_run_folders_each_get_a_clear_message(window, qtbot, shared_runs, tmp_path):
    cli_run = shared_runs["cli_run"]
    extra = tmp_path / "more_runs"
    for name in ("damaged", "half_written", "newer", "no_metrics", "vanishing", "other_data"):
        shutil.copytree(cli_run, extra / name)
        (extra / name / "notes.json").unlink(missing_ok=True)
    (extra / "damaged" / "summary.json").write_text("{ not json")
    (extra / "half_written" / "summary.json").unlink()
    (extra / "half_written" / "run.toml").unlink()
    summary = json.loads((extra / "newer" / "summary.json").read_text())
    summary["versions"]["desktop_tl"] = "99.1"
    (extra / "newer" / "summary.json").write_text(json.dumps(summary))
    (extra / "no_metrics" / "metrics.csv").unlink()
    (extra / "no_metrics" / "summary.json").write_text(
        json.dumps({"status": "cancelled", "reason": "stopped by the user"})
    )
    summary = json.loads((extra / "other_data" / "summary.json").read_text())
    summary["classes"] = ["cyan", "magenta", "yellow"]
    (extra / "other_data" / "summary.json").write_text(json.dumps(summary))

    view = window.runs_view
    window.show_tab(view)
    view.add_folder(extra)
    records = {r.folder_name: r for r in view.records}
    assert records["damaged"].status == "damaged" and "summary.json is damaged" in records["damaged"].problem
    assert records["half_written"].status == "damaged"
    assert "not written completely" in records["half_written"].problem
    assert "newer than this" in records["newer"].problem and records["newer"].status == "completed"
    assert records[cli_run.name].status == "completed"  # the good runs are untouched
    assert str(extra) in view.folders_label.text()

    # one run without metrics yet, one on other classes: both explained, the rest drawn
    _select(view, qtbot, cli_run, extra / "no_metrics", extra / "other_data")
    comparison = view.comparison
    text = comparison.notice.text()
    assert "no_metrics has no metrics yet (cancelled)" in text
    assert "other_data is not comparable" in text and "different class set" in text
    assert len(comparison.curves["acc"]) == 2
    headers, _rows = comparison.table_rows()
    assert "not comparable" in headers[2] and "not comparable" not in headers[1]
    save_screenshot(window, "runs_not_comparable")

    # the damaged run, selected, says what is wrong
    _select(view, qtbot, extra / "damaged")
    assert "summary.json is damaged" in view.comparison.notice.text()
    assert not view.evaluation_button.isEnabled()

    # a folder deleted while shown: a clear message, the list read again, nothing else lost
    _select(view, qtbot, extra / "vanishing")
    shutil.rmtree(extra / "vanishing")
    view.ask_text = lambda *_: "new name"
    view.rename_button.click()
    assert "vanishing is no longer at" in view.notice.text()
    assert "vanishing" not in [r.folder_name for r in view.records]
    assert len(view.records) >= 6
    save_screenshot(window, "runs_bad_folders")
