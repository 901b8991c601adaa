"""The rows of the prediction view: one per image, with its thumbnail, file name and the
model's top classes as bars (or why it could not be predicted), painted by a delegate;
and the list that holds them, which says what to do while empty and lights up while
files are dragged over it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QFont, QFontMetrics, QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from .icons import mix, semantic_colour
from .thumbnails import ThumbnailLoader, ThumbnailPainter

#: A row's thumbnail is this many pixels square.
THUMBNAIL_SIDE = 96
#: Where an item keeps its :class:`PredictionRow`.
ROW_ROLE = Qt.ItemDataRole.UserRole + 1


def format_probability(p: float) -> str:
    """A probability as a percentage with one decimal that never rounds to the ends:
    0.9996 is ">99.9%", not "100.0%" beside a bar that is not full."""
    if p >= 1.0:
        return "100%"
    if p <= 0.0:
        return "0%"
    if p >= 0.9995:
        return ">99.9%"
    if p < 0.0005:
        return "<0.1%"
    return f"{p:.1%}"


@dataclass
class PredictionRow:
    """One image in the list and what the model said about it."""

    path: str
    status: str = "waiting"  # "waiting" | "done" | "error" | "no-model"
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None


class PredictionDelegate(QStyledItemDelegate):
    """Thumbnail, file name and the top classes as bars; or the reason the image failed."""

    def __init__(self, view: Any, loader: ThumbnailLoader) -> None:
        super().__init__(view)
        self._view = view
        self._thumbnail = ThumbnailPainter(loader)
        self._name_width = 60
        self._name_width_key: tuple[int, str] | None = None

    def forget(self) -> None:
        self._thumbnail.forget()

    def bar_height(self, option: QStyleOptionViewItem) -> int:
        return option.fontMetrics.height() + 8

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        bars = self._view.top_k * self.bar_height(option) + 16
        return QSize(400, max(THUMBNAIL_SIDE + 16, bars))

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        row: PredictionRow | None = index.data(ROW_ROLE)
        if row is None:
            return
        palette = option.palette
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        muted = mix(base, text, 0.55)
        rect = option.rect
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(rect, mix(base, palette.color(QPalette.ColorRole.Highlight), 0.18))
        elif index.row() % 2:
            painter.fillRect(rect, mix(base, text, 0.025))
        painter.setPen(QPen(mix(base, text, 0.12), 1))
        painter.drawLine(rect.bottomLeft(), rect.bottomRight())

        # Thumbnail.
        box = QRect(
            rect.x() + 8, rect.y() + (rect.height() - THUMBNAIL_SIDE) // 2, THUMBNAIL_SIDE, THUMBNAIL_SIDE
        )
        self._thumbnail.paint(painter, box, row.path, palette, broken=row.status == "error")

        # Name and folder.
        metrics = option.fontMetrics
        line = metrics.height()
        info_x = box.right() + 14
        info_w = max(120, min(260, int(rect.width() * 0.3)))
        bold = QFont(option.font)
        bold.setBold(True)
        painter.setFont(bold)
        painter.setPen(text)
        name = Path(row.path).name
        painter.drawText(
            QRect(info_x, rect.y() + 10, info_w, line),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            painter.fontMetrics().elidedText(name, Qt.TextElideMode.ElideMiddle, info_w),
        )
        painter.setFont(option.font)
        painter.setPen(muted)
        folder = os.path.normpath(str(Path(row.path).parent))
        painter.drawText(
            QRect(info_x, rect.y() + 10 + line + 2, info_w, line),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            metrics.elidedText(folder, Qt.TextElideMode.ElideLeft, info_w),
        )
        if row.status == "done" and row.top:
            best, probability = row.top[0]
            painter.setPen(text)
            painter.drawText(
                QRect(info_x, rect.y() + 10 + 2 * (line + 2) + 6, info_w, line),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                metrics.elidedText(
                    f"→ {best}  ({format_probability(probability)})", Qt.TextElideMode.ElideRight, info_w
                ),
            )

        # Bars, or the state of the row.
        area = QRect(
            info_x + info_w + 16, rect.y() + 8, rect.right() - (info_x + info_w + 16) - 10, rect.height() - 16
        )
        if row.status == "done":
            self._paint_bars(painter, option, area, row.top[: self._view.top_k])
        else:
            if row.status == "error":
                colour = semantic_colour("bad", palette)
                message = row.error or "This image could not be predicted."
            elif row.status == "no-model":
                colour = muted
                message = "Waiting for a model: train one, or use Load saved run…"
            else:
                colour = muted
                message = "Predicting…"
            painter.setPen(colour)
            painter.drawText(
                area,
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter | Qt.TextFlag.TextWordWrap,
                message,
            )
        painter.restore()

    def _name_column_width(self, option: QStyleOptionViewItem, top: list[tuple[str, float]]) -> int:
        key = (id(self._view.predictor), option.font.key())
        if self._name_width_key != key:
            bold = QFont(option.font)
            bold.setBold(True)
            metrics = QFontMetrics(bold)
            names = self._view.class_names() or [name for name, _ in top]
            widest = max((metrics.horizontalAdvance(n) for n in names), default=60)
            self._name_width = min(180, max(60, widest + 4))
            self._name_width_key = key
        return self._name_width

    def _paint_bars(
        self, painter: QPainter, option: QStyleOptionViewItem, area: QRect, top: list[tuple[str, float]]
    ) -> None:
        palette = option.palette
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        accent = semantic_colour("accent", palette)
        metrics = option.fontMetrics
        height = self.bar_height(option)
        # One name column width for every row (from all class names), so bars line up.
        name_w = self._name_column_width(option, top)
        value_w = metrics.horizontalAdvance("100.0%") + 8
        track_x = area.x() + name_w + 10
        track_w = max(40, area.width() - name_w - 10 - value_w)
        total_h = len(top) * height
        y = area.y() + max(0, (area.height() - total_h) // 2)
        for rank, (name, probability) in enumerate(top):
            row_rect = QRect(area.x(), y, area.width(), height)
            painter.setPen(text if rank == 0 else mix(base, text, 0.75))
            font = QFont(option.font)
            font.setBold(rank == 0)
            painter.setFont(font)
            painter.drawText(
                QRect(area.x(), y, name_w, height),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                painter.fontMetrics().elidedText(name, Qt.TextElideMode.ElideRight, name_w),
            )
            track = QRectF(track_x, y + 4, track_w, height - 8)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(mix(base, text, 0.07))
            painter.drawRoundedRect(track, 3, 3)
            filled = QRectF(track)
            filled.setWidth(max(2.0, track.width() * max(0.0, min(1.0, probability))))
            painter.setBrush(accent if rank == 0 else mix(base, accent, 0.45))
            painter.drawRoundedRect(filled, 3, 3)
            painter.setPen(text if rank == 0 else mix(base, text, 0.75))
            painter.drawText(
                QRect(track_x + track_w + 4, y, value_w, height),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                format_probability(probability),
            )
            y += row_rect.height()


class ResultList(QListView):
    """The rows; says what to do while empty and lights up while files are dragged over."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.placeholder = ""
        self.drop_active = False

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        super().paintEvent(event)
        model = self.model()
        empty = model is None or model.rowCount() == 0
        if not (empty or self.drop_active):
            return
        painter = QPainter(self.viewport())
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        highlight = palette.color(QPalette.ColorRole.Highlight)
        area = QRectF(self.viewport().rect()).adjusted(14, 14, -14, -14)
        if self.drop_active:
            painter.setBrush(mix(base, highlight, 0.10))
            painter.setPen(QPen(highlight, 2, Qt.PenStyle.DashLine))
        else:
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(QPen(mix(base, text, 0.25), 1.5, Qt.PenStyle.DashLine))
        painter.drawRoundedRect(area, 10, 10)
        if empty or self.drop_active:
            font = QFont(self.font())
            font.setPointSizeF(font.pointSizeF() * 1.25)
            painter.setFont(font)
            painter.setPen(highlight if self.drop_active else mix(base, text, 0.6))
            message = "Drop to predict" if self.drop_active else self.placeholder
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, message)
        painter.end()
