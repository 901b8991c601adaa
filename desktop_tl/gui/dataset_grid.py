"""The dataset browser's thumbnail grid: a list view in icon mode whose tile delegate paints
each image's thumbnail with its name, class and split, and dims a left-out image under a
"left out" band.

No widget per image and tiles of one size, so 10,000 images open at once; thumbnails are
read only for the tiles painted, off the GUI thread
(:class:`~desktop_tl.gui.thumbnails.ThumbnailLoader`).
"""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import QModelIndex, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QPainter, QPalette, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from .dataset_items import ITEM_ROLE, SUBSET_NAMES, BrowserItem, DatasetModel
from .icons import mix, readable_text_on, semantic_colour
from .thumbnails import ThumbnailLoader, ThumbnailPainter

THUMBNAIL_SIDE = 112


class ImageTileDelegate(QStyledItemDelegate):
    """A thumbnail with its file name, class and split under it; left-out images dimmed
    under a "left out" band."""

    def __init__(self, loader: ThumbnailLoader, model: DatasetModel, parent: QWidget) -> None:
        super().__init__(parent)
        self._thumbnail = ThumbnailPainter(loader)
        self._model = model

    def forget(self) -> None:
        self._thumbnail.forget()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        return tile_size(option.fontMetrics.height())

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        item: BrowserItem | None = index.data(ITEM_ROLE)
        if item is None:
            return
        palette = option.palette
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        state = self._model.state_of(item)
        left_out = state == "excluded"
        tile = QRectF(option.rect.adjusted(3, 3, -3, -3))
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if selected:
            background = mix(base, palette.color(QPalette.ColorRole.Highlight), 0.28)
            border = palette.color(QPalette.ColorRole.Highlight)
        else:
            background = mix(base, text, 0.06) if hovered else base
            border = mix(base, text, 0.16)
        painter.setPen(QPen(border, 2 if selected else 1))
        painter.setBrush(background)
        painter.drawRoundedRect(tile, 6, 6)

        box = QRect(
            int(tile.x() + (tile.width() - THUMBNAIL_SIDE) / 2),
            int(tile.y() + 6),
            THUMBNAIL_SIDE,
            THUMBNAIL_SIDE,
        )
        if left_out:
            painter.setOpacity(0.35)
        self._thumbnail.paint(painter, box, item.path, palette)
        painter.setOpacity(1.0)
        if left_out:
            warning = semantic_colour("warning", palette)
            metrics = option.fontMetrics
            band = QRect(box.x(), box.bottom() - metrics.height() - 6, box.width(), metrics.height() + 4)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(warning)
            painter.drawRoundedRect(QRectF(band), 4, 4)
            painter.setPen(readable_text_on(warning))
            painter.drawText(band, Qt.AlignmentFlag.AlignCenter, "⊘ left out")

        metrics = option.fontMetrics
        width = int(tile.width()) - 10
        x = int(tile.x()) + 5
        y = box.bottom() + 5
        painter.setFont(option.font)
        painter.setPen(text if not left_out else mix(base, text, 0.6))
        painter.drawText(
            QRect(x, y, width, metrics.height()),
            Qt.AlignmentFlag.AlignHCenter,
            metrics.elidedText(os.path.basename(item.path), Qt.TextElideMode.ElideMiddle, width),
        )
        detail = f"{item.class_name} · {SUBSET_NAMES.get(state, state)}"
        painter.setPen(semantic_colour("warning" if left_out else "muted", palette))
        painter.drawText(
            QRect(x, y + metrics.height(), width, metrics.height()),
            Qt.AlignmentFlag.AlignHCenter,
            metrics.elidedText(detail, Qt.TextElideMode.ElideRight, width),
        )
        painter.restore()


def tile_size(line_height: int) -> QSize:
    return QSize(THUMBNAIL_SIDE + 22, THUMBNAIL_SIDE + 2 * line_height + 20)


class ImageGrid(QListView):
    """The thumbnail grid: static tiles of one size, so Qt lays out 10,000 without asking
    each for its size, and paints (and so reads thumbnails for) only the visible ones."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.placeholder = ""
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setWrapping(True)
        self.setUniformItemSizes(True)
        self.setGridSize(tile_size(self.fontMetrics().height()))
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setSelectionRectVisible(True)
        self.setMouseTracking(True)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(24)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)

    def visible_capacity(self) -> int:
        """How many tiles the viewport shows at most (rows partly in view included)."""
        grid = self.gridSize()
        area = self.viewport().size()
        columns = max(1, area.width() // max(1, grid.width()))
        rows = -(-area.height() // max(1, grid.height())) + 1
        return columns * rows

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().paintEvent(event)
        model = self.model()
        if model is not None and model.rowCount() == 0 and self.placeholder:
            painter = QPainter(self.viewport())
            palette = self.palette()
            painter.setPen(
                mix(palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Text), 0.55)
            )
            painter.drawText(
                self.viewport().rect().adjusted(20, 20, -20, -20),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self.placeholder,
            )
            painter.end()
