"""The misclassified-image gallery of the evaluation view and its enlarged preview.

A grid of thumbnails, each with its true and predicted class under it, read off the GUI
thread by a :class:`~desktop_tl.gui.thumbnails.ThumbnailLoader`; a click opens
:class:`ImagePreviewDialog`, whose arrows step through the images the gallery lists and
whose toggles show where the model looked for the predicted and for the true class.
"""

from __future__ import annotations

import html
import os
from typing import Any

from PySide6.QtCore import QModelIndex, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QKeySequence, QPainter, QPaintEvent, QPalette, QPen, QShortcut
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QListView,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from .explanation_view import ExplainedImage, preview_labels
from .icons import mix, semantic_colour
from .thumbnails import ThumbnailLoader, ThumbnailPainter

THUMBNAIL_SIDE = 128
#: Where a gallery item keeps its entry ``{"path", "true", "pred", "prob"}``.
ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1


def misclassified_label(entry: dict[str, Any]) -> str:
    """``true: cat / predicted: dog (p=0.83)``."""
    return f"true: {entry['true']} / predicted: {entry['pred']} (p={float(entry['prob']):.2f})"


class GalleryDelegate(QStyledItemDelegate):
    """A thumbnail with its true and predicted class under it."""

    def __init__(self, loader: ThumbnailLoader, parent: QWidget) -> None:
        super().__init__(parent)
        self._thumbnail = ThumbnailPainter(loader)
        self.text_width = 0  # the widest label line in the gallery, set by the view

    def forget(self) -> None:
        self._thumbnail.forget()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        line = option.fontMetrics.height()
        width = min(max(THUMBNAIL_SIDE + 28, self.text_width + 20), 2 * THUMBNAIL_SIDE)
        return QSize(width, THUMBNAIL_SIDE + 2 * line + 24)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        entry = index.data(ENTRY_ROLE)
        if not entry:
            return
        palette = option.palette
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        tile = QRectF(option.rect.adjusted(3, 3, -3, -3))
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if selected:
            background = mix(base, palette.color(QPalette.ColorRole.Highlight), 0.22)
        elif hovered:
            background = mix(base, text, 0.06)
        else:
            background = base
        painter.setPen(QPen(mix(base, text, 0.16), 1))
        painter.setBrush(background)
        painter.drawRoundedRect(tile, 6, 6)

        box = QRect(
            int(tile.x() + (tile.width() - THUMBNAIL_SIDE) / 2),
            int(tile.y() + 8),
            THUMBNAIL_SIDE,
            THUMBNAIL_SIDE,
        )
        self._thumbnail.paint(painter, box, entry["path"], palette)

        metrics = option.fontMetrics
        width = int(tile.width()) - 12
        x = int(tile.x()) + 6
        y = box.bottom() + 6
        painter.setFont(option.font)
        painter.setPen(text)
        painter.drawText(
            QRect(x, y, width, metrics.height()),
            Qt.AlignmentFlag.AlignHCenter,
            metrics.elidedText(f"true: {entry['true']}", Qt.TextElideMode.ElideRight, width),
        )
        painter.setPen(semantic_colour("bad", palette))
        painter.drawText(
            QRect(x, y + metrics.height(), width, metrics.height()),
            Qt.AlignmentFlag.AlignHCenter,
            metrics.elidedText(
                f"predicted: {entry['pred']} (p={float(entry['prob']):.2f})",
                Qt.TextElideMode.ElideMiddle,
                width,
            ),
        )
        painter.restore()


class GalleryView(QListView):
    """An icon grid that says why it is empty instead of showing a blank area."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.placeholder = ""

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        super().paintEvent(event)
        model = self.model()
        if model is not None and model.rowCount() == 0 and self.placeholder:
            painter = QPainter(self.viewport())
            palette = self.palette()
            painter.setPen(
                mix(palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Text), 0.55)
            )
            painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
            painter.end()


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

        self.previous_button = QPushButton("◀ Previous", self)
        self.next_button = QPushButton("Next ▶", self)
        self.position_label = QLabel(self)
        close_button = QPushButton("Close", self)
        self.previous_button.clicked.connect(lambda: self.show_index(self._index - 1))
        self.next_button.clicked.connect(lambda: self.show_index(self._index + 1))
        close_button.clicked.connect(self.close)
        QShortcut(QKeySequence(Qt.Key.Key_Left), self, activated=lambda: self.show_index(self._index - 1))
        QShortcut(QKeySequence(Qt.Key.Key_Right), self, activated=lambda: self.show_index(self._index + 1))

        buttons = QHBoxLayout()
        buttons.addWidget(self.previous_button)
        buttons.addWidget(self.next_button)
        buttons.addStretch(1)
        buttons.addWidget(self.position_label)
        buttons.addStretch(1)
        buttons.addWidget(close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.path_label)
        layout.addLayout(buttons)

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
        self.position_label.setText(f"{self._index + 1} of {len(self._entries)}")
        self.previous_button.setEnabled(self._index > 0)
        self.next_button.setEnabled(self._index < len(self._entries) - 1)
        # Stepping on keeps the map that was chosen: a heat map for the next mistake too.
        choices = [("predicted", str(entry["pred"])), ("true", str(entry["true"]))]
        self.view.show_image(entry["path"], choices, self.view.selected_index())

    def current_entry(self) -> dict[str, Any] | None:
        return self._entries[self._index] if self._entries else None

    def has_image(self) -> bool:
        return self.view.has_image()
