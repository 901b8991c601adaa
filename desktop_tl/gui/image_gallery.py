"""The misclassified-image gallery of the evaluation view and its enlarged preview.

:class:`MisclassifiedGallery` lists the mistakes it is given, the most confident first,
as a grid of thumbnails, each with its true and predicted class under it, read off the
GUI thread by a :class:`~desktop_tl.gui.thumbnails.ThumbnailLoader`; a click opens
:class:`ImagePreviewDialog`, whose arrows step through the images the gallery lists and
whose toggles show where the model looked for the predicted and for the true class.
"""

from __future__ import annotations

import html
import os
from typing import Any

from PySide6.QtCore import QEvent, QModelIndex, QSize, Qt
from PySide6.QtGui import QFont, QPalette, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QLabel,
    QListView,
    QPushButton,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from .explanation_view import ExplainedImage, preview_labels
from .icons import semantic_colour
from .image_stepper import ImageStepper
from .thumbnail_tiles import Caption, ThumbnailGridView, ThumbnailTileDelegate, TileContent
from .thumbnails import ThumbnailLoader

THUMBNAIL_SIDE = 128
#: Where a gallery item keeps its entry ``{"path", "true", "pred", "prob"}``.
ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1
#: Most misclassified images listed at once (the most confident mistakes first).
MAX_GALLERY_ITEMS = 500
#: Qt's "no maximum size" (QWIDGETSIZE_MAX).
QWIDGETSIZE_MAX = (1 << 24) - 1


def misclassified_label(entry: dict[str, Any]) -> str:
    """``true: cat / predicted: dog (p=0.83)``."""
    return f"true: {entry['true']} / predicted: {entry['pred']} (p={float(entry['prob']):.2f})"


class GalleryDelegate(ThumbnailTileDelegate):
    """A thumbnail with its true and predicted class under it."""

    def __init__(self, loader: ThumbnailLoader, parent: QWidget) -> None:
        super().__init__(loader, THUMBNAIL_SIDE, parent)
        self.text_width = 0  # the widest label line in the gallery, set by the view

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        size = super().sizeHint(option, index)
        return QSize(min(max(size.width(), self.text_width + 20), 2 * THUMBNAIL_SIDE), size.height())

    def tile_content(self, index: QModelIndex, palette: QPalette) -> TileContent | None:
        entry = index.data(ENTRY_ROLE)
        if not entry:
            return None
        predicted = f"predicted: {entry['pred']} (p={float(entry['prob']):.2f})"
        return TileContent(
            entry["path"],
            [
                Caption(f"true: {entry['true']}", palette.color(QPalette.ColorRole.Text)),
                Caption(predicted, semantic_colour("bad", palette), Qt.TextElideMode.ElideMiddle),
            ],
        )


class ImagePreviewDialog(QDialog):
    """One misclassified image, large, with its labels; arrows step through the gallery.
    With a model (:meth:`set_predictor`), toggles show where it looked for the predicted
    and for the true class."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Misclassified image")
        self.resize(760, 720)
        self._entries: list[dict[str, Any]] = []
        self._index = 0

        self.view = ExplainedImage(self)
        self.image_label = self.view.image_label
        self.caption, self.path_label = preview_labels(self)

        self.stepper = ImageStepper(self, lambda step: self.show_index(self._index + step))
        self.previous_button, self.next_button = self.stepper.previous_button, self.stepper.next_button
        self.position_label = self.stepper.position_label
        close_button = QPushButton("Close", self)
        close_button.clicked.connect(self.close)
        self.stepper.add_buttons(close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.path_label)
        layout.addLayout(self.stepper.row)

    def set_predictor(self, predictor: Any, label: str = "") -> None:
        """The model whose heat maps the toggles show (None: none to explain with)."""
        self.view.set_predictor(predictor, label)

    def show_entries(self, entries: list[dict[str, Any]], index: int) -> None:
        self._entries = list(entries)
        self.show_index(index)

    def show_index(self, index: int) -> None:
        if not self._entries:
            return
        self._index = max(0, min(index, len(self._entries) - 1))
        entry = self._entries[self._index]
        bad = semantic_colour("bad", self.palette()).name()
        self.caption.setText(
            f"true: <b>{html.escape(str(entry['true']))}</b> / predicted: "
            f'<b style="color:{bad}">{html.escape(str(entry["pred"]))}</b> (p={float(entry["prob"]):.2f})'
        )
        self.caption.setToolTip(misclassified_label(entry))
        self.path_label.setText(os.path.normpath(entry["path"]))
        self.stepper.show_position(self._index, len(self._entries))
        # Stepping on keeps the map that was chosen: a heat map for the next mistake too.
        choices = [("predicted", str(entry["pred"])), ("true", str(entry["true"]))]
        self.view.show_image(entry["path"], choices, self.view.selected_index())

    def current_entry(self) -> dict[str, Any] | None:
        return self._entries[self._index] if self._entries else None

    def has_image(self) -> bool:
        return self.view.has_image()


class MisclassifiedGallery(QWidget):
    """The gallery with its title, a line saying what it lists and Show all; the evaluation
    view fills it with the mistakes its filter lets through."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._preview: ImagePreviewDialog | None = None
        self._explanation_model: tuple[Any, str] = (None, "")  # for the preview's heat maps
        self.thumbnails = ThumbnailLoader(THUMBNAIL_SIDE, self)
        self.thumbnails.ready.connect(lambda _path: self.view.viewport().update())
        self.thumbnails.failed.connect(self._on_thumbnail_failed)
        self._model = QStandardItemModel(self)
        self.view = ThumbnailGridView(self)
        self.view.setObjectName("misclassifiedGallery")
        self.view.setModel(self._model)
        self._delegate = GalleryDelegate(self.thumbnails, self.view)
        self.view.setItemDelegate(self._delegate)
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setUniformItemSizes(True)
        self.view.setSpacing(4)
        self.view.setWrapping(True)
        self.view.setMouseTracking(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.clicked.connect(lambda index: self.open_preview(index.row()))
        self.view.activated.connect(lambda index: self.open_preview(index.row()))

        self.title = QLabel(self)
        title_font = QFont(self.title.font())
        title_font.setBold(True)
        self.title.setFont(title_font)
        self.filter_label = QLabel(self)
        self.show_all_button = QPushButton("Show all", self)
        self.show_all_button.setToolTip("Show every misclassified image again")
        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.addWidget(self.title)
        header.addSpacing(12)
        header.addWidget(self.filter_label, 1)
        header.addWidget(self.show_all_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.view, 1)

    def fill(
        self,
        misclassified: list[dict[str, Any]],
        true_name: str | None,
        pred_name: str | None,
        matrix_wrong: int,
    ) -> None:
        """List the mistakes of ``true_name`` predicted as ``pred_name`` (None: any) out of
        ``misclassified`` (most confident first); ``matrix_wrong`` is how many the matrix
        counts, which per-epoch results give without the images."""
        entries = [
            e
            for e in misclassified
            if (true_name is None or e["true"] == true_name) and (pred_name is None or e["pred"] == pred_name)
        ]
        shown = entries[:MAX_GALLERY_ITEMS]
        metrics = self.view.fontMetrics()
        self._delegate.text_width = max(
            (metrics.horizontalAdvance(f"predicted: {e['pred']} (p=0.00)") for e in shown), default=0
        )
        self.thumbnails.cancel_pending()
        self._model.clear()
        for entry in shown:
            item = QStandardItem()
            label = misclassified_label(entry)
            item.setData(label, Qt.ItemDataRole.DisplayRole)
            item.setData(entry, ENTRY_ROLE)
            item.setToolTip(f"{label}\n{os.path.normpath(entry['path'])}\nClick to enlarge")
            item.setEditable(False)
            self._model.appendRow(item)

        total = len(misclassified)
        self.title.setText(f"Misclassified validation images ({total})")
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
        if total == 0 and matrix_wrong:
            # Per-epoch results carry the counts only; the engine lists the images at the end.
            self.view.placeholder = "The misclassified images are listed here when training finishes."
        elif total == 0:
            self.view.placeholder = "No validation image was misclassified."
        else:
            self.view.placeholder = "No mistakes of this kind."
        self.view.viewport().update()

    def labels(self) -> list[str]:
        """The labels of the images listed now, in order."""
        return [
            self._model.item(row).data(Qt.ItemDataRole.DisplayRole) for row in range(self._model.rowCount())
        ]

    def forget_painted(self) -> None:
        """New results: stop reading thumbnails no longer wanted, keep those read (results
        arrive every epoch and mostly name the same files)."""
        self.thumbnails.cancel_pending()
        self._delegate.forget()

    def clear(self) -> None:
        self.thumbnails.clear()
        self._delegate.forget()
        self._model.clear()
        self.close_preview()

    def is_compact(self) -> bool:
        """True while the gallery is only a line saying why it lists nothing."""
        return self.maximumHeight() < QWIDGETSIZE_MAX

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        # Compact, the gallery asks for no more height than its limit allows.
        hint = super().minimumSizeHint()
        return QSize(hint.width(), min(hint.height(), self.maximumHeight()))

    def set_compact(self, compact: bool) -> bool:
        """Shrink to the title and the line saying why nothing is listed, or take any
        height; returns whether it was compact. A height limit rather than splitter sizes,
        which a tab that has never been shown would not keep."""
        was_compact = self.is_compact()
        if compact:
            line = self.view.fontMetrics().height()
            header = max(self.title.sizeHint().height(), self.show_all_button.sizeHint().height()) + 4
            self.setMaximumHeight(header + 3 * line + 2 * self.view.frameWidth())
            self.view.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        else:
            self.setMaximumHeight(QWIDGETSIZE_MAX)
            self.view.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        return was_compact

    @property
    def explanation_model(self) -> Any:
        """The predictor whose heat maps the enlarged view shows (or None)."""
        return self._explanation_model[0]

    def set_explanation_model(self, predictor: Any, label: str = "") -> None:
        """The model whose heat maps the enlarged view shows (None: none yet)."""
        self._explanation_model = (predictor, label)
        if self._preview is not None:
            self._preview.set_predictor(predictor, label)

    def open_preview(self, row: int) -> ImagePreviewDialog:
        """Enlarge the image at ``row`` (what a click does)."""
        if self._preview is None:
            self._preview = ImagePreviewDialog(self)
            self._preview.set_predictor(*self._explanation_model)
        entries = [self._model.item(r).data(ENTRY_ROLE) for r in range(self._model.rowCount())]
        self._preview.show_entries(entries, row)
        self._preview.show()
        self._preview.raise_()
        return self._preview

    def close_preview(self) -> None:
        if self._preview is not None:
            self._preview.close()

    def _on_thumbnail_failed(self, path: str, reason: str) -> None:
        for row in range(self._model.rowCount()):
            item = self._model.item(row)
            entry = item.data(ENTRY_ROLE)
            if entry and entry["path"] == path:
                item.setToolTip(
                    f"{misclassified_label(entry)}\n{os.path.normpath(path)}\nCannot show this image: {reason}"
                )
        self.view.viewport().update()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and hasattr(self, "view"):
            self.view.viewport().update()
