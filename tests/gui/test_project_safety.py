"""No action loses a user's work: New, Open and closing the window ask Save / Discard /
Cancel for a modified project, and the autosave of a crashed session is offered back.

The questions are the real window-modal message boxes; the tests press their buttons.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from window_helpers import configure_fast_run, make_tiny_dataset, save_screenshot

REPO = Path(__file__).resolve().parents[2]


def edit_epochs(window, epochs: int) -> None:
    """A real edit in the Train panel: the project is modified."""
    window.training_panel.epochs_spin.setValue(epochs)
    assert window.isWindowModified()


def answer(qtbot, window, button: QMessageBox.StandardButton | str) -> QMessageBox:
    """Press ``button`` (a standard button, or the text of a custom one) in the question
    the window shows now."""
    qtbot.waitUntil(
        lambda: window.project.question is not None and window.project.question.isVisible(), timeout=5_000
    )
    box = window.project.question
    if isinstance(button, str):
        target = next(b for b in box.buttons() if b.text() == button)
    else:
        target = box.button(button)
    assert target is not None, f"no {button} button in {box.text()!r}"
    target.click()
    qtbot.waitUntil(lambda: window.project.question is None, timeout=5_000)
    return box


def test_new_project_asks_and_cancel_keeps_everything(qtbot, window, tiny_dataset):
    configure_fast_run(window, qtbot, tiny_dataset)
    edit_epochs(window, 7)
    window.new_action.trigger()
    box = window.project.question
    assert box is not None and box.isVisible()
    assert "not saved" in box.text() and "start a new project" in box.text()
    save_screenshot(window, "issue11-save-question")
    save_screenshot(box, "issue11-save-question-box")

    answer(qtbot, window, QMessageBox.StandardButton.Cancel)
    assert window.isWindowModified()
    assert window.training_panel.epochs() == 7
    assert window.current_config().data.path == str(tiny_dataset)
    assert "Cancelled" in window.state_label.text()

    window.new_action.trigger()
    answer(qtbot, window, QMessageBox.StandardButton.Discard)
    assert not window.isWindowModified()
    assert window.training_panel.epochs() == 10  # the defaults again
    assert window.current_config().data.path == ""


def test_save_writes_the_project_then_proceeds(qtbot, window, tiny_dataset, tmp_path):
    configure_fast_run(window, qtbot, tiny_dataset)
    project = tmp_path / "project.toml"
    assert window.project.save_to(project)
    edit_epochs(window, 5)
    window.new_action.trigger()
    answer(qtbot, window, QMessageBox.StandardButton.Save)
    from desktop_tl.core.config import RunConfig

    assert RunConfig.load(project).train.epochs == 5  # written before the new project
    assert window.project.path is None and window.training_panel.epochs() == 10


def test_a_cancelled_save_as_cancels_the_action(qtbot, window, tiny_dataset):
    configure_fast_run(window, qtbot, tiny_dataset)  # untitled: Save means Save As
    edit_epochs(window, 4)
    seen = []

    def cancel_the_file_dialog() -> None:
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, QFileDialog):
            seen.append(dialog.windowTitle())
            dialog.reject()
        else:
            QTimer.singleShot(50, cancel_the_file_dialog)

    window.new_action.trigger()
    QTimer.singleShot(50, cancel_the_file_dialog)
    answer(qtbot, window, QMessageBox.StandardButton.Save)
    assert seen == ["Save project"]
    assert window.isWindowModified() and window.training_panel.epochs() == 4
    assert window.current_config().data.path == str(tiny_dataset)


def test_open_asks_before_replacing_a_modified_project(qtbot, window, tiny_dataset, tmp_path):
    from desktop_tl.core.config import RunConfig

    other = RunConfig()
    other.train.epochs = 3
    other_path = tmp_path / "other.toml"
    other.save(other_path)
    configure_fast_run(window, qtbot, tiny_dataset)
    edit_epochs(window, 8)
    assert not window.project.open(other_path)  # waits for the answer
    assert window.training_panel.epochs() == 8
    answer(qtbot, window, QMessageBox.StandardButton.Discard)
    assert window.training_panel.epochs() == 3
    assert window.project.path == other_path.resolve()
    assert not window.isWindowModified()

    bad = tmp_path / "broken.toml"
    bad.write_text("[train\n")
    edit_epochs(window, 9)
    assert not window.project.open(bad)  # an unreadable file is explained, nothing asked
    assert window.project.question is None and window.training_panel.epochs() == 9


def test_closing_asks_and_cancel_keeps_the_window(qtbot, window, tiny_dataset):
    configure_fast_run(window, qtbot, tiny_dataset)
    edit_epochs(window, 6)
    window.close()
    answer(qtbot, window, QMessageBox.StandardButton.Cancel)
    assert window.isVisible() and window.isWindowModified()

    window.close()
    answer(qtbot, window, QMessageBox.StandardButton.Discard)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5_000)


def test_the_autosave_follows_unsaved_changes(qtbot, window, tiny_dataset, tmp_path):
    configure_fast_run(window, qtbot, tiny_dataset)
    autosave = window.project.autosave_path
    assert autosave is not None and autosave.parent == Path(window.settings.file_name).parent / "autosave"
    window.project.autosave_timer.setInterval(50)  # the real timer, 30 s in the app
    window.project.autosave_timer.start()
    edit_epochs(window, 12)
    qtbot.waitUntil(autosave.is_file, timeout=5_000)
    from desktop_tl.core.config import RunConfig

    assert RunConfig.load(autosave).train.epochs == 12
    assert window.project.save_to(tmp_path / "saved.toml")
    assert not autosave.exists()  # a save removes it

    edit_epochs(window, 13)
    qtbot.waitUntil(autosave.is_file, timeout=5_000)
    window.close()
    answer(qtbot, window, QMessageBox.StandardButton.Discard)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5_000)
    assert not autosave.exists()  # so does a clean exit


CRASHING_SESSION = """
import os, sys
from desktop_tl.gui.app import load_backend, make_application
from desktop_tl.gui.main_window import MainWindow
from desktop_tl.gui.settings import AppSettings
app = make_application()
window = MainWindow(AppSettings(sys.argv[1]))
window.show()
backend = load_backend([])
window.set_backend(backend["host"], backend["devices"])
assert window.project.open(sys.argv[2])
window.training_panel.epochs_spin.setValue(13)
assert window.isWindowModified()
assert window.project.autosave_now()
os._exit(3)  # a crash: no close, no clean-up
"""


def crash_with_unsaved_changes(settings, project: Path, tmp_path: Path) -> Path:
    env = dict(
        os.environ, QT_QPA_PLATFORM="offscreen", DTL_RUNS_DIR=str(tmp_path / "runs"), OMP_NUM_THREADS="1"
    )
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_SESSION, settings.file_name, str(project)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 3, done.stderr
    autosave = Path(settings.file_name).parent / "autosave" / "unsaved-project.toml"
    assert autosave.is_file()
    return autosave


def start_window(qtbot, settings, gui_backend):
    from desktop_tl.gui.main_window import MainWindow

    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.resize(1600, 980)
    window.show()
    qtbot.waitExposed(window)
    window.set_backend(gui_backend["host"], gui_backend["devices"])
    return window


def write_project(tmp_path: Path) -> Path:
    from desktop_tl.core.config import RunConfig

    config = RunConfig()
    config.data.path = str(make_tiny_dataset(tmp_path / "data"))
    config.model.backbone = "torchvision:mobilenet_v3_small"
    config.model.weights = "none"
    config.train.epochs = 2
    path = tmp_path / "project.toml"
    config.save(path)
    return path


def test_after_a_crash_the_unsaved_work_is_offered_back(qtbot, settings, gui_backend, runs_dir, tmp_path):
    project = write_project(tmp_path)
    autosave = crash_with_unsaved_changes(settings, project, tmp_path)
    window = start_window(qtbot, settings, gui_backend)
    box = window.project.question
    assert box is not None and box.isVisible()
    assert "did not close normally" in box.text() and "project.toml" in box.text()
    save_screenshot(window, "issue11-restore-question")
    save_screenshot(box, "issue11-restore-question-box")
    answer(qtbot, window, "Restore")
    assert window.training_panel.epochs() == 13
    assert window.project.path == project.resolve()
    assert window.isWindowModified() and "project.toml" in window.windowTitle()
    assert autosave.is_file()  # kept until the work is saved or discarded
    qtbot.waitUntil(window.is_ready, timeout=60_000)
    save_screenshot(window, "issue11-restored")
    window.close()
    answer(qtbot, window, QMessageBox.StandardButton.Discard)
    assert not autosave.exists()


def test_a_discarded_autosave_is_deleted(qtbot, settings, gui_backend, runs_dir, tmp_path):
    project = write_project(tmp_path)
    autosave = crash_with_unsaved_changes(settings, project, tmp_path)
    window = start_window(qtbot, settings, gui_backend)
    answer(qtbot, window, "Discard")
    assert not autosave.exists()
    assert window.training_panel.epochs() == 10 and not window.isWindowModified()


def test_closing_during_a_run_asks_to_save_then_to_stop(qtbot, window, tiny_dataset):
    configure_fast_run(window, qtbot, tiny_dataset, epochs=200)
    asked_to_stop = []
    window.confirm_close = lambda: asked_to_stop.append(True) or True
    edit_epochs(window, 150)  # not saved before the run starts
    assert window.start_training()
    qtbot.waitUntil(lambda: window.plots.batches_received >= 1, timeout=120_000)
    assert window.isWindowModified()
    window.close()
    answer(qtbot, window, QMessageBox.StandardButton.Cancel)
    assert asked_to_stop == [] and window.run_state == "running"  # nothing touched

    with qtbot.waitSignal(window.training.run_finished, timeout=120_000) as blocker:
        window.close()
        answer(qtbot, window, QMessageBox.StandardButton.Discard)
    assert asked_to_stop == [True] and blocker.args[0].status == "cancelled"
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
