"""File > Run elsewhere…: the window's face of :mod:`desktop_tl.core.launch_files`.

Writes the window's run as a run file, a torchrun launch script and a SLURM template
into a folder the user picks, to train it on a server or a cluster. A distributed run
takes no live freeze changes, so the dialog offers the last run's changes as the run
file's freeze schedule, in a table the user can edit. Writing a few small files takes no
time, so it happens on the GUI thread; nothing here trains.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.config import FreezeConfig, RunConfig
from ..core.launch_files import (
    SLURM_SCRIPT,
    TORCHRUN_SCRIPT,
    LaunchPlan,
    schedule_from_freeze_changes,
    write_launch_files,
)
from ..errors import UserError

TRAINABLE_WORDS = {"trainable": True, "true": True, "on": True, "frozen": False, "false": False, "off": False}


def changes_text(changes: dict[str, bool]) -> str:
    """``{"backbone.top": True}`` as the table shows it: ``backbone.top trainable``."""
    return ", ".join(f"{name} {'trainable' if on else 'frozen'}" for name, on in changes.items())


def parse_changes(text: str, row: int) -> dict[str, bool]:
    """The inverse of :func:`changes_text`; raises :class:`UserError` naming the row."""
    changes: dict[str, bool] = {}
    for part in (p.strip() for p in text.replace(";", ",").split(",")):
        if not part:
            continue
        name, _, word = part.replace("=", " ").rpartition(" ")
        name = name.strip()
        if not name or word.lower() not in TRAINABLE_WORDS:
            raise UserError(
                f"schedule row {row}: {part!r} is not a layer name followed by trainable or "
                "frozen, e.g. backbone.blocks.6 trainable"
            )
        changes[name] = TRAINABLE_WORDS[word.lower()]
    if not changes:
        raise UserError(
            f"schedule row {row} has no changes; write e.g. backbone.blocks.6 trainable, or remove it"
        )
    return changes


def run_freeze_changes(last_result: Any) -> list[dict[str, Any]]:
    """The freeze changes a finished run made (its summary's ``freeze_changes``); [] when
    there is no run, or it made none."""
    summary = getattr(last_result, "summary", None) or {}
    return list(summary.get("freeze_changes") or [])


class RunElsewhereDialog(QDialog):
    """Choose a folder, processes and nodes, the data path there and a freeze schedule;
    write the launch files and show what was written."""

    def __init__(
        self,
        config: RunConfig,
        freeze_changes: list[dict[str, Any]] | None = None,
        parent: QWidget | None = None,
        started_freeze: FreezeConfig | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Run elsewhere")
        self.setMinimumWidth(600)  # room for a folder path and the changes column
        self.config = copy.deepcopy(config)
        self.offered = schedule_from_freeze_changes(freeze_changes or [])
        # Repeating the last run's changes starts from what that run started with: the
        # window's own freeze settings already hold the changes made while it trained.
        self.started_freeze = copy.deepcopy(started_freeze)
        self.written = None  # the WrittenLaunchFiles of the last write

        intro = QLabel(
            "Writes this run as a run file, a torchrun launch script (one machine, several "
            "processes or GPUs) and a SLURM batch template, to train it on a server or a cluster."
        )
        intro.setWordWrap(True)
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("the folder to write into")
        self.folder_edit.textChanged.connect(self._show_data_default)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._choose_folder)
        self.processes_spin = QSpinBox()
        self.processes_spin.setRange(1, 1024)
        self.processes_spin.setValue(2)
        self.nodes_spin = QSpinBox()
        self.nodes_spin.setRange(1, 100_000)
        self.kind_combo = QComboBox()
        self.kind_combo.addItem("one process per GPU (CUDA)", True)
        self.kind_combo.addItem("processes on the CPU", False)
        self.data_edit = QLineEdit()
        self.time_edit = QLineEdit("04:00:00")
        self.restarts_spin = QSpinBox()
        self.restarts_spin.setRange(0, 1000)
        self.restarts_spin.setValue(3)
        self.replace_check = QCheckBox("Replace launch files already in that folder")

        form = QFormLayout()
        form.addRow("Write into", _row(self.folder_edit, browse))
        form.addRow("Processes per machine", self.processes_spin)
        form.addRow("Machines (SLURM nodes)", self.nodes_spin)
        form.addRow("Processes", self.kind_combo)
        form.addRow("Data folder there", self.data_edit)
        form.addRow("SLURM time limit", self.time_edit)
        form.addRow("Restarts of a dead worker", self.restarts_spin)
        form.addRow("", self.replace_check)

        schedule_box = QGroupBox("Freeze schedule (live freeze changes do not reach a distributed run)")
        self.repeat_check = QCheckBox(
            "Repeat this run's freeze changes, each from the start of the epoch it was made in"
        )
        self.repeat_check.setEnabled(bool(self.offered))
        if not self.offered:
            self.repeat_check.setToolTip("the last run made no freeze changes")
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Epoch", "Changes at its start"])
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        add = QPushButton("Add row")
        add.clicked.connect(lambda: self.add_row(1, {}))
        remove = QPushButton("Remove row")
        remove.clicked.connect(self._remove_selected_rows)
        schedule_layout = QVBoxLayout(schedule_box)
        schedule_layout.addWidget(self.repeat_check)
        schedule_layout.addWidget(self.table)
        schedule_layout.addWidget(_row(add, remove))
        hint = QLabel(
            "Changes: layer names as the layer tree shows them, each followed by trainable or frozen."
        )
        hint.setWordWrap(True)
        schedule_layout.addWidget(hint)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.report = QPlainTextEdit()
        self.report.setReadOnly(True)
        self.report.setVisible(False)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.write_button = self.buttons.addButton("Write files", QDialogButtonBox.ButtonRole.ActionRole)
        self.write_button.clicked.connect(self.write_files)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(schedule_box)
        layout.addWidget(self.status)
        layout.addWidget(self.report)
        layout.addWidget(self.buttons)

        self.repeat_check.toggled.connect(self._fill_schedule)
        self.repeat_check.setChecked(bool(self.offered))
        self._fill_schedule()
        self._show_data_default()

    # ----------------------------------------------------------------- the schedule

    def add_row(self, epoch: int, changes: dict[str, bool]) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        self.table.setItem(row, 0, QTableWidgetItem(str(epoch)))
        self.table.setItem(row, 1, QTableWidgetItem(changes_text(changes)))

    def _fill_schedule(self) -> None:
        """The run file's own schedule, then (when ticked) the last run's changes."""
        self.table.setRowCount(0)
        entries = list(self.config.freeze.schedule)
        if self.repeat_check.isChecked():
            entries += self.offered
        for entry in entries:
            self.add_row(entry["epoch"], entry["changes"])

    def _remove_selected_rows(self) -> None:
        for row in sorted({index.row() for index in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(row)

    def schedule(self) -> list[dict[str, Any]]:
        """The table as a freeze schedule; raises :class:`UserError` naming a bad row."""
        entries = []
        for row in range(self.table.rowCount()):
            epoch_item, changes_item = self.table.item(row, 0), self.table.item(row, 1)
            epoch_text = epoch_item.text().strip() if epoch_item else ""
            changes = changes_item.text().strip() if changes_item else ""
            if not epoch_text and not changes:
                continue  # an empty row the user added and left
            try:
                epoch = int(epoch_text)
            except ValueError:
                raise UserError(
                    f"schedule row {row + 1}: epoch {epoch_text!r} is not a whole number (counted from 1)"
                ) from None
            entries.append({"epoch": epoch, "changes": parse_changes(changes, row + 1)})
        return entries

    # ----------------------------------------------------------------- the plan

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Write the launch files into", self.folder_edit.text()
        )
        if folder:
            self.folder_edit.setText(folder)

    def _show_data_default(self) -> None:
        """The placeholder says which path the run file gets when the field stays empty."""
        data, folder = self.config.data.path, self.folder_edit.text().strip()
        if data and folder:
            try:
                relative = Path(os.path.relpath(Path(data).resolve(), Path(folder).resolve())).as_posix()
            except ValueError:
                relative = data
            self.data_edit.setPlaceholderText(f"{relative} (relative to the folder; the default)")
        else:
            self.data_edit.setPlaceholderText("the data's path relative to the folder (the default)")

    def plan(self) -> LaunchPlan:
        gpus = bool(self.kind_combo.currentData())
        return LaunchPlan(
            processes_per_node=self.processes_spin.value(),
            nodes=self.nodes_spin.value(),
            gpus=gpus,
            data_path=self.data_edit.text().strip(),
            device="auto" if gpus else "cpu",
            max_restarts=self.restarts_spin.value(),
            time_limit=self.time_edit.text().strip(),
            freeze_schedule=self.schedule(),
        )

    # ----------------------------------------------------------------- writing

    def write_files(self) -> bool:
        """Write the files; False (and the reason on screen) when they were not written."""
        folder = self.folder_edit.text().strip()
        try:
            if not folder:
                raise UserError("choose the folder to write the launch files into")
            plan = self.plan()
            config = copy.deepcopy(self.config)
            if self.repeat_check.isChecked() and self.started_freeze is not None:
                config.freeze.preset = self.started_freeze.preset
                config.freeze.overrides = dict(self.started_freeze.overrides)
            written = write_launch_files(config, folder, plan, replace=self.replace_check.isChecked())
        except UserError as exc:  # ConfigError included: the bad value, and what to do
            self._show_error(str(exc))
            return False
        except OSError as exc:
            self._show_error(f"cannot write into {folder}: {exc.strerror or exc}")
            return False
        self.written = written
        self.status.setText(f"Wrote {len(written.paths)} files into {written.folder}")
        lines = [str(path) for path in written.paths]
        lines += [
            "",
            f"One machine:  cd {written.folder} && ./{TORCHRUN_SCRIPT}",
            f"SLURM:        cd {written.folder} && sbatch {SLURM_SCRIPT}   (edit its #SBATCH lines first)",
        ]
        if written.config.freeze.schedule:
            lines += ["", "Freeze schedule:"]
            lines += [
                f"  epoch {entry['epoch']}: {changes_text(entry['changes'])}"
                for entry in written.config.freeze.schedule
            ]
        if written.notes:
            lines += ["", *(f"Note: {note}" for note in written.notes)]
        self.report.setPlainText("\n".join(lines))
        self.report.setVisible(True)
        return True

    def _show_error(self, message: str) -> None:
        self.status.setText(message)
        box = QMessageBox(
            QMessageBox.Icon.Warning, "Run elsewhere", message, QMessageBox.StandardButton.Ok, self
        )
        box.setObjectName("run_elsewhere_error")
        box.open()  # not exec(): a test or the user closes it; the dialog stays responsive


def run_started_freeze(last_result: Any) -> FreezeConfig | None:
    """The freeze settings a finished run started with (its folder's run.toml, written
    before its first batch); None when there is no run or its file cannot be read."""
    run_dir = getattr(last_result, "run_dir", None)
    if not run_dir:
        return None
    try:
        return RunConfig.load(Path(run_dir) / "run.toml").freeze
    except UserError:
        return None


def open_run_elsewhere_dialog(
    parent: QWidget,
    config: RunConfig,
    freeze_changes: list[dict[str, Any]] | None = None,
    started_freeze: FreezeConfig | None = None,
) -> RunElsewhereDialog:
    """Show the dialog for the window's ``config`` and the last run's ``freeze_changes``
    (see :func:`run_freeze_changes`) made from ``started_freeze``; kept on ``parent`` so
    that it is not collected."""
    dialog = RunElsewhereDialog(config, freeze_changes, parent, started_freeze)
    parent.run_elsewhere_dialog = dialog  # type: ignore[attr-defined]
    dialog.open()
    return dialog


def _row(*widgets: QWidget) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return row
