"""The Runs tab: every run folder in the runs folder (and folders the user adds), sortable
and filterable, with rename, note, open folder and move to trash; the runs selected below
are shown side by side by the :class:`~desktop_tl.gui.comparison_view.ComparisonView`.

(About 520 lines: the list and the actions on the selected run, rename, note, open,
trash, save metrics, which all work on the list's selection and refresh it after; the
table's columns, rows and filter are in run_rows, the drawing of a saved matrix in
confusion_matrix.)

Everything here is read from the run folders each time the list is refreshed (reading
them is cheap: a few small files each); nothing else keeps run state. Loading a model to
predict is left to the Prediction view, which does it off the GUI thread.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..core.run_folder import runs_dir
from ..core.run_history import (
    RunHistoryError,
    RunRecord,
    list_runs,
    move_to_trash,
    read_run,
    set_display_name,
    set_note,
    write_per_class_csv,
)
from ..errors import UserError
from .comparison_view import ComparisonView
from .confusion_matrix import save_matrix_image
from .notice import Notice
from .run_rows import COLUMNS, PATH_ROLE, STATUS_FILTERS, RunFilter, run_row

SETTINGS_KEY = "runs/extra_folders"


class RunsView(QWidget):
    """The run history. Signals ask the window to show a run's evaluation or to predict
    with it; the main window shows them."""

    evaluation_requested = Signal(object)  # RunRecord
    prediction_requested = Signal(object)  # RunRecord

    def __init__(self, settings: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.records: list[RunRecord] = []
        self.extra_folders: list[str] = self._saved_folders()
        #: Hooks tests replace instead of modal dialogs.
        self.confirm: Callable[[str, str], bool] = self._confirm_dialog
        self.ask_text: Callable[[str, str, str], str | None] = self._text_dialog
        self.ask_save_path: Callable[[str, str, str], str] | None = None
        self.ask_folder: Callable[[], str] | None = None

        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by name, dataset, backbone, head, note…")
        self.filter_edit.setClearButtonEnabled(True)
        self.status_filter = QComboBox()
        self.status_filter.addItems(STATUS_FILTERS)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setShortcut("F5")
        self.add_folder_button = QPushButton("Add folder…")
        self.add_folder_button.setToolTip("Also list the runs in another folder (kept for next time).")
        self.folders_label = QLabel()
        self.folders_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.folders_label.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.filter_edit, 2)
        top.addWidget(self.status_filter)
        top.addWidget(self.refresh_button)
        top.addWidget(self.add_folder_button)

        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.proxy = RunFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setObjectName("runsTable")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(1, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.doubleClicked.connect(lambda _index: self.show_evaluation())

        self.notice = Notice()
        self.notice.setObjectName("runsNotice")
        self.selection_label = QLabel("")
        self.selection_label.setWordWrap(True)
        self.selection_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.evaluation_button = QPushButton("Show evaluation")
        self.evaluation_button.setToolTip(
            "Confusion matrix, per-class scores and mistakes of the run's last epoch, in the Evaluation tab."
        )
        self.predict_button = QPushButton("Predict with this run")
        self.predict_button.setToolTip("Load the run's best checkpoint in the Prediction tab.")
        self.export_button = QPushButton("Export model…")
        self.export_button.setToolTip(
            "Take the run's model out: ONNX, torch.export or safetensors, as a bundle with a model card."
        )
        self.rename_button = QPushButton("Rename…")
        self.note_button = QPushButton("Note…")
        self.open_folder_button = QPushButton("Open folder")
        self.per_class_button = QPushButton("Per-class CSV…")
        self.per_class_button.setToolTip("Save precision, recall and support per class as CSV.")
        self.matrix_button = QPushButton("Confusion matrix image…")
        self.matrix_button.setToolTip("Save the run's confusion matrix as PNG or SVG.")
        self.trash_button = QPushButton("Move to trash…")
        # Two rows, so that the buttons fit a 1024 px wide window.
        actions = QVBoxLayout()
        for row_buttons in (
            (
                self.evaluation_button,
                self.predict_button,
                self.export_button,
                self.rename_button,
                self.note_button,
            ),
            (self.open_folder_button, self.per_class_button, self.matrix_button, None, self.trash_button),
        ):
            row = QHBoxLayout()
            for button in row_buttons:
                row.addWidget(button) if button is not None else row.addStretch(1)
            actions.addLayout(row)
        actions.itemAt(0).layout().addStretch(1)

        self.comparison = ComparisonView()

        upper = QWidget()
        upper_layout = QVBoxLayout(upper)
        upper_layout.setContentsMargins(0, 0, 0, 0)
        upper_layout.addLayout(top)
        upper_layout.addWidget(self.folders_label)
        upper_layout.addWidget(self.table, 1)
        upper_layout.addWidget(self.notice)
        upper_layout.addWidget(self.selection_label)
        upper_layout.addLayout(actions)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(upper)
        self.splitter.addWidget(self.comparison)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([380, 460])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)

        self.filter_edit.textChanged.connect(self._apply_filter)
        self.status_filter.currentIndexChanged.connect(self._apply_filter)
        self.refresh_button.clicked.connect(self.refresh)
        self.add_folder_button.clicked.connect(self.choose_folder)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._on_selection())
        self.evaluation_button.clicked.connect(self.show_evaluation)
        self.predict_button.clicked.connect(self.predict_with_selected)
        self.export_button.clicked.connect(self.export_selected)
        self.rename_button.clicked.connect(self.rename_selected)
        self.note_button.clicked.connect(self.edit_note)
        self.open_folder_button.clicked.connect(self.open_folder)
        self.per_class_button.clicked.connect(self.save_per_class)
        self.matrix_button.clicked.connect(self.save_confusion_matrix)
        self.trash_button.clicked.connect(self.trash_selected)
        self._loaded = False
        self._update_buttons()

    # ------------------------------------------------------------ messages

    def show_message(self, level: str, text: str) -> None:
        """A line above the list (e.g. why a run's evaluation cannot be shown)."""
        self.notice.show_message(level, text)

    # ------------------------------------------------------------ the list

    def folders(self) -> list[Path]:
        return [runs_dir(), *(Path(f) for f in self.extra_folders)]

    def refresh(self) -> None:
        """Read every run folder again, keeping the selection where the runs still exist."""
        selected = {str(r.path) for r in self.selected_runs()}
        self.records = list_runs(self.folders())
        self._loaded = True
        sorting = self.table.horizontalHeader().sortIndicatorSection()
        order = self.table.horizontalHeader().sortIndicatorOrder()
        self.table.setSortingEnabled(False)
        self.model.removeRows(0, self.model.rowCount())
        for record in self.records:
            self.model.appendRow(run_row(record, self.palette()))
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(sorting, order)
        header = self.table.horizontalHeader()
        header.resizeSections(QHeaderView.ResizeMode.ResizeToContents)
        header.resizeSection(0, min(max(header.sectionSize(0), 160), 280))
        where = "  ·  ".join(str(f) for f in self.folders())
        self.folders_label.setText(
            f"{len(self.records)} run{'s' if len(self.records) != 1 else ''} in {where}"
        )
        if selected:
            selection = self.table.selectionModel()
            for row in range(self.proxy.rowCount()):
                index = self.proxy.index(row, 0)
                if index.data(PATH_ROLE) in selected:
                    selection.select(index, selection.SelectionFlag.Select | selection.SelectionFlag.Rows)
        self._on_selection()

    def _apply_filter(self) -> None:
        status = self.status_filter.currentText()
        self.proxy.set_filter(self.filter_edit.text(), "" if status == STATUS_FILTERS[0] else status)

    def visible_names(self) -> list[str]:
        """The names of the runs shown, in the order shown."""
        return [
            self.proxy.index(row, 0).data(Qt.ItemDataRole.UserRole).name
            for row in range(self.proxy.rowCount())
        ]

    def select_runs(self, paths: list[str | os.PathLike[str]]) -> None:
        """Select the runs in these folders (in this order for the comparison)."""
        wanted = [os.path.abspath(os.fspath(p)) for p in paths]
        selection = self.table.selectionModel()
        selection.clearSelection()
        self._order = wanted
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, 0)
            if os.path.abspath(index.data(PATH_ROLE)) in wanted:
                selection.select(index, selection.SelectionFlag.Select | selection.SelectionFlag.Rows)

    _order: list[str] = []

    def selected_runs(self) -> list[RunRecord]:
        rows = self.table.selectionModel().selectedRows(0)
        records = [index.data(Qt.ItemDataRole.UserRole) for index in rows]
        order = {path: i for i, path in enumerate(self._order)}
        records.sort(key=lambda r: (order.get(os.path.abspath(r.path), len(order)), r.started or 0))
        return records

    def _on_selection(self) -> None:
        runs = self.selected_runs()
        gone = [r for r in runs if not r.path.is_dir()]
        if gone:
            self._vanished(gone[0])
            return
        self.comparison.set_runs(runs)
        if len(runs) == 1:
            run = runs[0]
            parts = [f"{run.name}: {run.status}" + (f" ({run.reason})" if run.reason else "")]
            if run.renamed:
                parts.append(f"folder {run.folder_name}")
            if run.note:
                parts.append(f"note: {run.note}")
            self.selection_label.setText(" · ".join(parts))
        elif runs:
            self.selection_label.setText(
                f"{len(runs)} runs selected: curves overlaid below, with the settings that differ."
            )
        else:
            self.selection_label.setText("")
        self._update_buttons()

    def _update_buttons(self) -> None:
        runs = self.selected_runs()
        one = len(runs) == 1
        evaluated = one and bool(runs[0].summary.get("confusion"))
        self.evaluation_button.setEnabled(evaluated)
        self.per_class_button.setEnabled(evaluated)
        self.matrix_button.setEnabled(evaluated)
        has_model = one and (runs[0].path / "checkpoints").is_dir()
        self.predict_button.setEnabled(has_model)
        self.export_button.setEnabled(has_model)
        for button in (self.rename_button, self.note_button, self.open_folder_button):
            button.setEnabled(one)
        self.trash_button.setEnabled(bool(runs))

    def _current(self) -> RunRecord | None:
        """The one selected run, read again; None (with a message) when it is gone."""
        runs = self.selected_runs()
        if len(runs) != 1:
            return None
        try:
            return read_run(runs[0].path)
        except RunHistoryError:
            self._vanished(runs[0])
            return None

    def _vanished(self, record: RunRecord) -> None:
        self.refresh_silently()
        self.notice.show_message(
            "warning",
            f"{record.name} is no longer at {record.path} (it was deleted or moved "
            "outside the app); the list was read again.",
        )

    def refresh_silently(self) -> None:
        self.table.selectionModel().blockSignals(True)
        try:
            self.table.clearSelection()
            self.refresh()
        finally:
            self.table.selectionModel().blockSignals(False)
        self._on_selection()

    # ------------------------------------------------------------ actions

    def show_evaluation(self) -> None:
        record = self._current()
        if record is None:
            return
        if not record.summary.get("confusion"):
            self.notice.show_message(
                "info", f"{record.name} has no evaluation results: no epoch finished with a validation pass."
            )
            return
        self.evaluation_requested.emit(record)

    def predict_with_selected(self) -> None:
        record = self._current()
        if record is not None:
            self.prediction_requested.emit(record)

    def export_selected(self) -> None:
        """The export dialog for the selected run (a run opened from disk included)."""
        from .export_dialog import open_export_dialog

        record = self._current()
        if record is not None:
            open_export_dialog(self.window(), record.path)

    def rename_selected(self) -> None:
        record = self._current()
        if record is None:
            return
        name = self.ask_text(
            "Rename run",
            f"Name shown for {record.folder_name} (empty: the folder name; the folder is not renamed):",
            record.name,
        )
        if name is None:
            return
        self._change(
            lambda: set_display_name(record.path, name),
            record,
            lambda new: f"{record.folder_name} is now shown as {new.name}.",
        )

    def edit_note(self) -> None:
        record = self._current()
        if record is None:
            return
        note = self.ask_text("Note", f"Note kept with {record.name}:", record.note)
        if note is None:
            return
        self._change(
            lambda: set_note(record.path, note),
            record,
            lambda new: f"Note {'kept' if new.note else 'removed'} for {new.name}.",
        )

    def _change(self, action, record: RunRecord, done) -> None:
        try:
            new = action()
        except RunHistoryError as exc:
            if not record.path.is_dir():
                self._vanished(record)
            else:
                self.notice.show_message("error", str(exc))
            return
        self.notice.show_message("good", done(new))
        self.refresh()

    def open_folder(self) -> QUrl | None:
        record = self._current()
        if record is None:
            return None
        url = QUrl.fromLocalFile(str(record.path))
        if not QDesktopServices.openUrl(url):
            self.notice.show_message("error", f"No file manager could open {record.path}.")
        return url

    def trash_selected(self) -> None:
        runs = self.selected_runs()
        if not runs:
            return
        names = "\n".join(f"• {r.name} ({r.path})" for r in runs[:10])
        more = f"\n… and {len(runs) - 10} more" if len(runs) > 10 else ""
        if not self.confirm(
            "Move to trash",
            f"Move {len(runs)} run folder{'s' if len(runs) != 1 else ''} to the "
            f"system trash?\n\n{names}{more}\n\nThey can be restored from the trash.",
        ):
            return
        moved, problems = [], []
        for run in runs:
            try:
                move_to_trash(run.path)
                moved.append(run.name)
            except RunHistoryError as exc:
                problems.append(str(exc))
        self.refresh_silently()
        if problems:
            done = f"Moved {', '.join(moved)} to the trash. " if moved else ""
            self.notice.show_message("error", done + " ".join(problems))
        else:
            self.notice.show_message("good", f"Moved {', '.join(moved)} to the trash.")

    def choose_folder(self) -> None:
        folder = (
            self.ask_folder()
            if self.ask_folder is not None
            else QFileDialog.getExistingDirectory(self, "Add a folder of runs", str(runs_dir()))
        )
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str | os.PathLike[str]) -> None:
        folder = os.path.abspath(os.fspath(folder))
        if not os.path.isdir(folder):
            self.notice.show_message("error", f"{folder} is not a folder.")
            return
        if folder not in self.extra_folders and Path(folder) != runs_dir():
            self.extra_folders.append(folder)
            if self.settings is not None:
                self.settings.set_value(SETTINGS_KEY, list(self.extra_folders))
        before = len(self.records)
        self.refresh()
        found = len(self.records) - before
        self.notice.show_message(
            "info" if found else "warning", f"{found} run{'s' if found != 1 else ''} found in {folder}."
        )

    def save_per_class(self) -> None:
        record = self._current()
        if record is None:
            return
        path = self._ask_save("Save per-class metrics", record, "per_class.csv", "CSV file (*.csv)")
        if path:
            try:
                write_per_class_csv(record, path)
            except UserError as exc:
                self.notice.show_message("error", str(exc))
                return
            self.notice.show_message("good", f"Saved the per-class metrics of {record.name} to {path}.")

    def save_confusion_matrix(self) -> None:
        record = self._current()
        if record is None:
            return
        path = self._ask_save(
            "Save confusion matrix", record, "confusion_matrix.png", "PNG image (*.png);;SVG image (*.svg)"
        )
        if path:
            try:
                confusion = record.summary.get("confusion")
                if not confusion:
                    raise UserError(
                        f"{record.name} has no confusion matrix (no epoch finished with a validation pass)"
                    )
                names = record.classes or [str(i) for i in range(len(confusion))]
                save_matrix_image(names, confusion, path, title=f"Confusion matrix of {record.name}")
            except UserError as exc:
                self.notice.show_message("error", str(exc))
                return
            self.notice.show_message("good", f"Saved the confusion matrix of {record.name} to {path}.")

    def _ask_save(self, title: str, record: RunRecord, name: str, filters: str) -> str:
        if self.ask_save_path is not None:
            return self.ask_save_path(title, name, filters)
        path, _ = QFileDialog.getSaveFileName(self, title, str(record.path / name), filters)
        return path

    # ------------------------------------------------------------ helpers

    def _saved_folders(self) -> list[str]:
        if self.settings is None:
            return []
        value = self.settings.value(SETTINGS_KEY, [])
        if isinstance(value, str):
            value = [value] if value else []
        return [str(v) for v in value or [] if isinstance(v, str) and v]

    def _confirm_dialog(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(
            self,
            title,
            text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def _text_dialog(self, title: str, label: str, text: str) -> str | None:
        value, ok = QInputDialog.getText(self, title, label, QLineEdit.EchoMode.Normal, text)
        return value if ok else None

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        if not self._loaded:
            self.refresh()
        super().showEvent(event)
