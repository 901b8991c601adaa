"""Predict new images with the current model or a saved run.

(About 580 lines: one view whose parts, model line, dropping, chunked prediction and
run loading, all act on the same list of rows; the row painting is in prediction_rows.)

Images are dropped on the view or chosen with a file dialog; each gets a row with its
thumbnail and the model's top classes as bars; a row opens large with where the model
looked for its top class (see explanation_view). Prediction and model loading run on a
worker thread (see :class:`desktop_tl.gui.background.JobQueue`); rows update as results arrive.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import (
    QDragEnterEvent,
    QDragLeaveEvent,
    QDropEvent,
    QKeySequence,
    QPalette,
    QShortcut,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
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
from .background import JobFailure, JobQueue
from .explanation_view import ExplanationDialog
from .icons import mix, semantic_colour
from .prediction_filter import PredictionFilterBar, row_visible, sort_key, summary_text
from .prediction_rows import (
    ROW_ROLE,
    THUMBNAIL_SIDE,
    PredictionDelegate,
    PredictionRow,
    ResultList,
    format_probability,
)
from .thumbnails import ThumbnailLoader

#: Images predicted per worker job: small enough that results appear steadily and a
#: change of model or a Clear takes effect quickly.
CHUNK_SIZE = 8
#: Most classes the view can show per image.
MAX_TOP_K = 10
#: Most images taken from one dropped or chosen folder.
MAX_IMAGES_PER_FOLDER = 2000

NO_MODEL_TEXT = "No model yet: train one, or use Load saved run… to open a run folder."
#: Thumbnails read as soon as images are added (the rest when their rows are shown), so
#: they are ready when the list is first looked at.
EAGER_THUMBNAILS = 48


def _image_extensions() -> tuple[str, ...]:
    from ..core.images import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


def expand_image_paths(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[str], int]:
    """Files as given; folders replaced by the image files inside them (recursively,
    sorted). Returns the paths and how many were left out over the per-folder limit."""
    extensions = _image_extensions()
    result: list[str] = []
    left_out = 0
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
            left_out += max(0, len(found) - MAX_IMAGES_PER_FOLDER)
            result.extend(found[:MAX_IMAGES_PER_FOLDER])
        else:
            result.append(str(path))
    return result, left_out


def _predict_chunk(predictor: Any, paths: Sequence[str], top_k: int) -> list[Any]:
    """Worker thread: the predictor is used by one job at a time (the queue runs one)."""
    return list(predictor.predict(list(paths), top_k=top_k))


def _runs_folder() -> str:
    """Where training writes run folders (a Load saved run… dialog starts there)."""
    from ..core.run_folder import runs_dir

    return str(runs_dir())


def _load_predictor(path: str, checkpoint: str) -> Any:
    """Worker thread: read a run folder's chosen checkpoint (best or last) into a predictor."""
    from ..core.predict import Predictor

    return Predictor.from_run_dir(path, checkpoint=checkpoint)


#: The checkpoints of a run a user can choose between, as the combo boxes list them.
CHECKPOINT_CHOICES = (("best", "Best checkpoint"), ("last", "Last checkpoint"))


def checkpoint_text(kind: str, epoch: int | None) -> str:
    """How the views name a run's checkpoint: "best checkpoint, epoch 7"."""
    return f"{kind} checkpoint" + (f", epoch {epoch}" if epoch is not None else "")


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
        self._rows: list[PredictionRow] = []
        self._items: dict[str, QStandardItem] = {}
        self._top_k = 5
        self._loading_run: str | None = None
        self._loading_label = ""
        self._fallback_folder = ""
        self._run_folder: str | None = None  # the run whose checkpoint predicts, if any
        #: False where another view loads the chosen checkpoint and hands it over
        #: (the window's Evaluation tab); a choice is then only announced.
        self.loads_own_checkpoints = True

        self._jobs = JobQueue(self)
        self._loads = JobQueue(self)
        self._thumbnails = ThumbnailLoader(THUMBNAIL_SIDE, self)
        self._thumbnails.ready.connect(lambda _path: self._list.viewport().update())
        self._thumbnails.failed.connect(lambda _path, _reason: self._list.viewport().update())

        # Model line and actions.
        self.model_label = QLabel(self)
        self.model_label.setObjectName("predictionModelLabel")
        self.model_label.setTextFormat(Qt.TextFormat.RichText)
        self.checkpoint_combo = QComboBox(self)
        self.checkpoint_combo.setObjectName("predictionCheckpoint")
        for kind, text in CHECKPOINT_CHOICES:
            self.checkpoint_combo.addItem(text, kind)
        self.checkpoint_combo.setToolTip(
            "Predict with the run's best checkpoint (highest validation accuracy) or its "
            "last one; the Evaluation tab uses the same"
        )
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
        self._model = QStandardItemModel(self)
        self._list = ResultList(self)
        self._list.setObjectName("predictionList")
        self._list.setModel(self._model)
        self._delegate = PredictionDelegate(self, self._thumbnails)
        self._list.setItemDelegate(self._delegate)
        self._list.setUniformItemSizes(True)
        self._list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self._list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self._list.activated.connect(lambda index: self.explain_row(index.row()))
        self._list.selectionModel().currentChanged.connect(lambda *_: self._update_explain_button())
        self._list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self._list.customContextMenuRequested.connect(self._row_menu)

        # Sorting and filtering by label and confidence, with counts per predicted label.
        self.filter_bar = PredictionFilterBar(self)
        self.filter_bar.changed.connect(self._apply_view)
        self.filter_bar.save_requested.connect(self._choose_csv)
        self._added: dict[str, int] = {}  # path -> when it was added ("Order added")

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
        self._jobs.cancel_pending()
        self._predictor = predictor
        self.filter_bar.set_classes(list(getattr(predictor, "class_names", []) or []))
        self._source_label = source_label if predictor is not None else ""
        if not getattr(predictor, "checkpoint", ""):
            self._run_folder = None  # a model in memory: no checkpoint to choose
        self.checkpoint_combo.setEnabled(self._run_folder is not None)
        if self._explanation is not None:
            self._explanation.close()  # it shows the old model's classes
        muted = semantic_colour("muted", self.palette()).name()
        if predictor is None:
            self.model_label.setText(f'<span style="color:{muted}">Model:</span> none yet')
            self.model_label.setToolTip(NO_MODEL_TEXT)
            self._list.placeholder = NO_MODEL_TEXT + "\n\nYou can already drop images here."
        else:
            count = len(predictor.class_names)
            label = html.escape(str(source_label or "model"))
            self.model_label.setText(
                f'<span style="color:{muted}">Model:</span> <b>{label}</b>'
                f' <span style="color:{muted}">· {count} classes</span>'
            )
            self.model_label.setToolTip(getattr(predictor, "source", "") or source_label)
            self._list.placeholder = "Drop images or folders here, or use Choose images…"
            self.top_k_spin.setMaximum(max(1, min(MAX_TOP_K, count)))
        self.top_k_spin.setEnabled(predictor is not None)
        self._list.viewport().update()
        for row in self._rows:
            row.status = "waiting" if predictor is not None else "no-model"
            row.top = []
            row.error = None
        self._refresh_rows()
        if predictor is not None and self._rows:
            self._predict([row.path for row in self._rows])
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
        if not 0 <= row < len(self._rows) or self._predictor is None:
            return None
        entry = self._rows[row]
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
        new: list[str] = []
        for path in expanded:
            key = os.path.abspath(path)
            if key in self._items:
                continue
            row = PredictionRow(key, status="waiting" if self._predictor is not None else "no-model")
            item = QStandardItem()
            item.setData(row, ROW_ROLE)
            item.setData(key, Qt.ItemDataRole.DisplayRole)
            item.setToolTip(key)
            item.setEditable(False)
            self._rows.append(row)
            self._items[key] = item
            self._added[key] = len(self._added)
            self._model.appendRow(item)
            new.append(key)
        if new:
            self._list.scrollTo(self._model.indexFromItem(self._items[new[0]]))
            for path in new[:EAGER_THUMBNAILS]:
                self._thumbnails.request(path)
            if self._predictor is not None:
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
        return [PredictionRow(r.path, r.status, list(r.top), r.error) for r in self._rows]

    def clear(self) -> None:
        """Remove every image (predictions in progress are dropped)."""
        self._jobs.cancel_pending()
        self._thumbnails.clear()
        self._delegate.forget()
        self._rows.clear()
        self._items.clear()
        self._added.clear()
        self._model.clear()
        self._show_status("")
        self._update_progress()

    @property
    def run_folder(self) -> str | None:
        """The run whose checkpoint predicts (None for a model in memory or none)."""
        return self._run_folder

    def checkpoint(self) -> str:
        """The checkpoint chosen for runs: "best" or "last"."""
        return str(self.checkpoint_combo.currentData())

    def show_checkpoint(self, kind: str, run_folder: str | os.PathLike[str] | None = None) -> None:
        """Mirror a checkpoint chosen elsewhere (the Evaluation tab) without reloading."""
        index = self.checkpoint_combo.findData(kind)
        if index >= 0 and index != self.checkpoint_combo.currentIndex():
            self.checkpoint_combo.blockSignals(True)
            self.checkpoint_combo.setCurrentIndex(index)
            self.checkpoint_combo.blockSignals(False)
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
        if self.loads_own_checkpoints and self._run_folder is not None and not self._loads.busy:
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
        checkpoint = self.checkpoint()
        self._loads.cancel_pending()
        self._loading_run = folder
        self._loading_label = label or f"saved run: {Path(folder).name}"
        self.load_run_button.setEnabled(False)
        self._show_status(f"Loading the model of {folder}…")
        self.progress.setRange(0, 0)
        self.progress.show()
        self._loads.submit(
            _load_predictor,
            folder,
            checkpoint,
            on_result=lambda predictor, f=folder: self._on_run_loaded(f, predictor),
            on_error=lambda failure, f=folder: self._on_run_failed(f, failure),
        )

    def set_fallback_folder(self, folder: str | os.PathLike[str]) -> None:
        """Where Choose images… starts when no image has been chosen before (the
        dataset's folder: a first prediction is usually one of its images)."""
        self._fallback_folder = os.fspath(folder)

    def thumbnail_ready(self, path: str | os.PathLike[str]) -> bool:
        """True once the row's thumbnail has been read (or found unreadable)."""
        key = os.path.abspath(os.fspath(path))
        return self._thumbnails.image(key) is not None or self._thumbnails.error(key) is not None

    @property
    def busy(self) -> bool:
        """True while a model loads or images are being predicted."""
        return self._jobs.busy or self._loads.busy

    def status_text(self) -> str:
        return self.status_label.text()

    # ------------------------------------------------------------------ prediction

    def _predict(self, paths: list[str]) -> None:
        predictor = self._predictor
        want = max(1, min(MAX_TOP_K, len(predictor.class_names)))
        for start in range(0, len(paths), CHUNK_SIZE):
            chunk = paths[start : start + CHUNK_SIZE]
            self._jobs.submit(
                _predict_chunk,
                predictor,
                chunk,
                want,
                on_result=lambda results, p=predictor: self._on_predicted(p, results),
                on_error=lambda failure, p=predictor, c=chunk: self._on_predict_failed(p, c, failure),
            )
        self._update_progress()

    def _on_predicted(self, predictor: Any, results: list[Any]) -> None:
        if predictor is not self._predictor:
            return
        for prediction in results:
            item = self._items.get(os.path.abspath(prediction.path))
            if item is None:
                continue
            row: PredictionRow = item.data(ROW_ROLE)
            if prediction.error:
                row.status, row.error, row.top = (
                    "error",
                    _readable_error(prediction.path, prediction.error),
                    [],
                )
            else:
                row.status, row.error, row.top = "done", None, [(str(n), float(p)) for n, p in prediction.top]
            self._refresh_item(item, row)
        self._update_progress()

    def _on_predict_failed(self, predictor: Any, chunk: list[str], failure: JobFailure) -> None:
        if predictor is not self._predictor:
            return
        for path in chunk:
            item = self._items.get(path)
            if item is None:
                continue
            row: PredictionRow = item.data(ROW_ROLE)
            row.status, row.error, row.top = "error", f"Prediction failed: {failure}", []
            self._refresh_item(item, row)
        self._show_status(f"Prediction failed: {failure}", "error", details=failure.traceback)
        self._update_progress()

    # ------------------------------------------------------------------ run loading

    def _on_run_loaded(self, folder: str, predictor: Any) -> None:
        if folder != self._loading_run:
            return
        self._loading_run = None
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
        if folder != self._loading_run:
            return
        self._loading_run = None
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

    def _refresh_rows(self) -> None:
        for row in self._rows:
            item = self._items.get(row.path)
            if item is not None:
                self._refresh_item(item, row)

    def _refresh_item(self, item: QStandardItem, row: PredictionRow) -> None:
        if row.status == "done" and row.top:
            lines = "\n".join(f"{name}: {format_probability(p)}" for name, p in row.top[: self._top_k])
            item.setToolTip(f"{row.path}\n{lines}")
        elif row.status == "error":
            item.setToolTip(f"{row.path}\n{row.error}")
        else:
            item.setToolTip(row.path)
        item.setData(row, ROW_ROLE)  # tells the view to repaint the row

    def _update_explain_button(self) -> None:
        row = self._list.currentIndex().row()
        ready = 0 <= row < len(self._rows) and self._rows[row].status == "done"
        self.explain_button.setEnabled(self._predictor is not None and ready)

    def _row_menu(self, position) -> None:
        from PySide6.QtWidgets import QMenu

        index = self._list.indexAt(position)
        if not index.isValid():
            return
        menu = QMenu(self)
        action = menu.addAction("Show where the model looked")
        row = self._rows[index.row()]
        action.setEnabled(self._predictor is not None and row.status == "done")
        action.triggered.connect(lambda: self.explain_row(index.row()))
        menu.exec(self._list.viewport().mapToGlobal(position))

    def _set_top_k(self, value: int) -> None:
        self._top_k = int(value)
        self._list.doItemsLayout()
        self._refresh_rows()

    def _apply_view(self) -> None:
        """Order and show the rows as the filter bar says; the summary counts them all."""
        bar = self.filter_bar
        wanted = sorted(self._rows, key=sort_key(bar.sort(), self._added))
        if [r.path for r in wanted] != [r.path for r in self._rows]:
            current = self._list.currentIndex()
            keep = self._rows[current.row()].path if current.isValid() else None
            items = [self._model.takeRow(0)[0] for _ in range(self._model.rowCount())]
            by_path = {item.data(Qt.ItemDataRole.DisplayRole): item for item in items}
            self._rows = wanted
            for row in wanted:
                self._model.appendRow(by_path[row.path])
            if keep is not None:
                self._list.setCurrentIndex(self._model.indexFromItem(self._items[keep]))
        shown = 0
        for index, row in enumerate(self._rows):
            visible = row_visible(row, bar.label(), bar.min_confidence())
            self._list.setRowHidden(index, not visible)
            shown += visible
        bar.summary_label.setText(summary_text(self._rows, shown))
        bar.save_button.setEnabled(any(r.status in ("done", "error") for r in self._rows))

    def save_csv(self, path: str | os.PathLike[str]) -> int:
        """Write the rows shown (filtered, in the order shown) as a prediction table;
        returns how many rows were written. Raises UserError when it cannot be written."""
        from ..core.predict import write_predictions_csv

        rows = [r for r in self.shown_rows() if r.status in ("done", "error")]
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
        return [r for i, r in enumerate(self.rows()) if not self._list.isRowHidden(i)]

    def _update_progress(self) -> None:
        self._apply_view()
        self.clear_button.setEnabled(bool(self._rows))
        self._update_explain_button()
        if self._loading_run is not None:
            return
        total = len(self._rows)
        done = sum(1 for r in self._rows if r.status in ("done", "error"))
        waiting = self._predictor is not None and done < total
        if waiting:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress.show()
            self._show_status(f"Predicting… {done} of {total} images")
        else:
            self.progress.hide()
            if self.status_label.property("kind") in ("", "info"):
                failed = sum(1 for r in self._rows if r.status == "error")
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
        rows = sorted({index.row() for index in self._list.selectionModel().selectedIndexes()}, reverse=True)
        for r in rows:
            row = self._rows.pop(r)
            self._items.pop(row.path, None)
            self._added.pop(row.path, None)
            self._model.removeRow(r)
        self._update_progress()

    def _start_folder(self, kind: str, fallback: str = "") -> str:
        remembered = getattr(self._settings, kind, "") if self._settings is not None else ""
        for folder in (remembered, fallback):
            if folder and Path(folder).is_dir():
                return folder
        return ""

    def _choose_images(self) -> None:
        extensions = " ".join(f"*{ext}" for ext in _image_extensions())
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
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()
            self._list.drop_active = True
            self._list.viewport().update()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:  # noqa: N802 - Qt override
        self._list.drop_active = False
        self._list.viewport().update()
        super().dragLeaveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        self._list.drop_active = False
        self._list.viewport().update()
        paths = _local_paths(event.mimeData())
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


def _local_paths(mime) -> list[str]:
    if mime is None or not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile()]


def _readable_error(path: str, error: str) -> str:
    """The reason alone when the message repeats the path the row already shows."""
    for prefix in (f"cannot read image {path}: ", f"cannot read {path}: "):
        if error.startswith(prefix):
            reason = error[len(prefix) :]
            return f"Cannot read this image: {reason}"
    return error
