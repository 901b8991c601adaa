"""Predict new images with the current model or a saved run.

(About 600 lines: one view whose model line, saved-run checkpoint, list, filter bar and
status line all act on the same rows and model; what stands on its own is elsewhere:
the rows in prediction_list, the work on worker threads in prediction_jobs, the painting
in prediction_rows, the files a drop names in image_paths.)

Images are dropped on the view or chosen with a file dialog; each gets a row with its
thumbnail and the model's top classes as bars; a row opens large with where the model
looked for its top class (see explanation_view). Prediction and model loading run on
worker threads; rows update as results arrive.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragLeaveEvent, QDropEvent, QKeySequence, QPalette, QShortcut
from superqt import QElidingLabel
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..errors import UserError
from .background import JobFailure
from .checkpoint_choice import CheckpointCombo, checkpoint_text
from .explanation_view import ExplanationDialog
from .icons import mix, semantic_colour
from .image_paths import MAX_IMAGES_PER_FOLDER, expand_image_paths, image_extensions, local_paths
from .prediction_filter import PredictionFilterBar, summary_text
from .prediction_jobs import MAX_TOP_K, PredictionJobs
from .prediction_list import PredictionList
from .prediction_rows import PredictionRow

NO_MODEL_TEXT = "No model yet: train one, or use Load saved run… to open a run folder."


def _runs_folder() -> str:
    """Where training writes run folders (a Load saved run… dialog starts there)."""
    from ..core.run_folder import runs_dir

    return str(runs_dir())


# =========================================================================== the view


class PredictionView(QWidget):
    """Drop or choose images and see the model's top classes for each.

    ``set_predictor(predictor, source_label)`` selects the model (``None`` for none yet);
    every image in the list is (re)predicted with it. The view can also load a saved run
    itself (Load saved run…). Pass ``settings`` (an :class:`~desktop_tl.gui.settings.AppSettings`)
    to start file dialogs in the folders used last.
    """

    #: A saved run was loaded through the view (its folder).
    run_loaded = Signal(str)
    #: The model changed (its source label; "" when there is none).
    predictor_changed = Signal(str)
    #: The user chose the best or the last checkpoint of the run shown ("best"/"last").
    checkpoint_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None, *, settings: Any = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self._predictor: Any = None
        self._source_label = ""
        self._top_k = 5
        self._loading_label = ""
        self._fallback_folder = ""
        self._run_folder: str | None = None  # the run whose checkpoint predicts, if any
        #: False where another view loads the chosen checkpoint and hands it over
        #: (the window's Evaluation tab); a choice is then only announced.
        self.loads_own_checkpoints = True

        self._work = PredictionJobs(self)
        self._work.predicted.connect(self._on_predicted)
        self._work.predict_failed.connect(self._on_predict_failed)
        self._work.run_loaded.connect(self._on_run_loaded)
        self._work.run_failed.connect(self._on_run_failed)

        # Model line and actions.
        # Elided (full text on hover): a long run name must not widen the window.
        self.model_label = QElidingLabel(self)
        self.model_label.setObjectName("predictionModelLabel")
        self.checkpoint_combo = CheckpointCombo(
            "Predict with the run's best checkpoint (highest validation accuracy) or its "
            "last one; the Evaluation tab uses the same",
            self,
        )
        self.checkpoint_combo.setObjectName("predictionCheckpoint")
        self.checkpoint_combo.setEnabled(False)
        self.checkpoint_combo.currentIndexChanged.connect(self._on_checkpoint_chosen)
        self.choose_button = QPushButton("Choose images…", self)
        self.choose_button.setToolTip("Pick image files to predict (or drop files and folders on the list)")
        self.load_run_button = QPushButton("Load saved run…", self)
        self.load_run_button.setToolTip("Predict with the chosen checkpoint (best or last) of a run folder")
        self.clear_button = QPushButton("Clear", self)
        self.clear_button.setToolTip("Remove every image from the list")
        self.explain_button = QPushButton("Where the model looked…", self)
        self.explain_button.setToolTip(
            "Show the chosen image large with a heat map of the parts that made the model "
            "pick its top class (also: double-click a row, or right-click it)"
        )
        self.explain_button.setEnabled(False)
        self.explain_button.clicked.connect(lambda: self.explain_row(self._list.currentIndex().row()))
        self._explanation: ExplanationDialog | None = None
        self.top_k_spin = QSpinBox(self)
        self.top_k_spin.setRange(1, MAX_TOP_K)
        self.top_k_spin.setValue(self._top_k)
        self.top_k_spin.setPrefix("Top ")
        self.top_k_spin.setSuffix(" classes")
        self.top_k_spin.setToolTip("How many of the most likely classes to show per image")
        self.choose_button.clicked.connect(self._choose_images)
        self.load_run_button.clicked.connect(self._choose_run)
        self.clear_button.clicked.connect(self.clear)
        self.top_k_spin.valueChanged.connect(self._set_top_k)
        remove = QShortcut(QKeySequence.StandardKey.Delete, self, activated=self._remove_selected)
        remove.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        remove.setWhatsThis("Remove the selected images")  # how Help lists the shortcut

        # Progress, and a status line that explains problems (e.g. why a run did not load).
        self.status_label = QLabel(self)
        self.status_label.setObjectName("predictionStatus")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QProgressBar(self)
        self.progress.setMaximumWidth(160)
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(12)

        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.model_label, 1)
        bar.addWidget(self.checkpoint_combo)
        bar.addWidget(self.progress)
        bar.addSpacing(8)
        bar.addWidget(self.top_k_spin)
        bar.addSpacing(8)
        bar.addWidget(self.explain_button)
        bar.addWidget(self.choose_button)
        bar.addWidget(self.load_run_button)
        bar.addWidget(self.clear_button)

        # Rows.
        self._list = PredictionList(self)
        self._list.setObjectName("predictionList")
        self._list.activated.connect(lambda index: self.explain_row(index.row()))
        self._list.selectionModel().currentChanged.connect(lambda *_: self._update_explain_button())
        self._list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self._list.customContextMenuRequested.connect(self._row_menu)

        # Sorting and filtering by label and confidence, with counts per predicted label.
        self.filter_bar = PredictionFilterBar(self)
        self.filter_bar.changed.connect(self._apply_view)
        self.filter_bar.save_requested.connect(self._choose_csv)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(bar)
        layout.addWidget(self.status_label)
        layout.addWidget(self.filter_bar)
        layout.addWidget(self._list, 1)

        self.setAcceptDrops(True)
        self._show_status("")
        self.set_predictor(None, "")

    # ------------------------------------------------------------------ public API

    def set_predictor(self, predictor: Any, source_label: str = "") -> None:
        """Use ``predictor`` (``desktop_tl.core.predict.Predictor`` or None) from now on;
        ``source_label`` says where it came from ("current model", "saved run …")."""
        if predictor is not None and not source_label:
            source_label = "latest trained model"
        self._work.use(predictor)
        self._predictor = predictor
        self.filter_bar.set_classes(list(getattr(predictor, "class_names", []) or []))
        self._source_label = source_label if predictor is not None else ""
        if not getattr(predictor, "checkpoint", ""):
            self._run_folder = None  # a model in memory: no checkpoint to choose
        self.checkpoint_combo.setEnabled(self._run_folder is not None)
        if self._explanation is not None:
            self._explanation.close()  # it shows the old model's classes
        if predictor is None:
            self.model_label.setText("Model: none yet")
            self.model_label.setToolTip(NO_MODEL_TEXT)
            self._list.placeholder = NO_MODEL_TEXT + "\n\nYou can already drop images here."
        else:
            count = len(predictor.class_names)
            text = f"Model: {source_label or 'model'} · {count} classes"
            self.model_label.setText(text)
            self.model_label.setToolTip(f"{text}\n{getattr(predictor, 'source', '') or ''}".strip())
            self._list.placeholder = "Drop images or folders here, or use Choose images…"
            self.top_k_spin.setMaximum(max(1, min(MAX_TOP_K, count)))
        self.top_k_spin.setEnabled(predictor is not None)
        self._list.viewport().update()
        self._list.clear_results("waiting" if predictor is not None else "no-model")
        if predictor is not None and self._list.rows:
            self._predict([row.path for row in self._list.rows])
        else:
            self._update_progress()
        self.predictor_changed.emit(self._source_label)

    @property
    def predictor(self) -> Any:
        return self._predictor

    @property
    def source_label(self) -> str:
        return self._source_label

    def class_names(self) -> list[str]:
        """The current model's classes ([] without a model)."""
        return list(self._predictor.class_names) if self._predictor is not None else []

    def explain_row(self, row: int) -> ExplanationDialog | None:
        """Enlarge the image at ``row`` with where the model looked for its top class
        (computed off the GUI thread); None when the row has no prediction yet."""
        entry = self._list.row(row)
        if entry is None or self._predictor is None:
            return None
        if entry.status != "done" or not entry.top:
            return None
        if self._explanation is None:
            self._explanation = ExplanationDialog(self)
        self._explanation.show_prediction(
            self._predictor, self._source_label, entry.path, entry.top[: self._top_k]
        )
        self._explanation.show()
        self._explanation.raise_()
        return self._explanation

    @property
    def explanation_dialog(self) -> ExplanationDialog | None:
        return self._explanation

    @property
    def top_k(self) -> int:
        return self._top_k

    def add_images(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Add image files (folders are searched for images) and predict them; returns how
        many were added (files already listed are skipped)."""
        expanded, left_out = expand_image_paths(paths)
        new = self._list.add(expanded, "waiting" if self._predictor is not None else "no-model")
        if new and self._predictor is not None:
            self._predict(new)
        if left_out:
            self._show_status(
                f"{left_out} images were left out: a folder adds at most {MAX_IMAGES_PER_FOLDER}.", "warning"
            )
        elif not expanded:
            self._show_status("No image files were found there.", "warning")
        self._update_progress()
        return len(new)

    def rows(self) -> list[PredictionRow]:
        """The listed images and their results, in order (copies)."""
        return self._list.copies()

    def clear(self) -> None:
        """Remove every image (predictions in progress are dropped)."""
        self._work.cancel_predictions()
        self._list.remove_all()
        self._show_status("")
        self._update_progress()

    @property
    def run_folder(self) -> str | None:
        """The run whose checkpoint predicts (None for a model in memory or none)."""
        return self._run_folder

    def checkpoint(self) -> str:
        """The checkpoint chosen for runs: "best" or "last"."""
        return self.checkpoint_combo.kind()

    def show_checkpoint(self, kind: str, run_folder: str | os.PathLike[str] | None = None) -> None:
        """Mirror a checkpoint chosen elsewhere (the Evaluation tab) without reloading."""
        self.checkpoint_combo.show_kind(kind)
        if run_folder is not None:
            self._run_folder = os.path.abspath(os.fspath(run_folder))
        self.checkpoint_combo.setEnabled(self._run_folder is not None)

    def drop_model(self, run_folder: str, reason: str) -> None:
        """The chosen checkpoint of ``run_folder`` cannot be used (``reason`` says why):
        when it is this view's run, predict with no model rather than with another
        checkpoint; the images stay listed."""
        folder = self._run_folder
        if folder is None or folder != os.path.abspath(run_folder):
            return
        if self._predictor is not None and getattr(self._predictor, "checkpoint", ""):
            self.set_predictor(None, "")
        self._run_folder = folder
        self.checkpoint_combo.setEnabled(folder is not None)
        self._show_status(reason, "error")

    def _on_checkpoint_chosen(self, _index: int) -> None:
        kind = self.checkpoint()
        self.checkpoint_requested.emit(kind)
        if self.loads_own_checkpoints and self._run_folder is not None and not self._work.loading:
            self.load_run(self._run_folder, checkpoint=kind)

    def load_run(
        self, path: str | os.PathLike[str], *, label: str = "", checkpoint: str | None = None
    ) -> None:
        """Load a checkpoint of the run folder ``path`` (``checkpoint``: "best" or "last";
        by default the one chosen in the view) on a worker thread and predict with it; a
        failure is explained in the status line. ``label`` says where the model came from
        (default: "saved run: <folder name>"); the checkpoint and its epoch are added."""
        folder = os.path.abspath(os.fspath(path))
        if checkpoint is not None:
            self.show_checkpoint(checkpoint)
        self._loading_label = label or f"saved run: {Path(folder).name}"
        self._work.load_run(folder, self.checkpoint())
        self.load_run_button.setEnabled(False)
        self._show_status(f"Loading the model of {folder}…")
        self.progress.setRange(0, 0)
        self.progress.show()

    def set_fallback_folder(self, folder: str | os.PathLike[str]) -> None:
        """Where Choose images… starts when no image has been chosen before (the
        dataset's folder: a first prediction is usually one of its images)."""
        self._fallback_folder = os.fspath(folder)

    def thumbnail_ready(self, path: str | os.PathLike[str]) -> bool:
        """True once the row's thumbnail has been read (or found unreadable)."""
        return self._list.thumbnail_ready(os.path.abspath(os.fspath(path)))

    @property
    def busy(self) -> bool:
        """True while a model loads or images are being predicted."""
        return self._work.busy

    def status_text(self) -> str:
        return self.status_label.text()

    # ------------------------------------------------------------------ prediction

    def _predict(self, paths: list[str]) -> None:
        self._work.predict(paths)
        self._update_progress()

    def _on_predicted(self, results: list[Any]) -> None:
        for prediction in results:
            if prediction.error:
                error = _readable_error(prediction.path, prediction.error)
                self._list.set_result(os.path.abspath(prediction.path), "error", error, [])
            else:
                top = [(str(n), float(p)) for n, p in prediction.top]
                self._list.set_result(os.path.abspath(prediction.path), "done", None, top)
        self._update_progress()

    def _on_predict_failed(self, chunk: list[str], failure: JobFailure) -> None:
        for path in chunk:
            self._list.set_result(path, "error", f"Prediction failed: {failure}", [])
        self._show_status(f"Prediction failed: {failure}", "error", details=failure.traceback)
        self._update_progress()

    # ------------------------------------------------------------------ run loading

    def _on_run_loaded(self, folder: str, predictor: Any) -> None:
        self.load_run_button.setEnabled(True)
        self._show_status("")
        if self._settings is not None:
            self._settings.last_run_folder = folder
        from ..core.run_folder import run_in_progress

        running = run_in_progress(folder)  # another process (or this window) still trains it
        kind = getattr(predictor, "checkpoint", "") or self.checkpoint()
        label = (
            self._loading_label
            + " · "
            + checkpoint_text(kind, getattr(predictor, "epoch", None))
            + (" (still training)" if running else "")
        )
        self._run_folder = folder
        self.set_predictor(predictor, label)
        self.show_checkpoint(kind, folder)
        if running:
            self._show_status(
                f"This run is still training ({running}); predictions use its {kind} "
                "checkpoint so far. Load it again when training has finished.",
                "warning",
            )
        self.run_loaded.emit(folder)

    def _on_run_failed(self, folder: str, failure: JobFailure) -> None:
        self.load_run_button.setEnabled(True)
        reason = str(failure).strip()
        if not reason.endswith((".", "?", "!")):
            reason += "."
        if folder == self._run_folder and self._predictor is not None:
            # The other checkpoint of the run shown: predictions must not go on naming a
            # checkpoint that is no longer chosen (the images stay listed).
            self.set_predictor(None, "")
            self._run_folder = folder
            self.checkpoint_combo.setEnabled(True)
        # The engine's message usually names the folder already; say it once.
        where = "" if folder in reason else f" from {folder}"
        self._show_status(
            f"Could not load a model{where}: {reason} "
            "Choose a run folder written by training (it holds run.toml and checkpoints/).",
            "error",
            details=failure.traceback,
        )
        self._update_progress()

    # ------------------------------------------------------------------ UI helpers

    def _update_explain_button(self) -> None:
        row = self._list.current_row()
        ready = row is not None and row.status == "done"
        self.explain_button.setEnabled(self._predictor is not None and ready)

    def _row_menu(self, position) -> None:
        from PySide6.QtWidgets import QMenu

        index = self._list.indexAt(position)
        if not index.isValid():
            return
        menu = QMenu(self)
        action = menu.addAction("Show where the model looked")
        row = self._list.row(index.row())
        action.setEnabled(self._predictor is not None and row.status == "done")
        action.triggered.connect(lambda: self.explain_row(index.row()))
        menu.exec(self._list.viewport().mapToGlobal(position))

    def _set_top_k(self, value: int) -> None:
        self._top_k = int(value)
        self._list.doItemsLayout()
        self._list.refresh()

    def _apply_view(self) -> None:
        """Order and show the rows as the filter bar says; the summary counts them all."""
        bar = self.filter_bar
        shown = self._list.arrange(bar.sort(), bar.label(), bar.min_confidence())
        rows = self._list.rows
        summary = summary_text(rows, shown)
        bar.summary_label.setText(summary)
        bar.summary_label.setToolTip(summary)
        bar.save_button.setEnabled(any(r.status in ("done", "error") for r in rows))

    def save_csv(self, path: str | os.PathLike[str]) -> int:
        """Write the rows shown (filtered, in the order shown) as a prediction table;
        returns how many rows were written. Raises UserError when it cannot be written."""
        from ..core.predict import write_predictions_csv

        rows = [r for r in self._list.shown_rows() if r.status in ("done", "error")]
        write_predictions_csv(path, rows, self._top_k)
        return len(rows)

    def _choose_csv(self) -> None:
        start = self._start_folder("last_image_folder", self._fallback_folder)
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the prediction table", str(Path(start or ".") / "predictions.csv"), "CSV file (*.csv)"
        )
        if not path:
            return
        try:
            written = self.save_csv(path)
        except UserError as exc:
            self._show_status(str(exc), "error")
            return
        self._show_status(f"{written} predictions saved to {path}")

    def shown_rows(self) -> list[PredictionRow]:
        """The rows the filter lets through, in the order shown (copies)."""
        return self._list.shown_rows()

    def _update_progress(self) -> None:
        self._apply_view()
        rows = self._list.rows
        self.clear_button.setEnabled(bool(rows))
        self._update_explain_button()
        if self._work.loading_run is not None:
            return
        total = len(rows)
        done = sum(1 for r in rows if r.status in ("done", "error"))
        waiting = self._predictor is not None and done < total
        if waiting:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress.show()
            self._show_status(f"Predicting… {done} of {total} images")
        else:
            self.progress.hide()
            if self.status_label.property("kind") in ("", "info"):
                failed = sum(1 for r in rows if r.status == "error")
                predicted = total - failed
                if total and self._predictor is not None:
                    text = f"{predicted} image{'s' if predicted != 1 else ''} predicted"
                    if failed:
                        text += f" · {failed} could not be read"
                    self._show_status(text)
                else:
                    self._show_status("")

    def _show_status(self, text: str, kind: str = "info", details: str = "") -> None:
        self.status_label.setProperty("kind", kind if text else "")
        colour_name = {"warning": "warning", "error": "bad"}.get(kind)
        if colour_name:
            colour = semantic_colour(colour_name, self.palette())
            base = self.palette().color(QPalette.ColorRole.Base)
            self.status_label.setStyleSheet(
                f"QLabel {{ color: {colour.name()}; background: {mix(base, colour, 0.10).name()};"
                f" border: 1px solid {mix(base, colour, 0.45).name()}; border-radius: 4px; padding: 4px 6px; }}"
            )
        else:
            self.status_label.setStyleSheet("")
        self.status_label.setText(text)
        self.status_label.setToolTip(details)
        self.status_label.setVisible(bool(text))

    def _remove_selected(self) -> None:
        self._list.remove_selected()
        self._update_progress()

    def _start_folder(self, kind: str, fallback: str = "") -> str:
        remembered = getattr(self._settings, kind, "") if self._settings is not None else ""
        for folder in (remembered, fallback):
            if folder and Path(folder).is_dir():
                return folder
        return ""

    def _choose_images(self) -> None:
        extensions = " ".join(f"*{ext}" for ext in image_extensions())
        paths, _ = QFileDialog.getOpenFileNames(
            self,
            "Choose images to predict",
            self._start_folder("last_image_folder", self._fallback_folder),
            f"Images ({extensions});;All files (*)",
        )
        if paths:
            if self._settings is not None:
                self._settings.last_image_folder = str(Path(paths[0]).parent)
            self._show_status("")
            self.add_images(paths)

    def _choose_run(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Choose a run folder", self._start_folder("last_run_folder", _runs_folder())
        )
        if folder:
            self.load_run(folder)

    # ------------------------------------------------------------------ drag and drop

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if local_paths(event.mimeData()):
            event.acceptProposedAction()
            self._list.drop_active = True
            self._list.viewport().update()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        if local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:  # noqa: N802 - Qt override
        self._list.drop_active = False
        self._list.viewport().update()
        super().dragLeaveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        self._list.drop_active = False
        self._list.viewport().update()
        paths = local_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self._show_status("")
        self.add_images(paths)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and hasattr(self, "_list"):
            self._list.viewport().update()


def _readable_error(path: str, error: str) -> str:
    """The reason alone when the message repeats the path the row already shows."""
    for prefix in (f"cannot read image {path}: ", f"cannot read {path}: "):
        if error.startswith(prefix):
            reason = error[len(prefix) :]
            return f"Cannot read this image: {reason}"
    return error
