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
(confusion_matrix), the table (class_table), the gallery with its preview
(image_gallery), the headline and averages (evaluation_summary), and the header that
chooses and scores a saved run's checkpoint (checkpoint_evaluation).
"""

from __future__ import annotations

import html
import os
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from .checkpoint_choice import checkpoint_text
from .checkpoint_evaluation import CheckpointEvaluation, CheckpointSource
from .class_table import PerClassTable
from .confusion_matrix import ConfusionMatrixWidget
from .evaluation_summary import averages_html, detailed_from_confusion, rates_from_confusion, summary_html
from .icons import semantic_colour
from .image_gallery import ImagePreviewDialog, MisclassifiedGallery
from .thumbnails import ThumbnailLoader

EMPTY_TEXT = "Train a model to see how it does on the validation images"


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
        self._detailed: Any = None
        self._class_names: list[str] = []
        self._confusion: list[list[int]] = []
        self._misclassified: list[dict[str, Any]] = []
        self._filter: tuple[str | None, str | None] = (None, None)

        self._stack = QStackedWidget(self)
        self._stack.addWidget(self._build_empty_page())
        self._stack.addWidget(self._build_results_page())
        self._stack.addWidget(self._build_message_page())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._source = CheckpointSource(self)
        self._source.chosen.connect(self._on_checkpoint_chosen)
        self._source.evaluated.connect(self._on_evaluated)
        self._source.failed.connect(self._on_evaluation_failed)
        self.checkpoint_label = self._source.label
        self.checkpoint_combo = self._source.combo
        layout.addWidget(self._source)
        layout.addWidget(self._stack)
        self.clear()

    # ------------------------------------------------------------------ checkpoints

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
        return self.checkpoint_combo.kind()

    def set_checkpoint(self, kind: str) -> None:
        """Choose the best or the last checkpoint; the run shown is evaluated again."""
        index = self.checkpoint_combo.findData(kind)
        if index < 0:
            raise ValueError(f"checkpoint must be 'best' or 'last', not {kind!r}")
        if index != self.checkpoint_combo.currentIndex():
            self.checkpoint_combo.setCurrentIndex(index)  # -> _on_checkpoint_chosen

    def _on_checkpoint_chosen(self, kind: str) -> None:
        self.checkpoint_changed.emit(kind)
        if self._source.run_dir is not None:
            self.show_run(self._source.run_dir, name=self._source.run_name)

    def show_run(
        self, run_dir: str | os.PathLike[str], *, name: str = "", checkpoint: str | None = None
    ) -> None:
        """Evaluate the saved run in ``run_dir`` with the chosen checkpoint (or
        ``checkpoint``) off the GUI thread; the results, or why there are none, follow."""
        if checkpoint is not None and checkpoint != self.checkpoint():
            if not self.checkpoint_combo.show_kind(checkpoint):  # the run to evaluate is this one
                raise ValueError(f"checkpoint must be 'best' or 'last', not {checkpoint!r}")
            self.checkpoint_changed.emit(checkpoint)
        self._source.evaluate(run_dir, name=name, on_screen=self._stack.currentIndex() == 1)

    @property
    def busy(self) -> bool:
        """True while a checkpoint is being evaluated."""
        return self._source.busy

    @property
    def run_dir(self) -> str | None:
        """The saved run shown (or being evaluated); None for results of no saved run."""
        return self._source.run_dir

    @property
    def evaluation(self) -> CheckpointEvaluation | None:
        """The checkpoint evaluation on screen (None for live or summary results)."""
        return self._source.evaluation

    def detailed_metrics(self) -> Any:
        """F1, the averages and top-k of the results shown (core.metrics.DetailedMetrics)."""
        return self._detailed

    @property
    def explanation_model(self) -> Any:
        """The predictor whose heat maps the gallery's enlarged view shows (or None)."""
        return self._gallery_box.explanation_model

    def _on_evaluated(self, result: CheckpointEvaluation) -> None:
        report = result.report
        run_name = self._source.run_name
        label = f"{run_name} · {checkpoint_text(result.checkpoint, result.epoch)}"
        if report is None:
            self._show_message(
                f"Cannot evaluate {run_name} with its "
                f"{checkpoint_text(result.checkpoint, result.epoch)}: {result.problem}",
                f"<b>{html.escape(run_name)}</b>: no evaluation for its "
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
        muted = semantic_colour("muted", self.palette()).name()
        self.checkpoint_label.setText(
            f'<span style="color:{muted}">Evaluated with the</span> '
            f"<b>{html.escape(checkpoint_text(result.checkpoint, result.epoch))}</b> "
            f'<span style="color:{muted}">of {html.escape(run_name)}</span>'
        )
        self.set_explanation_model(result.predictor, label)
        self.model_ready.emit(result.predictor, label)

    def _on_evaluation_failed(self, kind: str, exc: BaseException) -> None:
        from ..errors import UserError

        run_name = self._source.run_name
        reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        text = f"Cannot evaluate {run_name} with its {kind} checkpoint: {reason}"
        self._show_message(text, f"<b>{html.escape(run_name)}</b>: no results for its {kind} checkpoint")
        self.model_failed.emit(self._source.run_dir or "", text)

    def _show_message(self, text: str, header: str) -> None:
        """A message in place of results; the checkpoint choice stays to try the other."""
        self.checkpoint_label.setText(header)
        self.message_label.setText(text)
        self.set_explanation_model(None, "")
        self._gallery_box.close_preview()
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
        self._source.forget()
        self._show(class_names, confusion, precision, recall, misclassified, caption=caption)
        self.set_explanation_model(None, "")  # heat maps come with a saved checkpoint

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
            precision, recall = rates_from_confusion(confusion)
        if len(precision) != n or len(recall) != n:
            raise ValueError(f"precision and recall need one value per class ({n})")
        self._class_names = names
        self._confusion = [[int(v) for v in row] for row in confusion]
        self._misclassified = sorted(
            (self._normalise_entry(e) for e in misclassified), key=lambda e: -float(e["prob"])
        )
        self._filter = (None, None)
        self._gallery_box.forget_painted()

        if detailed is None:
            detailed = detailed_from_confusion(self._confusion)
        self._detailed = detailed
        self.matrix.set_matrix(names, self._confusion)
        self.table.fill(names, self._confusion, precision, recall, detailed.f1)
        self.averages_label.setText(averages_html(detailed))
        muted = semantic_colour("muted", self.palette())
        self.summary_label.setText(summary_html(names, self._confusion, caption, muted))
        self._fill_gallery()
        self._stack.setCurrentIndex(1)
        self._fit_gallery()

    def gallery_is_compact(self) -> bool:
        """True while the gallery is only a line saying why it lists nothing."""
        return self._gallery_box.is_compact()

    def _fit_gallery(self) -> None:
        """With no misclassified image to list, the gallery shrinks to its title and
        message, and the matrix and table take the room; with images it takes about
        two fifths of the height."""
        was_compact = self._gallery_box.set_compact(not self._misclassified)
        if self._misclassified and was_compact:
            total = sum(self._split.sizes())
            if total > 0:
                gallery = max(220, total * 2 // 5)
                self._split.setSizes([max(1, total - gallery), gallery])

    def clear(self) -> None:
        """Back to the empty state (no results yet)."""
        self._source.forget()
        self._detailed = None
        self._class_names = []
        self._confusion = []
        self._misclassified = []
        self._filter = (None, None)
        self._gallery_box.clear()
        self.matrix.clear()
        self.table.setRowCount(0)
        self._stack.setCurrentIndex(0)

    def has_results(self) -> bool:
        return self._stack.currentIndex() == 1

    def gallery_labels(self) -> list[str]:
        """The labels of the images the gallery lists now, in order."""
        return self._gallery_box.labels()

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
        self._gallery_box.set_explanation_model(predictor, label)

    def open_preview(self, row: int) -> ImagePreviewDialog:
        """Enlarge the gallery's image at ``row`` (what a click does)."""
        return self._gallery_box.open_preview(row)

    @property
    def thumbnails(self) -> ThumbnailLoader:
        return self._gallery_box.thumbnails

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
        gallery_box = MisclassifiedGallery(page)
        self._gallery_box = gallery_box
        self.gallery = gallery_box.view
        self.show_all_button = gallery_box.show_all_button
        self.show_all_button.clicked.connect(lambda: self.set_gallery_filter(None, None))

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

    def _fill_gallery(self) -> None:
        true_name, pred_name = self._filter
        matrix_wrong = sum(sum(row) for row in self._confusion) - sum(
            self._confusion[i][i] for i in range(len(self._confusion))
        )
        self._gallery_box.fill(self._misclassified, true_name, pred_name, matrix_wrong)

    # ------------------------------------------------------------------ reactions

    def _on_cell_clicked(self, row: int, col: int) -> None:
        if row == col:
            self.set_gallery_filter(self._class_names[row], None)
        else:
            self.set_gallery_filter(self._class_names[row], self._class_names[col])


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
