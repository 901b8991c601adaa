"""Preferences and Help through the real window: a chosen runs and cache folder is where
the next run from the window writes, the cache size shown is the files' size and Clear
deletes them once confirmed, an unwritable folder is refused with the reason, the theme
switches the palette; the shortcut list is the window's own, About names the versions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import QAbstractButton, QApplication, QDialogButtonBox, QMessageBox

from window_helpers import configure_fast_run, save_screenshot

RUN_TIMEOUT_MS = 180_000
FOLDER_VARIABLES = ("DTL_RUNS_DIR", "DTL_CACHE_DIR", "DTL_WEIGHTS_DIR")


@pytest.fixture
def launch_folders(tmp_path, monkeypatch, runs_dir):
    """The folders the app was "launched" with, set before the window exists (so that the
    environment is put back after the test whatever Preferences set)."""
    monkeypatch.setenv("DTL_CACHE_DIR", str(tmp_path / "launch-cache"))
    monkeypatch.setenv("DTL_WEIGHTS_DIR", str(tmp_path / "launch-weights"))
    return {
        "DTL_RUNS_DIR": runs_dir,
        "DTL_CACHE_DIR": tmp_path / "launch-cache",
        "DTL_WEIGHTS_DIR": tmp_path / "launch-weights",
    }


@pytest.fixture
def system_theme():
    """Whatever a test chose, the next test starts with the platform's palette."""
    yield
    from desktop_tl.gui.theme import apply_theme

    apply_theme("system")


def open_preferences(qtbot, window):
    window.preferences_action.trigger()
    dialog = window.preferences_dialog
    qtbot.waitExposed(dialog)
    return dialog


def press(qtbot, dialog, which):
    qtbot.mouseClick(dialog.buttons.button(which), Qt.MouseButton.LeftButton)


def answer_next_question(button_text: str) -> None:
    """Click ``button_text`` in the question box that is about to open."""

    def click() -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox), f"expected a question, found {box!r}"
        for button in box.buttons():
            if button.text().replace("&", "") == button_text:
                button.click()
                return
        raise AssertionError(f"no {button_text!r} button in {[b.text() for b in box.buttons()]}")

    QTimer.singleShot(200, click)


def feature_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def test_a_chosen_runs_and_cache_folder_take_the_next_run(
    qtbot, launch_folders, window, tiny_dataset, tmp_path
):
    chosen_runs = tmp_path / "chosen" / "runs"
    chosen_cache = tmp_path / "chosen" / "cache"
    dialog = open_preferences(qtbot, window)
    assert dialog.folder_rows["runs"].edit.placeholderText().startswith(str(launch_folders["DTL_RUNS_DIR"]))
    dialog.folder_rows["runs"].edit.setText(str(chosen_runs))
    dialog.folder_rows["cache"].edit.setText(str(chosen_cache))
    press(qtbot, dialog, QDialogButtonBox.StandardButton.Ok)
    qtbot.waitUntil(lambda: not dialog.isVisible())
    assert window.settings.chosen_folder("runs") == str(chosen_runs)

    configure_fast_run(window, qtbot, tiny_dataset)
    with qtbot.waitSignal(window.training.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.start_action.trigger()
    qtbot.waitUntil(lambda: window.training.session is None, timeout=10_000)
    assert blocker.args[0].status == "completed", blocker.args[0].reason

    run_dir = Path(window.run_dir)
    assert run_dir.parent == chosen_runs and (run_dir / "run.toml").is_file()
    assert not launch_folders["DTL_RUNS_DIR"].exists()  # nothing went to the launch folder
    entries = feature_files(chosen_cache / "features")
    assert any(p.suffix == ".dtlf" for p in entries), "the run kept no features in the chosen cache"
    assert not (launch_folders["DTL_CACHE_DIR"] / "features").exists()

    from desktop_tl.gui.preferences_dialog import describe_size

    dialog = open_preferences(qtbot, window)
    total = sum(p.stat().st_size for p in entries)
    assert dialog.refresh_cache_size() == (len(entries), total)
    assert dialog.cache_size_label.text().startswith(f"{describe_size(total)} in {len(entries)} file")
    assert str(chosen_cache / "features") in dialog.cache_size_label.text()
    save_screenshot(dialog, "prefs-light")

    answer_next_question("Cancel")
    qtbot.mouseClick(dialog.clear_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: getattr(dialog, "clear_question", None) is None, timeout=5_000)
    assert feature_files(chosen_cache / "features") == entries  # not without a yes

    answer_next_question("Delete")
    qtbot.mouseClick(dialog.clear_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not feature_files(chosen_cache / "features"), timeout=5_000)
    assert dialog.cache_size_label.text().startswith("Empty")
    assert "Freed " + describe_size(total) in dialog.cache_notice.text()
    assert run_dir.is_dir() and (run_dir / "run.toml").is_file()  # only the cache went
    press(qtbot, dialog, QDialogButtonBox.StandardButton.Cancel)

    # Back to the default: the launch folder is where runs go again.
    dialog = open_preferences(qtbot, window)
    qtbot.mouseClick(dialog.folder_rows["runs"].default_button, Qt.MouseButton.LeftButton)
    assert dialog.folder_rows["runs"].text() == ""
    press(qtbot, dialog, QDialogButtonBox.StandardButton.Ok)
    from desktop_tl.core.run_folder import runs_dir

    assert runs_dir() == launch_folders["DTL_RUNS_DIR"]


def test_an_unwritable_folder_is_refused_with_the_reason(qtbot, launch_folders, window, tmp_path):
    blocker_file = tmp_path / "a-file"
    blocker_file.write_text("not a folder")
    impossible = blocker_file / "weights"  # a folder cannot be made inside a file
    dialog = open_preferences(qtbot, window)
    row = dialog.folder_rows["weights"]
    row.edit.setText(str(impossible))
    press(qtbot, dialog, QDialogButtonBox.StandardButton.Ok)

    assert dialog.isVisible()  # refused: the dialog stays
    assert row.problem.isVisible()
    message = row.problem.text()
    assert str(impossible) in message and "cannot be written" in message
    assert "Not a directory" in message or "directory name is invalid" in message
    assert window.settings.chosen_folder("weights") == ""
    import os

    assert os.environ["DTL_WEIGHTS_DIR"] == str(launch_folders["DTL_WEIGHTS_DIR"])

    row.edit.setText("relative/folder")
    press(qtbot, dialog, QDialogButtonBox.StandardButton.Ok)
    assert dialog.isVisible() and "not a full path" in row.problem.text()
    press(qtbot, dialog, QDialogButtonBox.StandardButton.Cancel)


def test_the_theme_switches_the_palette_at_once(qtbot, launch_folders, window, system_theme):
    from desktop_tl.gui.icons import is_dark

    app = QApplication.instance()
    assert not is_dark(app.palette())
    dialog = open_preferences(qtbot, window)
    dialog.theme_combo.setCurrentIndex(dialog.theme_combo.findData("dark"))
    qtbot.waitUntil(lambda: is_dark(window.palette()))  # applied before OK
    assert is_dark(app.palette()) and is_dark(dialog.palette())
    assert window.plots.canvas.backgroundBrush().color() == app.palette().color(QPalette.ColorRole.Base)
    save_screenshot(dialog, "prefs-dark")

    press(qtbot, dialog, QDialogButtonBox.StandardButton.Cancel)  # goes back
    qtbot.waitUntil(lambda: not is_dark(window.palette()))
    assert window.settings.theme == "system"

    dialog = open_preferences(qtbot, window)
    dialog.theme_combo.setCurrentIndex(dialog.theme_combo.findData("dark"))
    dialog.budget_spin.setValue(384)
    press(qtbot, dialog, QDialogButtonBox.StandardButton.Ok)
    assert window.settings.theme == "dark" and is_dark(app.palette())
    # The budget is where File > New starts.
    window.new_action.trigger()
    qtbot.waitUntil(lambda: window.current_config().train.cache_budget_mb == 384, timeout=5_000)

    dialog = open_preferences(qtbot, window)
    dialog.theme_combo.setCurrentIndex(dialog.theme_combo.findData("light"))
    press(qtbot, dialog, QDialogButtonBox.StandardButton.Ok)
    assert window.settings.theme == "light" and not is_dark(app.palette())


def test_the_shortcut_list_is_the_windows_own(qtbot, launch_folders, window):
    window.help_shortcuts_action.trigger()
    dialog = window.help_dialog
    qtbot.waitExposed(dialog)
    listed = {entry.portable_keys: entry for entry in dialog.shortcuts}
    assert "Ctrl+R" in listed and listed["Ctrl+R"].what == "Start training"
    assert "Ctrl+," in listed and listed["Ctrl+,"].what == "Preferences"
    assert listed["Del"].what == "Remove the selected images (Prediction tab)"
    actions = window.findChildren(QAction)
    shortcuts = window.findChildren(QShortcut)
    buttons = window.findChildren(QAbstractButton)
    for entry in dialog.shortcuts:
        assert "no description" not in entry.what
        if isinstance(entry.owner, QAction):
            assert entry.owner in actions and entry.keys in entry.owner.shortcuts(), entry.what
        elif isinstance(entry.owner, QShortcut):
            assert entry.owner in shortcuts and entry.owner.key() == entry.keys, entry.what
        else:
            assert entry.owner in buttons and entry.owner.shortcut() == entry.keys, entry.what
    table = dialog.shortcut_table
    shown = [(table.item(r, 0).text(), table.item(r, 1).text()) for r in range(table.rowCount())]
    assert len(shown) == len(dialog.shortcuts)
    assert (
        "Start training",
        QKeySequence("Ctrl+R").toString(QKeySequence.SequenceFormat.NativeText),
    ) in shown
    save_screenshot(dialog, "help-shortcuts")

    # Read from the window, not a copy: an action added later shows up at once.
    extra = QAction("Something new", window)
    extra.setShortcut(QKeySequence("Ctrl+Alt+J"))
    window.addAction(extra)
    window.help_shortcuts_action.trigger()
    assert "Ctrl+Alt+J" in {entry.portable_keys for entry in dialog.shortcuts}


def test_how_it_works_is_bundled_and_about_names_the_versions(qtbot, launch_folders, window):
    import torch
    import torchvision

    window.help_how_action.trigger()
    dialog = window.help_dialog
    qtbot.waitExposed(dialog)
    assert dialog.tabs.currentWidget() is dialog.how_browser
    source = dialog.how_browser.source()
    assert source.isLocalFile() and Path(source.toLocalFile()).is_file()
    text = dialog.how_browser.toPlainText()
    steps = ["Data", "Model", "Freeze", "Head", "Train", "Evaluate", "Predict", "Export"]
    positions = [text.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), positions
    save_screenshot(dialog, "help-how-it-works")

    window.about_action.trigger()
    assert dialog.tabs.currentWidget() is dialog.about_browser
    about = dialog.about_browser.toPlainText()
    assert torch.__version__ in about and torchvision.__version__ in about
    assert sys.version.split()[0] in about
    import PySide6

    assert PySide6.__version__ in about
    loaded = [r for r in window.host.records if r.status == "loaded"]
    assert loaded
    for record in loaded:
        assert record.name in about and record.version in about, record.name
    save_screenshot(dialog, "help-about")
