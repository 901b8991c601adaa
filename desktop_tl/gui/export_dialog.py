"""File > Export model...: the window's face of :func:`desktop_tl.core.export.export`.

The export (tracing, writing, the parity check) takes seconds to minutes, so it runs on
a :class:`~desktop_tl.gui.background.BackgroundTask`; the dialog only shows its progress
and its outcome. A refused export is a message box with the engine's one sentence.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import UserError
from .background import BackgroundTask, run_in_background

FORMAT_LABELS = {
    "onnx": "ONNX (runs with onnxruntime; bundle with predict.py)",
    "pt2": "torch.export program (.pt2)",
    "safetensors": "safetensors weights + JSON config",
}


class ExportDialog(QDialog):
    """Choose a run, a format and a destination; export off the GUI thread."""

    exported = Signal(object)  # ExportResult
    export_failed = Signal(str)  # the message shown

    def __init__(self, run_dir: str | Path = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export model")
        self.task: BackgroundTask | None = None
        self.result = None
        self._out_edited = False

        self.run_edit = QLineEdit(str(run_dir))
        self.run_edit.setPlaceholderText("a run folder")
        browse_run = QPushButton("Browse…")
        browse_run.clicked.connect(self._choose_run)
        self.format_combo = QComboBox()
        for key, label in FORMAT_LABELS.items():
            self.format_combo.addItem(label, key)
        self.checkpoint_combo = QComboBox()
        self.checkpoint_combo.addItem("best (highest validation accuracy)", "best")
        self.checkpoint_combo.addItem("last (end of training)", "last")
        self.int8_check = QCheckBox("Also write an int8 model (ONNX only; accuracy change is stated)")
        self.out_edit = QLineEdit()
        self.out_edit.textEdited.connect(lambda _: setattr(self, "_out_edited", True))
        browse_out = QPushButton("Browse…")
        browse_out.clicked.connect(self._choose_out)
        self.force_check = QCheckBox("Replace an earlier export bundle in that folder")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.report = QPlainTextEdit()
        self.report.setReadOnly(True)
        self.report.setVisible(False)

        form = QFormLayout()
        form.addRow("Run folder", _row(self.run_edit, browse_run))
        form.addRow("Format", self.format_combo)
        form.addRow("Checkpoint", self.checkpoint_combo)
        form.addRow("", self.int8_check)
        form.addRow("Save bundle in", _row(self.out_edit, browse_out))
        form.addRow("", self.force_check)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.clicked.connect(self.start_export)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(self.report)
        layout.addWidget(self.buttons)

        self.run_edit.textChanged.connect(self._suggest_out)
        self.format_combo.currentIndexChanged.connect(self._format_changed)
        self.int8_check.toggled.connect(self._suggest_out)
        self._format_changed()

    # ----------------------------------------------------------------- choices

    def _choose_run(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Run folder", self.run_edit.text())
        if folder:
            self.run_edit.setText(folder)

    def _choose_out(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save bundle in", self.out_edit.text())
        if folder:
            self.out_edit.setText(folder)
            self._out_edited = True

    def _format_changed(self) -> None:
        is_onnx = self.format_combo.currentData() == "onnx"
        self.int8_check.setEnabled(is_onnx)
        if not is_onnx:
            self.int8_check.setChecked(False)
        self._suggest_out()

    def _suggest_out(self) -> None:
        from ..core.export import default_out

        run = self.run_edit.text().strip()
        if run and not self._out_edited:
            self.out_edit.setText(
                str(default_out(Path(run), self.format_combo.currentData(), self.int8_check.isChecked()))
            )

    # ----------------------------------------------------------------- the export

    def start_export(self) -> None:
        if self.task is not None:
            return
        run = self.run_edit.text().strip()
        if not run:
            self._show_error("Choose the run folder to export.")
            return
        options = dict(
            format=self.format_combo.currentData(),
            checkpoint=self.checkpoint_combo.currentData(),
            out=self.out_edit.text().strip() or None,
            int8=self.int8_check.isChecked(),
            force=self.force_check.isChecked(),
        )

        def work(task: BackgroundTask):
            from ..core.export import export

            return export(run, progress=lambda message: task.report_progress(message), **options)

        self.export_button.setEnabled(False)
        self.status.setText("Exporting…")
        self.task = run_in_background(
            work,
            on_result=self._finished,
            on_error=self._failed,
            on_progress=lambda done, total, message: self.status.setText(message),
            name="export",
        )

    def _finished(self, result) -> None:
        self.task = None
        self.result = result
        self.export_button.setEnabled(True)
        self.status.setText(f"Exported to {result.out}")
        self.report.setPlainText(result.summary())
        self.report.setVisible(True)
        self.exported.emit(result)

    def _failed(self, exc: BaseException, details: str) -> None:
        self.task = None
        self.export_button.setEnabled(True)
        self.status.setText("Export failed")
        if isinstance(exc, UserError):
            self._show_error(str(exc))
        else:  # a bug: keep its traceback visible for the report
            self._show_error(f"The export failed unexpectedly: {exc}")
            self.report.setPlainText(details)
            self.report.setVisible(True)

    def _show_error(self, message: str) -> None:
        self.export_failed.emit(message)
        box = QMessageBox(
            QMessageBox.Icon.Warning, "Export model", message, QMessageBox.StandardButton.Ok, self
        )
        box.setObjectName("export_error")
        box.open()  # not exec(): a test or the user closes it; the dialog stays responsive

    def reject(self) -> None:
        if self.task is not None:  # an export cannot be stopped halfway; wait for it
            self.task.wait()
        super().reject()


def _row(*widgets: QWidget) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return row


def open_export_dialog(window: QWidget, run_dir: str | Path = "") -> ExportDialog:
    """Show the dialog for ``run_dir`` (the window's latest run, if any); kept on the window
    so that it is not collected while an export runs."""
    dialog = ExportDialog(run_dir, window)
    window.export_dialog = dialog  # type: ignore[attr-defined]
    dialog.open()
    return dialog
