"""File > Export model... in the window, driven with pytest-qt on a real trained run."""

from __future__ import annotations

import json
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything loads Qt

import pytest  # noqa: E402

from desktop_tl.core.training import Trainer  # noqa: E402

from helpers_training import lite0_config, sample_subset  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("window_export")
    photos = sample_subset(root / "photos", n_train=4, n_val=2)
    finished = Trainer(lite0_config(photos, root / "run", epochs=1, device="cpu")).run()
    assert finished.status == "completed", finished.reason
    return root / "run"


@pytest.fixture
def window(qtbot, tmp_path):
    from desktop_tl.gui.main_window import MainWindow
    from desktop_tl.gui.settings import AppSettings

    win = MainWindow(AppSettings(tmp_path / "settings.ini"))
    qtbot.addWidget(win)
    yield win
    from desktop_tl.gui.background import cancel_and_wait_all

    cancel_and_wait_all()


def test_file_menu_exports_the_latest_run_off_the_gui_thread(window, run_dir, qtbot, tmp_path):
    window.run_dir = str(run_dir)
    file_menu = window.menuBar().actions()[0].menu()
    assert window.export_action in file_menu.actions()
    window.export_action.trigger()
    dialog = window.export_dialog
    assert dialog.isVisible() and dialog.run_edit.text() == str(run_dir)
    assert dialog.out_edit.text().endswith("run-onnx")  # beside the run, never inside it

    dialog.format_combo.setCurrentIndex(dialog.format_combo.findData("safetensors"))
    assert not dialog.int8_check.isEnabled()
    dialog.out_edit.setText(str(tmp_path / "bundle"))
    with qtbot.waitSignal(dialog.exported, timeout=180_000) as blocker:
        dialog.export_button.click()
        assert not dialog.export_button.isEnabled()  # the GUI thread is free while it works
    result = blocker.args[0]
    assert result.out == tmp_path / "bundle" and (tmp_path / "bundle" / "model.safetensors").exists()
    assert json.loads((tmp_path / "bundle" / "labels.json").read_text()) == ["brick", "grass"]
    assert "top-1 agreement 100.0%" in dialog.report.toPlainText()
    assert dialog.export_button.isEnabled()

    # the same folder again, without "replace": a dialog message, and the bundle stays
    with qtbot.waitSignal(dialog.export_failed, timeout=60_000) as blocker:
        dialog.export_button.click()
    assert "--force" in blocker.args[0]
    box = dialog.findChild(
        __import__("PySide6.QtWidgets", fromlist=["QMessageBox"]).QMessageBox, "export_error"
    )
    assert box is not None and box.isVisible() and "already holds an export bundle" in box.text()
    box.close()
    assert (tmp_path / "bundle" / "model.safetensors").exists()


def test_a_folder_that_is_not_a_run_gets_a_message(qtbot, tmp_path):
    from desktop_tl.gui.export_dialog import ExportDialog

    dialog = ExportDialog(tmp_path)
    qtbot.addWidget(dialog)
    dialog.show()
    with qtbot.waitSignal(dialog.export_failed, timeout=60_000) as blocker:
        dialog.export_button.click()
    assert "not a desktop-tl run folder" in blocker.args[0]
    assert sorted(os.listdir(tmp_path)) == []


def test_a_run_opened_from_disk_is_exported_from_the_runs_view(window, run_dir, qtbot, tmp_path):
    view = window.runs_view
    view.add_folder(run_dir.parent)  # a folder outside the runs folder, as "Add folder…" does
    view.refresh()
    view.select_runs([run_dir])
    assert view.export_button.isEnabled()
    view.export_button.click()
    dialog = window.export_dialog
    assert dialog.isVisible() and dialog.run_edit.text() == str(run_dir)
    dialog.out_edit.setText(str(tmp_path / "from-runs"))
    with qtbot.waitSignal(dialog.exported, timeout=180_000) as blocker:
        dialog.export_button.click()
    assert (blocker.args[0].out / "model.onnx").exists()
    view.select_runs([])
    assert not view.export_button.isEnabled()  # nothing selected, nothing to export
