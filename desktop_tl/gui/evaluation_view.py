"""How the trained model does on the validation images.

A confusion matrix heat map (rows: true class, columns: predicted class), a per-class
table of precision, recall and support, and a gallery of the misclassified validation
images. Clicking a matrix cell or a class in the table narrows the gallery to those
mistakes; clicking an image enlarges it.

The view arranges and connects the parts, each in its own module: the matrix
(confusion_matrix), the table (class_table) and the gallery with its preview
(image_gallery).
"""

from __future__ import annotations

import html
import os
from typing import Any, Sequence

from PySide6.QtCore import (
    QEvent,
    Qt,
)
from PySide6.QtGui import (
    QFont,
    QPalette,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
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
from .thumbnails import ThumbnailLoader

#: Qt's "no maximum size" (QWIDGETSIZE_MAX).
QWIDGETSIZE_MAX = (1 << 24) - 1

EMPTY_TEXT = "Train a model to see how it does on the validation images"

#: Most misclassified images listed at once (the most confident mistakes first).
MAX_GALLERY_ITEMS = 500



# =========================================================================== the view


class EvaluationView(QWidget):
    """Confusion matrix, per-class precision/recall/support and misclassified images."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._class_names: list[str] = []
        self._confusion: list[list[int]] = []
        self._misclassified: list[dict[str, Any]] = []
        self._filter: tuple[str | None, str | None] = (None, None)
        self._preview: ImagePreviewDialog | None = None
        self._explanation_model: tuple[Any, str] = (None, "")  # for the preview's heat maps

        self._stack = QStackedWidget(self)
        self._stack.addWidget(self._build_empty_page())
        self._stack.addWidget(self._build_results_page())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._stack)
        self.clear()

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
        """
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

        self.matrix.set_matrix(names, self._confusion)
        self.table.fill(names, self._confusion, precision, recall)
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
        return max(self.gallery_title.sizeHint().height(),
                   self.show_all_button.sizeHint().height()) + 4

    def clear(self) -> None:
        """Back to the empty state (no results yet)."""
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
        layout.addWidget(hint, 0, Qt.AlignmentFlag.AlignHCenter)
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
        matrix_box = _titled("Confusion matrix", matrix_scroll, page)

        # Per-class table.
        self.table = PerClassTable(page)
        self.table.class_chosen.connect(lambda name: self.set_gallery_filter(name, None))
        table_box = _titled("Precision and recall per class", self.table, page)

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
            self.filter_label.setText("Most confident mistakes first · click an image to enlarge" if shown else "")
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
                item.setToolTip(f"{misclassified_label(entry)}\n{os.path.normpath(path)}\nCannot show this image: {reason}")
        self.gallery.viewport().update()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and hasattr(self, "gallery"):
            self.gallery.viewport().update()


# =========================================================================== helpers


def _titled(title: str, content: QWidget, parent: QWidget) -> QWidget:
    box = QWidget(parent)
    label = QLabel(title, box)
    font = QFont(label.font())
    font.setBold(True)
    label.setFont(font)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 4, 0, 0)
    layout.addWidget(label)
    layout.addWidget(content, 1)
    return box


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
