"""File > Run elsewhere…: the dialog fills from the window's run, offers the last run's
freeze changes as the schedule, and writes the launch files."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from desktop_tl.core import events as ev
from desktop_tl.core.config import RunConfig
from desktop_tl.errors import UserError
from desktop_tl.gui.run_elsewhere_dialog import (
    RunElsewhereDialog,
    parse_changes,
    run_freeze_changes,
    run_started_freeze,
)

from helpers_training import lite0_config, sample_subset
from window_helpers import save_screenshot


@pytest.fixture(scope="module")
def finished_with_a_freeze_change(tmp_path_factory):
    """A real run whose user unfroze backbone.top before its second epoch."""
    from desktop_tl.core.training import Trainer

    root = tmp_path_factory.mktemp("run-with-change")
    config = lite0_config(sample_subset(root / "photos", n_train=2, n_val=1), root / "run", epochs=2)
    trainer = Trainer(config)

    def unfreeze(event):
        if isinstance(event, ev.EpochEnded) and event.epoch == 0:
            trainer.send(ev.SetFreeze({"backbone.top": True}))

    trainer.subscribe(unfreeze)
    finished = trainer.run()
    assert finished.status == "completed", finished.reason
    return config, finished


def rows(dialog: RunElsewhereDialog) -> list[tuple[str, str]]:
    table = dialog.table
    return [(table.item(r, 0).text(), table.item(r, 1).text()) for r in range(table.rowCount())]


def error_box(dialog) -> QMessageBox | None:
    return dialog.findChild(QMessageBox, "run_elsewhere_error")


def test_the_dialog_fills_from_the_config_and_writes_the_files(qtbot, tmp_path):
    config = lite0_config(sample_subset(tmp_path / "photos", n_train=1, n_val=1), tmp_path / "out", epochs=5)
    config.freeze.schedule = [{"epoch": 3, "changes": {"backbone.blocks": True, "backbone.blocks.0": False}}]
    dialog = RunElsewhereDialog(config, [])
    qtbot.addWidget(dialog)
    assert rows(dialog) == [("3", "backbone.blocks trainable, backbone.blocks.0 frozen")]
    assert not dialog.repeat_check.isEnabled()  # no run made changes to repeat
    dest = tmp_path / "server"
    dialog.folder_edit.setText(str(dest))
    assert dialog.data_edit.placeholderText().startswith("../photos ")
    dialog.processes_spin.setValue(4)
    dialog.nodes_spin.setValue(2)
    dialog.add_row(5, {"backbone": True})

    dialog.write_button.click()
    assert error_box(dialog) is None
    written = RunConfig.load(dest / "run.toml")
    assert written.freeze.schedule == [
        {"epoch": 3, "changes": {"backbone.blocks": True, "backbone.blocks.0": False}},
        {"epoch": 5, "changes": {"backbone": True}},
    ]
    assert Path(written.data.path) == (tmp_path / "photos").resolve()
    assert 'NPROC="${NPROC:-4}"' in (dest / "launch_torchrun.sh").read_text()
    assert "#SBATCH --nodes=2" in (dest / "slurm_job.sbatch").read_text()
    report = dialog.report.toPlainText()
    assert not dialog.report.isHidden()
    assert str(dest / "launch_torchrun.sh") in report and "epoch 5: backbone trainable" in report

    # Writing again without "replace" is refused, and says so.
    dialog.write_button.click()
    assert "already has run.toml" in error_box(dialog).text()


def test_the_last_runs_freeze_changes_are_offered_as_the_schedule(
    qtbot, tmp_path, finished_with_a_freeze_change
):
    config, finished = finished_with_a_freeze_change
    changes = run_freeze_changes(finished)
    assert [(c["epoch"], c["changes"]) for c in changes] == [(2, {"backbone.top": True})]
    # The window's settings hold the run's last freeze state (the layer ticked while it
    # trained); repeating its changes must start from what the run started with.
    window_config = copy.deepcopy(config)
    window_config.freeze.overrides = {"backbone.top": True}
    started = run_started_freeze(finished)
    assert started is not None and started.overrides == {}
    dialog = RunElsewhereDialog(window_config, changes, started_freeze=started)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.repeat_check.isEnabled() and dialog.repeat_check.isChecked()
    assert rows(dialog) == [("2", "backbone.top trainable")]
    dialog.repeat_check.setChecked(False)
    assert rows(dialog) == []
    dialog.repeat_check.setChecked(True)
    dialog.folder_edit.setText(str(tmp_path / "elsewhere"))
    dialog.kind_combo.setCurrentIndex(1)  # CPU processes
    assert dialog.write_files()
    written = RunConfig.load(tmp_path / "elsewhere" / "run.toml")
    assert written.freeze.schedule == [{"epoch": 2, "changes": {"backbone.top": True}}]
    assert written.freeze.overrides == {} and written.freeze.preset == config.freeze.preset
    assert written.train.device == "cpu"
    save_screenshot(dialog, "run-elsewhere")


def test_bad_schedule_rows_are_refused_naming_the_row(qtbot, tmp_path):
    config = lite0_config(tmp_path / "photos", tmp_path / "out", epochs=3)
    dialog = RunElsewhereDialog(config)
    qtbot.addWidget(dialog)
    dialog.folder_edit.setText(str(tmp_path / "dest"))
    dialog.add_row(2, {"backbone.top": True})
    dialog.table.item(0, 1).setText("backbone.top maybe")
    assert not dialog.write_files()
    assert (
        "schedule row 1: 'backbone.top maybe' is not a layer name followed by trainable"
        in error_box(dialog).text()
    )
    dialog.table.item(0, 1).setText("backbone.top = trainable")
    dialog.table.item(0, 0).setText("9")
    assert not dialog.write_files()
    assert "epoch = 9 is outside the run's epochs 1 to 3" in dialog.status.text()
    assert not (tmp_path / "dest").exists()
    with pytest.raises(UserError, match="schedule row 4 has no changes"):
        parse_changes(" , ", 4)


def test_the_file_menu_opens_it_for_the_window_s_own_run(qtbot, tmp_path, window):
    from window_helpers import configure_fast_run, make_tiny_dataset

    data = make_tiny_dataset(tmp_path / "data")
    configure_fast_run(window, qtbot, data, epochs=3)
    window.training_panel.epochs_spin.setValue(4)  # an edit not yet in any saved file
    assert window.run_elsewhere_action in window.menuBar().actions()[0].menu().actions()
    window.run_elsewhere_action.trigger()
    dialog = window.run_elsewhere_dialog
    assert dialog.isVisible()
    assert dialog.config.data.path == str(data)
    assert dialog.config.train.epochs == 4
    assert not dialog.repeat_check.isEnabled()  # no run yet, so no changes to repeat
    dialog.close()
