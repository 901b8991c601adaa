"""Tiles of a thumbnail grid, as the dataset browser and the mistakes gallery draw them: a
rounded frame that shows selection and hover, the image's thumbnail at its top, captions
under it; a dimmed image may carry a band across its foot (the browser's "left out").

A grid view says what a tile shows (:meth:`ThumbnailTileDelegate.tile_content`); the
frame, the thumbnail and the captions are painted here, alike in both. An empty grid says
why it is empty (:class:`ThumbnailGridView`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QModelIndex, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPalette, QPen
from PySide6.QtWidgets import QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from .icons import mix, readable_text_on
from .thumbnails import ThumbnailLoader, ThumbnailPainter

TILE_INSET = 3  # between a tile's frame and its grid cell
PADDING = 6  # inside the frame, around the thumbnail and the captions


@dataclass
class Caption:
    text: str
    colour: QColor
    elide: Qt.TextElideMode = Qt.TextElideMode.ElideRight


@dataclass
class TileContent:
    path: str
    captions: list[Caption] = field(default_factory=list)
    dimmed: bool = False  # the thumbnail drawn faint
    band: tuple[str, QColor] | None = None  # a label across the thumbnail's foot


def tile_size(side: int, line_height: int, captions: int = 2) -> QSize:
    """A tile's cell for thumbnails of ``side`` pixels with ``captions`` lines under them."""
    # The frame's inset and padding on either side; above the thumbnail, between it and
    # the captions, and a little below them.
    return QSize(side + 2 * (TILE_INSET + PADDING) + 4, side + captions * line_height + 20)


class ThumbnailTileDelegate(QStyledItemDelegate):
    """Paints the tile :meth:`tile_content` gives for an index (None: nothing)."""

    def __init__(self, loader: ThumbnailLoader, side: int, parent: QWidget) -> None:
        super().__init__(parent)
        self.side = side
        self._thumbnail = ThumbnailPainter(loader)

    def forget(self) -> None:
        """Drop the painted pixmaps (a new list of images)."""
        self._thumbnail.forget()

    def tile_content(self, index: QModelIndex, palette: QPalette) -> TileContent | None:
        raise NotImplementedError

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        return tile_size(self.side, option.fontMetrics.height())

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        palette = option.palette
        content = self.tile_content(index, palette)
        if content is None:
            return
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        tile = QRectF(option.rect.adjusted(TILE_INSET, TILE_INSET, -TILE_INSET, -TILE_INSET))
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
            int(tile.x() + (tile.width() - self.side) / 2), int(tile.y() + PADDING), self.side, self.side
        )
        if content.dimmed:
            painter.setOpacity(0.35)
        self._thumbnail.paint(painter, box, content.path, palette)
        painter.setOpacity(1.0)
        metrics = option.fontMetrics
        if content.band is not None:
            label, colour = content.band
            band = QRect(box.x(), box.bottom() - metrics.height() - 6, box.width(), metrics.height() + 4)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour)
            painter.drawRoundedRect(QRectF(band), 4, 4)
            painter.setPen(readable_text_on(colour))
            painter.drawText(band, Qt.AlignmentFlag.AlignCenter, label)

        width = int(tile.width()) - 2 * PADDING
        x, y = int(tile.x()) + PADDING, box.bottom() + PADDING
        painter.setFont(option.font)
        for caption in content.captions:
            painter.setPen(caption.colour)
            painter.drawText(
                QRect(x, y, width, metrics.height()),
                Qt.AlignmentFlag.AlignHCenter,
                metrics.elidedText(caption.text, caption.elide, width),
            )
            y += metrics.height()
        painter.restore()


class ThumbnailGridView(QListView):
    """An icon grid that says why it is empty (``placeholder``) instead of a blank area."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.placeholder = ""

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
