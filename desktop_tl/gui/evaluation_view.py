"""How the trained model does on the validation images.

A confusion matrix heat map (rows: true class, columns: predicted class; counts or row
shares), a per-class table of precision, recall, support and F1 with the macro and
weighted averages and top-k accuracy, and a gallery of the misclassified validation
images. Clicking a matrix cell or a class in the table narrows the gallery to those
mistakes; clicking an image enlarges it.

A saved run is evaluated with the checkpoint the user chooses (best or last, one control
in the header): :meth:`EvaluationView.show_run` loads that checkpoint and scores the run's
validation split off the GUI thread, says which checkpoint and epoch the numbers are from,
and hands the same model on (:attr:`EvaluationView.model_ready`) so that predictions and
the gallery's heat maps use it too.

The view arranges and connects the parts, each in its own module: the matrix
(confusion_matrix), the table (class_table) and the gallery with its preview
(image_gallery).
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from shiboken6 import isValid
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QFont, QPalette, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListView,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from .background import LatestRequest, run_in_background
from .class_table import PerClassTable
from .confusion_matrix import ConfusionMatrixWidget
from .icons import semantic_colour
from .image_gallery import (
    ENTRY_ROLE,
    THUMBNAIL_SIDE,
    GalleryDelegate,
    GalleryView,
    ImagePreviewDialog,
    misclassified_label,
)
from .prediction_view import CHECKPOINT_CHOICES, checkpoint_text
from .thumbnails import ThumbnailLoader

#: Qt's "no maximum size" (QWIDGETSIZE_MAX).
QWIDGETSIZE_MAX = (1 << 24) - 1

EMPTY_TEXT = "Train a model to see how it does on the validation images"

#: Most misclassified images listed at once (the most confident mistakes first).
MAX_GALLERY_ITEMS = 500


@dataclass(frozen=True)
class CheckpointEvaluation:
    """A run's validation split scored with one of its checkpoints."""

    run_dir: str
    checkpoint: str  # "best" or "last"
    predictor: Any
    report: Any  # core.reports.EvaluationReport
    detailed: Any  # core.metrics.DetailedMetrics
    probabilities: dict[str, list[float]]  # per scored image, in class order
    missing: int  # validation images listed in split.json that no longer exist
    problem: str = ""  # why the checkpoint loaded but could not be scored (report is None)

    @property
    def epoch(self) -> int | None:
        return self.predictor.epoch


def evaluate_checkpoint(run_dir: str, checkpoint: str) -> CheckpointEvaluation:
    """Worker thread: load ``checkpoint`` of ``run_dir`` and score the run's validation
    images (its split.json) with it. A checkpoint that cannot be loaded raises a UserError
    that says why; one that loads but cannot be scored (images gone) comes back with its
    ``problem``, since predicting does not need the dataset."""
    from ..core.predict import Predictor
    from ..errors import UserError

    predictor = Predictor.from_run_dir(run_dir, checkpoint=checkpoint)
    try:
        return _score_validation(run_dir, predictor, checkpoint)
    except UserError as exc:
        return CheckpointEvaluation(
            run_dir, predictor.checkpoint or checkpoint, predictor, None, None, {}, 0, problem=str(exc)
        )


def _score_validation(run_dir: str, predictor: Any, checkpoint: str) -> CheckpointEvaluation:
    from ..core.data import PreparedData
    from ..core.metrics import detailed_metrics
    from ..core.run_folder import SPLIT_FILE
    from ..errors import UserError

    split = Path(run_dir) / SPLIT_FILE
    if not split.exists():
        raise UserError(
            f"{Path(run_dir).name} has no {SPLIT_FILE}, so its validation images are "
            "not known; train the run again to evaluate it"
        )
    prepared = PreparedData.load_manifest(split)
    if list(prepared.class_names) != list(predictor.class_names):
        raise UserError(
            f"the classes in {SPLIT_FILE} differ from the checkpoint's; the run folder "
            "was changed after training"
        )
    items = list(prepared.val)
    if not items:
        raise UserError(f"{Path(run_dir).name} has no validation images in {SPLIT_FILE}")
    present = [item for item in items if os.path.exists(item[0])]
    if not present:
        raise UserError(
            f"none of the {len(items)} validation images of this run exist any more "
            f"(e.g. {items[0][0]}); put the dataset back in {prepared.root} to evaluate it"
        )
    scored = predictor.evaluate_with_probabilities(present)
    if scored.report is None:
        raise UserError("none of the run's validation images could be read")
    detailed = detailed_metrics(scored.report.confusion, scored.probabilities, scored.targets)
    probabilities = {
        os.path.abspath(path): row.tolist() for path, row in zip(scored.paths, scored.probabilities)
    }
    return CheckpointEvaluation(
        run_dir,
        predictor.checkpoint or checkpoint,
        predictor,
        scored.report,
        detailed,
        probabilities,
        len(items) - len(present),
    )


# =========================================================================== the view


class EvaluationView(QWidget):
    """Confusion matrix, per-class precision/recall/support/F1 and misclassified images."""

    #: A run's checkpoint was evaluated: its predictor and a label naming run, checkpoint
    #: and epoch (for the Prediction tab, which predicts with the same model).
    model_ready = Signal(object, str)
    #: The chosen checkpoint of a run could not be evaluated (run folder, why).
    model_failed = Signal(str, str)
    #: The user chose the best or the last checkpoint ("best"/"last").
    checkpoint_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._run_dir: str | None = None
        self._run_name = ""
        self._evaluation: CheckpointEvaluation | None = None
        self._detailed: Any = None
        self._requests = LatestRequest()
        self._task: Any = None
        self._class_names: list[str] = []
        self._confusion: list[list[int]] = []
        self._misclassified: list[dict[str, Any]] = []
        self._filter: tuple[str | None, str | None] = (None, None)
        self._preview: ImagePreviewDialog | None = None
        self._explanation_model: tuple[Any, str] = (None, "")  # for the preview's heat maps

        self._stack = QStackedWidget(self)
        self._stack.addWidget(self._build_empty_page())
        self._stack.addWidget(self._build_results_page())
        self._stack.addWidget(self._build_message_page())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._build_checkpoint_bar())
        layout.addWidget(self._stack)
        self.clear()

    # ------------------------------------------------------------------ checkpoints

    def _build_checkpoint_bar(self) -> QWidget:
        bar = QWidget(self)
        self._checkpoint_bar = bar
        self.checkpoint_label = QLabel(bar)
        self.checkpoint_label.setObjectName("evaluationCheckpoint")
        self.checkpoint_label.setTextFormat(Qt.TextFormat.RichText)
        self.checkpoint_label.setWordWrap(True)
        self.checkpoint_combo = QComboBox(bar)
        self.checkpoint_combo.setObjectName("evaluationCheckpointChoice")
        for kind, text in CHECKPOINT_CHOICES:
            self.checkpoint_combo.addItem(text, kind)
        self.checkpoint_combo.setToolTip(
            "Evaluate the run with its best checkpoint (highest validation accuracy) or its "
            "last one; the Prediction tab uses the same"
        )
        self.checkpoint_combo.currentIndexChanged.connect(self._on_checkpoint_chosen)
        layout = QHBoxLayout(bar)
        layout.setContentsMargins(8, 6, 8, 0)
        layout.addWidget(self.checkpoint_label, 1)
        layout.addWidget(QLabel("Model:", bar))
        layout.addWidget(self.checkpoint_combo)
        bar.hide()
        return bar

    def _build_message_page(self) -> QWidget:
        page = QWidget(self)
        self.message_label = QLabel(page)
        self.message_label.setObjectName("evaluationMessage")
        self.message_label.setWordWrap(True)
        self.message_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(page)
        layout.setContentsMargins(80, 20, 80, 20)  # an alignment flag would cut wrapped lines
        layout.addStretch(2)
        layout.addWidget(self.message_label)
        layout.addStretch(3)
        return page

    def checkpoint(self) -> str:
        """The checkpoint chosen for runs: "best" (the default) or "last"."""
        return str(self.checkpoint_combo.currentData())

    def set_checkpoint(self, kind: str) -> None:
        """Choose the best or the last checkpoint; the run shown is evaluated again."""
        index = self.checkpoint_combo.findData(kind)
        if index < 0:
            raise ValueError(f"checkpoint must be 'best' or 'last', not {kind!r}")
        if index != self.checkpoint_combo.currentIndex():
            self.checkpoint_combo.setCurrentIndex(index)  # -> _on_checkpoint_chosen

    def _on_checkpoint_chosen(self, _index: int) -> None:
        self.checkpoint_changed.emit(self.checkpoint())
        if self._run_dir is not None:
            self.show_run(self._run_dir, name=self._run_name)

    def show_run(
        self, run_dir: str | os.PathLike[str], *, name: str = "", checkpoint: str | None = None
    ) -> None:
        """Evaluate the saved run in ``run_dir`` with the chosen checkpoint (or
        ``checkpoint``) off the GUI thread; the results, or why there are none, follow."""
        if checkpoint is not None and checkpoint != self.checkpoint():
            self.checkpoint_combo.blockSignals(True)  # the run to evaluate is this one
            self.set_checkpoint(checkpoint)
            self.checkpoint_combo.blockSignals(False)
            self.checkpoint_changed.emit(checkpoint)
        folder = os.path.abspath(os.fspath(run_dir))
        kind = self.checkpoint()
        current = self._evaluation
        if (
            self._run_dir == folder
            and current is not None
            and current.checkpoint == kind
            and self._stack.currentIndex() == 1
        ) or (self._run_dir == folder and self.busy and self._pending == kind):
            return  # already on screen (or on its way)
        self._run_name = name or (self._run_name if folder == self._run_dir else Path(folder).name)
        self._run_dir = folder
        self._pending = kind
        self._checkpoint_bar.show()
        self.checkpoint_label.setText(
            f"Evaluating <b>{html.escape(self._run_name)}</b> with its {kind} checkpoint…"
        )
        ticket = self._requests.begin()
        self._task = run_in_background(
            lambda _task, f=folder, k=kind: evaluate_checkpoint(f, k),
            on_result=ticket.only_current(self._on_evaluated),
            on_error=ticket.only_current(lambda exc, _tb, k=kind: self._on_evaluation_failed(k, exc)),
            name="evaluate checkpoint",
        )

    @property
    def busy(self) -> bool:
        """True while a checkpoint is being evaluated."""
        task = self._task
        return task is not None and not task.wait(0)

    @property
    def run_dir(self) -> str | None:
        """The saved run shown (or being evaluated); None for results of no saved run."""
        return self._run_dir

    @property
    def evaluation(self) -> CheckpointEvaluation | None:
        """The checkpoint evaluation on screen (None for live or summary results)."""
        return self._evaluation

    def detailed_metrics(self) -> Any:
        """F1, the averages and top-k of the results shown (core.metrics.DetailedMetrics)."""
        return self._detailed

    @property
    def explanation_model(self) -> Any:
        """The predictor whose heat maps the gallery's enlarged view shows (or None)."""
        return self._explanation_model[0]

    def _on_evaluated(self, result: CheckpointEvaluation) -> None:
        if not isValid(self) or not isValid(self.matrix):
            return  # the window closed while the checkpoint was being scored
        self._task = None
        self._pending = None
        report = result.report
        label = f"{self._run_name} · {checkpoint_text(result.checkpoint, result.epoch)}"
        if report is None:
            self._evaluation = None
            self._show_message(
                f"Cannot evaluate {self._run_name} with its "
                f"{checkpoint_text(result.checkpoint, result.epoch)}: {result.problem}",
                f"<b>{html.escape(self._run_name)}</b>: no evaluation for its "
                f"{html.escape(checkpoint_text(result.checkpoint, result.epoch))}",
            )
            self.model_ready.emit(result.predictor, label)  # predicting needs no dataset
            return
        missing = (
            f"; {result.missing} validation image{'s' if result.missing != 1 else ''} no longer exist"
            if result.missing
            else ""
        )
        self._show(
            list(result.predictor.class_names),
            report.confusion,
            report.precision,
            report.recall,
            report.misclassified_dicts(),
            caption=label + missing,
            detailed=result.detailed,
        )
        self._evaluation = result
        muted = semantic_colour("muted", self.palette()).name()
        self.checkpoint_label.setText(
            f'<span style="color:{muted}">Evaluated with the</span> '
            f"<b>{html.escape(checkpoint_text(result.checkpoint, result.epoch))}</b> "
            f'<span style="color:{muted}">of {html.escape(self._run_name)}</span>'
        )
        self.set_explanation_model(result.predictor, label)
        self.model_ready.emit(result.predictor, label)

    def _on_evaluation_failed(self, kind: str, exc: BaseException) -> None:
        from ..errors import UserError

        if not isValid(self) or not isValid(self.matrix):
            return  # the window closed while the checkpoint was being scored
        self._task = None
        self._pending = None
        self._evaluation = None
        reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        text = f"Cannot evaluate {self._run_name} with its {kind} checkpoint: {reason}"
        self._show_message(
            text, f"<b>{html.escape(self._run_name)}</b>: no results for its {kind} checkpoint"
        )
        self.model_failed.emit(self._run_dir or "", text)

    def _show_message(self, text: str, header: str) -> None:
        """A message in place of results; the checkpoint choice stays to try the other."""
        self.checkpoint_label.setText(header)
        self.message_label.setText(text)
        self.set_explanation_model(None, "")
        if self._preview is not None:
            self._preview.close()
        self._stack.setCurrentIndex(2)

    def checkpoint_text(self) -> str:
        """The header line naming the checkpoint shown, as plain text."""
        from PySide6.QtGui import QTextDocument

        document = QTextDocument()
        document.setHtml(self.checkpoint_label.text())
        return document.toPlainText()

    def message_text(self) -> str:
        """What the view says in place of results ("" when results are shown)."""
        return self.message_label.text() if self._stack.currentIndex() == 2 else ""

    # ------------------------------------------------------------------ public API

    def set_results(
        self,
        class_names: list[str],
        confusion: list[list[int]],
        precision: list[float],
        recall: list[float],
        misclassified: list[dict],
        *,
        caption: str = "",
    ) -> None:
        """Show the results of one evaluation on the validation images.

        ``confusion[i][j]`` counts images of true class ``i`` predicted as ``j``;
        ``misclassified`` items are ``{"path", "true", "pred", "prob"}`` with class names
        (or indices) and the predicted class's probability. ``caption`` says where the
        numbers come from (e.g. "best epoch 7 of 10").
        Results given here are not a saved run's checkpoint: the checkpoint choice is hidden.
        """
        self._forget_run()
        self._show(class_names, confusion, precision, recall, misclassified, caption=caption)
        self.set_explanation_model(None, "")  # heat maps come with a saved checkpoint

    def _forget_run(self) -> None:
        self._requests.drop()
        self._task = None
        self._pending = None
        self._run_dir = None
        self._evaluation = None
        self._checkpoint_bar.hide()

    def _show(
        self,
        class_names: list[str],
        confusion: list[list[int]],
        precision: list[float],
        recall: list[float],
        misclassified: list[dict],
        *,
        caption: str = "",
        detailed: Any = None,
    ) -> None:
        names = [str(n) for n in class_names]
        n = len(names)
        if len(confusion) != n or any(len(row) != n for row in confusion):
            raise ValueError(f"confusion must be {n}x{n} for {n} classes")
        if not precision or not recall:
            # Not reported: derive them from the matrix (the same definitions the engine uses).
            precision, recall = _rates_from_confusion(confusion)
        if len(precision) != n or len(recall) != n:
            raise ValueError(f"precision and recall need one value per class ({n})")
        self._class_names = names
        self._confusion = [[int(v) for v in row] for row in confusion]
        self._misclassified = sorted(
            (self._normalise_entry(e) for e in misclassified), key=lambda e: -float(e["prob"])
        )
        self._filter = (None, None)
        # Keep decoded thumbnails: results arrive every epoch and mostly name the same files.
        self._thumbnails.cancel_pending()
        self._gallery_delegate.forget()

        if detailed is None:
            detailed = _detailed_from_confusion(self._confusion)
        self._detailed = detailed
        self.matrix.set_matrix(names, self._confusion)
        self.table.fill(names, self._confusion, precision, recall, detailed.f1)
        self._update_averages(detailed)
        self._update_summary(caption)
        self._fill_gallery()
        self._stack.setCurrentIndex(1)
        self._fit_gallery()

    def gallery_is_compact(self) -> bool:
        """True while the gallery is only a line saying why it lists nothing."""
        return self._gallery_box.maximumHeight() < QWIDGETSIZE_MAX

    def _fit_gallery(self) -> None:
        """With no misclassified image to list, the gallery shrinks to its title and
        message, and the matrix and table take the room; with images it takes about
        two fifths of the height. A height limit rather than splitter sizes, which a
        tab that has never been shown would not keep."""
        if not self._misclassified:
            line = self.gallery.fontMetrics().height()
            height = self._gallery_header_height() + 3 * line + 2 * self.gallery.frameWidth()
            self._gallery_box.setMaximumHeight(height)
            self.gallery.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        else:
            was_compact = self.gallery_is_compact()
            self._gallery_box.setMaximumHeight(QWIDGETSIZE_MAX)
            self.gallery.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
            if was_compact:
                total = sum(self._split.sizes())
                if total > 0:
                    gallery = max(220, total * 2 // 5)
                    self._split.setSizes([max(1, total - gallery), gallery])

    def _gallery_header_height(self) -> int:
        return max(self.gallery_title.sizeHint().height(), self.show_all_button.sizeHint().height()) + 4

    def clear(self) -> None:
        """Back to the empty state (no results yet)."""
        self._forget_run()
        self._detailed = None
        self._class_names = []
        self._confusion = []
        self._misclassified = []
        self._filter = (None, None)
        self._thumbnails.clear()
        self._gallery_delegate.forget()
        self.matrix.clear()
        self.table.setRowCount(0)
        self._gallery_model.clear()
        if self._preview is not None:
            self._preview.close()
        self._stack.setCurrentIndex(0)

    def has_results(self) -> bool:
        return self._stack.currentIndex() == 1

    def gallery_labels(self) -> list[str]:
        """The labels of the images the gallery lists now, in order."""
        return [
            self._gallery_model.item(row).data(Qt.ItemDataRole.DisplayRole)
            for row in range(self._gallery_model.rowCount())
        ]

    def set_gallery_filter(self, true_name: str | None, pred_name: str | None) -> None:
        """Show only mistakes of ``true_name`` (any prediction when ``pred_name`` is None);
        ``(None, None)`` shows all."""
        self._filter = (true_name, pred_name)
        if true_name is not None and pred_name is not None and true_name != pred_name:
            i, j = self._class_names.index(true_name), self._class_names.index(pred_name)
            self.matrix.set_selected((i, j))
        else:
            self.matrix.set_selected(None)
        self._fill_gallery()

    def set_explanation_model(self, predictor: Any, label: str = "") -> None:
        """The model whose heat maps the enlarged view shows (None: none yet)."""
        self._explanation_model = (predictor, label)
        if self._preview is not None:
            self._preview.set_predictor(predictor, label)

    def open_preview(self, row: int) -> ImagePreviewDialog:
        """Enlarge the gallery's image at ``row`` (what a click does)."""
        if self._preview is None:
            self._preview = ImagePreviewDialog(self)
            self._preview.set_predictor(*self._explanation_model)
        entries = [
            self._gallery_model.item(r).data(ENTRY_ROLE) for r in range(self._gallery_model.rowCount())
        ]
        self._preview.show_entries(entries, row)
        self._preview.show()
        self._preview.raise_()
        return self._preview

    @property
    def thumbnails(self) -> ThumbnailLoader:
        return self._thumbnails

    # ------------------------------------------------------------------ construction

    def _build_empty_page(self) -> QWidget:
        page = QWidget(self)
        title = QLabel(EMPTY_TEXT, page)
        title.setObjectName("evaluationEmptyText")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        title.setWordWrap(True)
        font = QFont(title.font())
        font.setPointSizeF(font.pointSizeF() * 1.35)
        title.setFont(font)
        hint = QLabel(
            "After training, this tab shows which classes the model confuses, its precision "
            "and recall per class, and the validation images it got wrong.",
            page,
        )
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setWordWrap(True)
        hint.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        hint.setMaximumWidth(560)
        layout = QVBoxLayout(page)
        layout.addStretch(2)
        layout.addWidget(title)
        layout.addSpacing(8)
        # Centred by stretches, not by an alignment flag: an aligned item gets its one-line
        # size hint and the wrapped text would be cut to a single line.
        hint_row = QHBoxLayout()
        hint_row.addStretch(1)
        hint_row.addWidget(hint, 4)
        hint_row.addStretch(1)
        layout.addLayout(hint_row)
        layout.addStretch(3)
        layout.setContentsMargins(40, 20, 40, 20)
        return page

    def _build_results_page(self) -> QWidget:
        page = QWidget(self)
        self.summary_label = QLabel(page)
        self.summary_label.setObjectName("evaluationSummary")
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextFormat(Qt.TextFormat.RichText)

        # Confusion matrix.
        self.matrix = ConfusionMatrixWidget()
        self.matrix.cell_clicked.connect(self._on_cell_clicked)
        matrix_scroll = QScrollArea(page)
        matrix_scroll.setWidgetResizable(True)
        matrix_scroll.setFrameShape(QFrame.Shape.NoFrame)
        matrix_scroll.setWidget(self.matrix)
        self.normalise_check = QCheckBox("Row shares", page)
        self.normalise_check.setObjectName("confusionNormalise")
        self.normalise_check.setToolTip(
            "Show each cell as its share of the true class (each row sums to 100%) instead of counts"
        )
        self.normalise_check.toggled.connect(self.matrix.set_normalised)
        matrix_box = _titled("Confusion matrix", matrix_scroll, page, self.normalise_check)

        # Per-class table.
        self.table = PerClassTable(page)
        self.table.class_chosen.connect(lambda name: self.set_gallery_filter(name, None))
        self.averages_label = QLabel(page)
        self.averages_label.setObjectName("evaluationAverages")
        self.averages_label.setTextFormat(Qt.TextFormat.RichText)
        self.averages_label.setWordWrap(True)
        self.averages_label.setToolTip(
            "Macro: every class counts the same. Weighted: each class counts by its number of "
            "validation images. Top-k: the true class is among the k most likely."
        )
        table_area = QWidget(page)
        table_layout = QVBoxLayout(table_area)
        table_layout.setContentsMargins(0, 0, 0, 0)
        table_layout.addWidget(self.table, 1)
        table_layout.addWidget(self.averages_label)
        table_box = _titled("Precision, recall and F1 per class", table_area, page)

        top = QSplitter(Qt.Orientation.Horizontal, page)
        top.addWidget(matrix_box)
        top.addWidget(table_box)
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 2)
        top.setChildrenCollapsible(False)

        # Misclassified gallery.
        self._thumbnails = ThumbnailLoader(THUMBNAIL_SIDE, self)
        self._thumbnails.ready.connect(lambda _path: self.gallery.viewport().update())
        self._thumbnails.failed.connect(self._on_thumbnail_failed)
        self._gallery_model = QStandardItemModel(self)
        self.gallery = GalleryView(page)
        self.gallery.setObjectName("misclassifiedGallery")
        self.gallery.setModel(self._gallery_model)
        self._gallery_delegate = GalleryDelegate(self._thumbnails, self.gallery)
        self.gallery.setItemDelegate(self._gallery_delegate)
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setUniformItemSizes(True)
        self.gallery.setSpacing(4)
        self.gallery.setWrapping(True)
        self.gallery.setMouseTracking(True)
        self.gallery.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.gallery.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.gallery.clicked.connect(lambda index: self.open_preview(index.row()))
        self.gallery.activated.connect(lambda index: self.open_preview(index.row()))

        self.gallery_title = QLabel(page)
        title_font = QFont(self.gallery_title.font())
        title_font.setBold(True)
        self.gallery_title.setFont(title_font)
        self.filter_label = QLabel(page)
        self.show_all_button = QPushButton("Show all", page)
        self.show_all_button.setToolTip("Show every misclassified image again")
        self.show_all_button.clicked.connect(lambda: self.set_gallery_filter(None, None))
        gallery_header = QHBoxLayout()
        gallery_header.setContentsMargins(0, 0, 0, 0)
        gallery_header.addWidget(self.gallery_title)
        gallery_header.addSpacing(12)
        gallery_header.addWidget(self.filter_label, 1)
        gallery_header.addWidget(self.show_all_button)
        gallery_box = QWidget(page)
        self._gallery_box = gallery_box
        gallery_layout = QVBoxLayout(gallery_box)
        gallery_layout.setContentsMargins(0, 4, 0, 0)
        gallery_layout.addLayout(gallery_header)
        gallery_layout.addWidget(self.gallery, 1)

        split = QSplitter(Qt.Orientation.Vertical, page)
        split.addWidget(top)
        split.addWidget(gallery_box)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setChildrenCollapsible(False)
        self._split = split

        layout = QVBoxLayout(page)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.summary_label)
        layout.addWidget(split, 1)
        return page

    # ------------------------------------------------------------------ filling

    def _normalise_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        def name(value: Any) -> str:
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(self._class_names):
                return self._class_names[value]
            return str(value)

        return {
            "path": os.fspath(entry["path"]),
            "true": name(entry["true"]),
            "pred": name(entry["pred"]),
            "prob": float(entry.get("prob", float("nan"))),
        }

    def _update_summary(self, caption: str) -> None:
        total = sum(sum(row) for row in self._confusion)
        correct = sum(self._confusion[i][i] for i in range(len(self._confusion)))
        wrong = total - correct
        if total == 0:
            text = "No validation images were evaluated."
        else:
            accuracy = correct / total
            text = (
                f"Accuracy <b>{accuracy:.1%}</b> on {total} validation image{'s' if total != 1 else ''}"
                f" &nbsp;·&nbsp; {wrong} misclassified"
            )
            weakest = self._weakest_class()
            if weakest and wrong:
                text += f" &nbsp;·&nbsp; hardest class: <b>{html.escape(str(weakest[0]))}</b> (recall {weakest[1]:.0%})"
        if caption:
            text += f' &nbsp;<span style="color:{semantic_colour("muted", self.palette()).name()}">({html.escape(str(caption))})</span>'
        self.summary_label.setText(text)

    def _update_averages(self, detailed: Any) -> None:
        def rates(name: str, r: Any) -> str:
            return f"<b>{name}</b> precision {r.precision:.1%} · recall {r.recall:.1%} · F1 {r.f1:.1%}"

        lines = [rates("Macro average:", detailed.macro), rates("Weighted average:", detailed.weighted)]
        if detailed.top_k:
            lines.append(
                " · ".join(f"<b>Top-{k} accuracy</b> {v:.1%}" for k, v in sorted(detailed.top_k.items()))
            )
        self.averages_label.setText("<br>".join(lines))

    def _weakest_class(self) -> tuple[str, float] | None:
        best: tuple[str, float] | None = None
        for i, name in enumerate(self._class_names):
            total = sum(self._confusion[i])
            if total:
                recall = self._confusion[i][i] / total
                if best is None or recall < best[1]:
                    best = (name, recall)
        return best

    def _fill_gallery(self) -> None:
        true_name, pred_name = self._filter
        entries = [
            e
            for e in self._misclassified
            if (true_name is None or e["true"] == true_name) and (pred_name is None or e["pred"] == pred_name)
        ]
        shown = entries[:MAX_GALLERY_ITEMS]
        metrics = self.gallery.fontMetrics()
        self._gallery_delegate.text_width = max(
            (metrics.horizontalAdvance(f"predicted: {e['pred']} (p=0.00)") for e in shown), default=0
        )
        self._thumbnails.cancel_pending()
        self._gallery_model.clear()
        for entry in shown:
            item = QStandardItem()
            label = misclassified_label(entry)
            item.setData(label, Qt.ItemDataRole.DisplayRole)
            item.setData(entry, ENTRY_ROLE)
            item.setToolTip(f"{label}\n{os.path.normpath(entry['path'])}\nClick to enlarge")
            item.setEditable(False)
            self._gallery_model.appendRow(item)

        total = len(self._misclassified)
        self.gallery_title.setText(f"Misclassified validation images ({total})")
        filtered = true_name is not None or pred_name is not None
        if filtered:
            what = f"true <b>{html.escape(str(true_name or 'any'))}</b>"
            if pred_name is not None:
                what += f", predicted <b>{html.escape(str(pred_name))}</b>"
            self.filter_label.setText(f"Showing {what}: {len(entries)}")
        elif len(entries) > len(shown):
            self.filter_label.setText(f"Showing the {len(shown)} most confident mistakes")
        else:
            self.filter_label.setText(
                "Most confident mistakes first · click an image to enlarge" if shown else ""
            )
        self.show_all_button.setVisible(filtered)
        matrix_wrong = sum(sum(row) for row in self._confusion) - sum(
            self._confusion[i][i] for i in range(len(self._confusion))
        )
        if total == 0 and matrix_wrong:
            # Per-epoch results carry the counts only; the engine lists the images at the end.
            self.gallery.placeholder = "The misclassified images are listed here when training finishes."
        elif total == 0:
            self.gallery.placeholder = "No validation image was misclassified."
        else:
            self.gallery.placeholder = "No mistakes of this kind."
        self.gallery.viewport().update()

    # ------------------------------------------------------------------ reactions

    def _on_cell_clicked(self, row: int, col: int) -> None:
        if row == col:
            self.set_gallery_filter(self._class_names[row], None)
        else:
            self.set_gallery_filter(self._class_names[row], self._class_names[col])

    def _on_thumbnail_failed(self, path: str, reason: str) -> None:
        for row in range(self._gallery_model.rowCount()):
            item = self._gallery_model.item(row)
            entry = item.data(ENTRY_ROLE)
            if entry and entry["path"] == path:
                item.setToolTip(
                    f"{misclassified_label(entry)}\n{os.path.normpath(path)}\nCannot show this image: {reason}"
                )
        self.gallery.viewport().update()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and hasattr(self, "gallery"):
            self.gallery.viewport().update()


# =========================================================================== helpers


def _titled(title: str, content: QWidget, parent: QWidget, extra: QWidget | None = None) -> QWidget:
    box = QWidget(parent)
    label = QLabel(title, box)
    font = QFont(label.font())
    font.setBold(True)
    label.setFont(font)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 4, 0, 0)
    if extra is None:
        layout.addWidget(label)
    else:
        header = QHBoxLayout()
        header.addWidget(label, 1)
        header.addWidget(extra)
        layout.addLayout(header)
    layout.addWidget(content, 1)
    return box


def _detailed_from_confusion(confusion: Sequence[Sequence[int]]) -> Any:
    """F1 and the averages of results that came as a matrix only (per-epoch results,
    run summaries); top-k needs the probabilities, so it is left out."""
    from ..core.metrics import detailed_metrics

    return detailed_metrics([list(row) for row in confusion])


def _rates_from_confusion(confusion: Sequence[Sequence[int]]) -> tuple[list[float], list[float]]:
    """Precision and recall per class, by the engine's own definitions (core.metrics).
    Only for results that did not carry them (summaries of older runs); torch is loaded
    by the time any result can arrive."""
    import torch

    from ..core.metrics import classification_report

    n = len(confusion)
    cells = torch.repeat_interleave(torch.arange(n * n), torch.tensor(confusion, dtype=torch.int64).flatten())
    report = classification_report(cells // n, cells % n, n)
    return report.precision, report.recall
