"""How the trained model does on the validation images.

A confusion matrix heat map (rows: true class, columns: predicted class), a per-class
table of precision, recall and support, and a gallery of the misclassified validation
images. Clicking a matrix cell or a class in the table narrows the gallery to those
mistakes; clicking an image enlarges it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QPoint,
    QRect,
    QRectF,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QFont,
    QFontMetrics,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QPixmap,
    QResizeEvent,
    QShortcut,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListView,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from .icons import mix, placeholder_pixmap, readable_text_on, semantic_colour
from .thumbnails import ThumbnailLoader

#: Qt's "no maximum size" (QWIDGETSIZE_MAX).
QWIDGETSIZE_MAX = (1 << 24) - 1

EMPTY_TEXT = "Train a model to see how it does on the validation images"

#: Most misclassified images listed at once (the most confident mistakes first).
MAX_GALLERY_ITEMS = 500

THUMBNAIL_SIDE = 128
_ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1
_SORT_ROLE = Qt.ItemDataRole.UserRole + 2


def misclassified_label(entry: dict[str, Any]) -> str:
    """``true: cat / predicted: dog (p=0.83)``."""
    return f"true: {entry['true']} / predicted: {entry['pred']} (p={float(entry['prob']):.2f})"


# =========================================================================== matrix


@dataclass
class _MatrixGeometry:
    cell: int
    origin: QPoint  # top-left of cell (0, 0)
    row_label_width: int
    column_label_height: int
    rotated_labels: bool
    left: int  # x of the "True class" title band
    top: int  # y of the "Predicted class" title band
    title_band: int
    legend_top: int


class ConfusionMatrixWidget(QWidget):
    """A confusion matrix drawn as a heat map, sized to its space.

    Each cell is shaded by the share of its true class (its row) it holds, so a small
    class's mistakes stand out as much as a large one's: the diagonal (correct) in the
    accent colour, mistakes in red. Cells show the count and, when there is room, the
    share. Hovering gives the numbers in words; clicking emits :attr:`cell_clicked`.
    """

    cell_clicked = Signal(int, int)  # true index, predicted index

    MIN_CELL = 22
    MAX_CELL = 96
    MAX_LABEL_WIDTH = 170  # row labels (true class)
    MAX_COLUMN_LABEL = 130  # rotated column labels (predicted class)
    PAD = 8

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._names: list[str] = []
        self._matrix: list[list[int]] = []
        self._row_totals: list[int] = []
        self._hover: tuple[int, int] | None = None
        self._selected: tuple[int, int] | None = None
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

    # ------------------------------------------------------------------ data

    def set_matrix(self, class_names: Sequence[str], confusion: Sequence[Sequence[int]]) -> None:
        self._names = [str(n) for n in class_names]
        self._matrix = [[int(v) for v in row] for row in confusion]
        self._row_totals = [sum(row) for row in self._matrix]
        self._hover = None
        self._selected = None
        self.updateGeometry()
        self.update()

    def clear(self) -> None:
        self.set_matrix([], [])

    def set_selected(self, cell: tuple[int, int] | None) -> None:
        self._selected = cell
        self.update()

    def class_names(self) -> list[str]:
        return list(self._names)

    def matrix(self) -> list[list[int]]:
        return [list(row) for row in self._matrix]

    # ------------------------------------------------------------------ geometry

    def _title_font(self) -> QFont:
        font = QFont(self.font())
        font.setBold(True)
        return font

    def _label_metrics(self) -> tuple[QFontMetrics, int]:
        metrics = self.fontMetrics()
        widest = max((metrics.horizontalAdvance(n) for n in self._names), default=0)
        return metrics, min(widest, self.MAX_LABEL_WIDTH)

    def _geometry(self, width: int | None = None, height: int | None = None) -> _MatrixGeometry:
        width = self.width() if width is None else width
        height = self.height() if height is None else height
        n = max(1, len(self._names))
        metrics, widest = self._label_metrics()
        line = metrics.height()
        title_band = QFontMetrics(self._title_font()).height() + 6
        legend_band = line + 12
        row_label_width = widest + 12
        fixed_w = 2 * self.PAD + title_band + row_label_width
        fixed_h = 2 * self.PAD + title_band + legend_band

        def fit(column_label_height: int) -> int:
            by_width = (width - fixed_w) // n
            by_height = (height - fixed_h - column_label_height) // n
            return int(min(max(min(by_width, by_height), self.MIN_CELL), self.MAX_CELL))

        horizontal_height = line + 8
        cell = fit(horizontal_height)
        rotated = widest > cell - 6
        column_label_height = horizontal_height
        if rotated:
            column_label_height = min(widest, self.MAX_COLUMN_LABEL) + 12
            cell = fit(column_label_height)
        block_w = title_band + row_label_width + n * cell
        left = self.PAD + max(0, (width - 2 * self.PAD - block_w) // 2)
        top = self.PAD
        origin = QPoint(left + title_band + row_label_width, top + title_band + column_label_height)
        return _MatrixGeometry(
            cell=cell,
            origin=origin,
            row_label_width=row_label_width,
            column_label_height=column_label_height,
            rotated_labels=rotated,
            left=left,
            top=top,
            title_band=title_band,
            legend_top=origin.y() + n * cell + 6,
        )

    def _needed_size(self, cell: int) -> QSize:
        n = max(1, len(self._names))
        metrics, widest = self._label_metrics()
        title_band = QFontMetrics(self._title_font()).height() + 6
        rotated = widest > cell - 6
        column_label_height = min(widest, self.MAX_COLUMN_LABEL) + 12 if rotated else metrics.height() + 8
        legend_band = metrics.height() + 12
        legend_width = metrics.horizontalAdvance(self._legend_text()) + 40
        w = 2 * self.PAD + title_band + widest + 12 + n * cell
        h = 2 * self.PAD + title_band + column_label_height + n * cell + legend_band
        return QSize(max(w, min(legend_width, 420)), h)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return self._needed_size(self.MIN_CELL)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return self._needed_size(52)

    def _cell_at(self, pos: QPoint) -> tuple[int, int] | None:
        if not self._names:
            return None
        g = self._geometry()
        col = (pos.x() - g.origin.x()) // g.cell if pos.x() >= g.origin.x() else -1
        row = (pos.y() - g.origin.y()) // g.cell if pos.y() >= g.origin.y() else -1
        n = len(self._names)
        if 0 <= row < n and 0 <= col < n:
            return int(row), int(col)
        return None

    # ------------------------------------------------------------------ events

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        cell = self._cell_at(event.position().toPoint())
        if cell != self._hover:
            self._hover = cell
            self.setCursor(Qt.CursorShape.PointingHandCursor if cell else Qt.CursorShape.ArrowCursor)
            self.update()
        super().mouseMoveEvent(event)

    def leaveEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        self._hover = None
        self.update()
        super().leaveEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        cell = self._cell_at(event.position().toPoint())
        if cell is not None and event.button() == Qt.MouseButton.LeftButton:
            self.cell_clicked.emit(*cell)
            event.accept()
            return
        super().mousePressEvent(event)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            cell = self._cell_at(event.pos())
            if cell is None:
                QToolTip.hideText()
                event.ignore()
            else:
                QToolTip.showText(event.globalPos(), self.cell_description(*cell), self)
            return True
        return super().event(event)

    def cell_description(self, row: int, col: int) -> str:
        """The cell's meaning in words (its tooltip)."""
        true_name, pred_name = self._names[row], self._names[col]
        count = self._matrix[row][col]
        total = self._row_totals[row]
        share = f"{count / total:.1%}" if total else "—"
        images = "image" if count == 1 else "images"
        if row == col:
            text = (
                f"{count} of the {total} '{true_name}' images were recognised correctly ({share})."
            )
        else:
            text = (
                f"{count} '{true_name}' {images} predicted as '{pred_name}' "
                f"({share} of the {total} '{true_name}' images)."
            )
            if count:
                text += "\nClick to show them in the gallery below."
        return text

    # ------------------------------------------------------------------ painting

    @staticmethod
    def _legend_text() -> str:
        return "correct       mistakes       shade: share of the true class (row)"

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        painter.fillRect(self.rect(), base)
        if not self._names:
            painter.end()
            return
        g = self._geometry()
        n = len(self._names)
        accent = semantic_colour("accent", palette)
        bad = semantic_colour("bad", palette)
        muted = mix(base, text, 0.45)
        empty_cell = mix(base, text, 0.05)
        metrics = self.fontMetrics()

        # Axis titles.
        painter.setFont(self._title_font())
        painter.setPen(text)
        grid_w = n * g.cell
        painter.drawText(
            QRect(g.origin.x(), g.top, grid_w, g.title_band),
            Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter,
            "Predicted class",
        )
        painter.save()
        painter.translate(g.left, g.origin.y() + n * g.cell)
        painter.rotate(-90)
        painter.drawText(
            QRect(0, 0, n * g.cell, g.title_band),
            Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter,
            "True class",
        )
        painter.restore()

        # Class labels: rows on the left, columns on top (rotated when they do not fit).
        painter.setFont(self.font())
        label_w = g.row_label_width - 10
        for i, name in enumerate(self._names):
            highlighted = self._hover is not None and self._hover[0] == i
            painter.setPen(text if highlighted or self._hover is None else muted)
            painter.drawText(
                QRect(g.origin.x() - g.row_label_width, g.origin.y() + i * g.cell, label_w, g.cell),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                metrics.elidedText(name, Qt.TextElideMode.ElideRight, label_w),
            )
        for j, name in enumerate(self._names):
            highlighted = self._hover is not None and self._hover[1] == j
            painter.setPen(text if highlighted or self._hover is None else muted)
            x = g.origin.x() + j * g.cell
            if g.rotated_labels:
                label_h = g.column_label_height - 10
                painter.save()
                painter.translate(x, g.origin.y() - 6)
                painter.rotate(-90)
                painter.drawText(
                    QRect(0, 0, label_h, g.cell),
                    Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                    metrics.elidedText(name, Qt.TextElideMode.ElideRight, label_h),
                )
                painter.restore()
            else:
                painter.drawText(
                    QRect(x, g.origin.y() - g.column_label_height, g.cell, g.column_label_height - 4),
                    Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom,
                    name,
                )

        # Cells.
        count_font = QFont(self.font())
        count_font.setBold(True)
        count_font.setPixelSize(int(min(max(g.cell * 0.34, 9), 17)))
        share_font = QFont(self.font())
        share_font.setPixelSize(int(min(max(g.cell * 0.2, 8), 12)))
        show_share = g.cell >= 46
        for i in range(n):
            total = self._row_totals[i]
            for j in range(n):
                count = self._matrix[i][j]
                rect = QRectF(g.origin.x() + j * g.cell + 1, g.origin.y() + i * g.cell + 1, g.cell - 2, g.cell - 2)
                if count == 0:
                    fill = empty_cell
                else:
                    share = count / total if total else 0.0
                    target = accent if i == j else bad
                    fill = mix(base, target, 0.16 + 0.84 * share)
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(fill)
                painter.drawRoundedRect(rect, 3, 3)
                ink = readable_text_on(fill) if count else muted
                painter.setPen(ink)
                painter.setFont(count_font)
                label = f"{count}"
                count_rect = rect.adjusted(2, 2, -2, -2)
                if show_share and count:
                    count_rect = QRectF(rect.x(), rect.y() + rect.height() * 0.12, rect.width(), rect.height() * 0.5)
                painter.drawText(count_rect, Qt.AlignmentFlag.AlignCenter, label)
                if show_share and count:
                    painter.setFont(share_font)
                    share_rect = QRectF(rect.x(), rect.y() + rect.height() * 0.55, rect.width(), rect.height() * 0.35)
                    painter.drawText(share_rect, Qt.AlignmentFlag.AlignCenter, f"{count / total:.0%}")
        # Hover and selection outlines on top of the cells.
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for cell, colour, width in (
            (self._hover, mix(base, text, 0.7), 1.5),
            (self._selected, palette.color(QPalette.ColorRole.Highlight), 2.5),
        ):
            if cell is None:
                continue
            i, j = cell
            rect = QRectF(g.origin.x() + j * g.cell + 1, g.origin.y() + i * g.cell + 1, g.cell - 2, g.cell - 2)
            painter.setPen(QPen(colour, width))
            painter.drawRoundedRect(rect, 3, 3)

        # Legend.
        painter.setFont(self.font())
        x = g.origin.x()
        y = g.legend_top
        swatch = metrics.height() - 4
        for colour, label in ((mix(base, accent, 0.75), "correct"), (mix(base, bad, 0.75), "mistakes")):
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour)
            painter.drawRoundedRect(QRectF(x, y + 3, swatch, swatch), 2, 2)
            painter.setPen(muted)
            x += swatch + 5
            painter.drawText(QRect(x, y, 200, metrics.height() + 2), Qt.AlignmentFlag.AlignVCenter, label)
            x += metrics.horizontalAdvance(label) + 16
        painter.drawText(
            QRect(x, y, max(0, self.width() - x - self.PAD), metrics.height() + 2),
            Qt.AlignmentFlag.AlignVCenter,
            metrics.elidedText("shade: share of the true class", Qt.TextElideMode.ElideRight, max(0, self.width() - x - self.PAD)),
        )
        painter.end()


# =========================================================================== per-class table


class _NumberItem(QTableWidgetItem):
    """A table cell that sorts by its number, not its text (undefined sorts first)."""

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a = self.data(_SORT_ROLE)
        b = other.data(_SORT_ROLE)
        a = -1.0 if a is None or (isinstance(a, float) and math.isnan(a)) else a
        b = -1.0 if b is None or (isinstance(b, float) and math.isnan(b)) else b
        return a < b


class _ShareBarDelegate(QStyledItemDelegate):
    """Draws a proportional bar behind a 0..1 value so the weak classes stand out."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        value = index.data(_SORT_ROLE)
        if isinstance(value, float) and not math.isnan(value):
            palette = option.palette
            base = palette.color(QPalette.ColorRole.Base)
            colour = semantic_colour("accent" if value >= 0.5 else "bad", palette)
            bar = QRectF(option.rect.adjusted(3, 4, -3, -4))
            bar.setWidth(bar.width() * max(0.0, min(1.0, value)))
            painter.save()
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(mix(base, colour, 0.28))
            painter.drawRoundedRect(bar, 2, 2)
            painter.restore()
        super().paint(painter, option, index)


# =========================================================================== gallery


class _GalleryDelegate(QStyledItemDelegate):
    """A thumbnail with its true and predicted class under it."""

    def __init__(self, loader: ThumbnailLoader, parent: QWidget) -> None:
        super().__init__(parent)
        self._loader = loader
        self._pixmaps: dict[str, QPixmap] = {}
        self.text_width = 0  # the widest label line in the gallery, set by the view

    def forget(self) -> None:
        self._pixmaps.clear()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        line = option.fontMetrics.height()
        width = min(max(THUMBNAIL_SIDE + 28, self.text_width + 20), 2 * THUMBNAIL_SIDE)
        return QSize(width, THUMBNAIL_SIDE + 2 * line + 24)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        entry = index.data(_ENTRY_ROLE)
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
            int(tile.x() + (tile.width() - THUMBNAIL_SIDE) / 2), int(tile.y() + 8), THUMBNAIL_SIDE, THUMBNAIL_SIDE
        )
        path = entry["path"]
        pixmap = self._pixmaps.get(path)
        if pixmap is None:
            image = self._loader.image(path)
            if image is not None:
                pixmap = QPixmap.fromImage(image)
                self._pixmaps[path] = pixmap
        if pixmap is None:
            broken = self._loader.error(path) is not None
            if not broken:
                self._loader.request(path)
            pixmap = placeholder_pixmap(THUMBNAIL_SIDE, palette, broken=broken)
        scaled = pixmap.size().scaled(box.size(), Qt.AspectRatioMode.KeepAspectRatio)
        if pixmap.width() <= box.width() and pixmap.height() <= box.height():
            # Small images grow by a whole factor so their pixels stay crisp.
            factor = max(1, min(box.width() // max(1, pixmap.width()), box.height() // max(1, pixmap.height())))
            scaled = pixmap.size() * factor
        target = QRect(
            box.x() + (box.width() - scaled.width()) // 2,
            box.y() + (box.height() - scaled.height()) // 2,
            scaled.width(),
            scaled.height(),
        )
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, scaled.width() < pixmap.width())
        painter.drawPixmap(target, pixmap)

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
                f"predicted: {entry['pred']} (p={float(entry['prob']):.2f})", Qt.TextElideMode.ElideMiddle, width
            ),
        )
        painter.restore()


class _GalleryView(QListView):
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
            painter.setPen(mix(palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Text), 0.55))
            painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
            painter.end()


class ImagePreviewDialog(QDialog):
    """One misclassified image, large, with its labels; arrows step through the gallery."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Misclassified image")
        self.resize(720, 640)
        self._loader = ThumbnailLoader(1024, self)
        self._loader.ready.connect(self._on_loaded)
        self._loader.failed.connect(self._on_failed)
        self._entries: list[dict[str, Any]] = []
        self._index = 0
        self._pixmap: QPixmap | None = None

        self.image_label = QLabel(self)
        self.image_label.setObjectName("previewImage")
        self.image_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image_label.setMinimumSize(240, 240)
        self.image_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.caption = QLabel(self)
        self.caption.setObjectName("previewCaption")
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        caption_font = QFont(self.caption.font())
        caption_font.setPointSizeF(caption_font.pointSizeF() * 1.15)
        self.caption.setFont(caption_font)
        self.path_label = QLabel(self)
        self.path_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.path_label.setWordWrap(True)

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
        layout.addWidget(self.image_label, 1)
        layout.addWidget(self.caption)
        layout.addWidget(self.path_label)
        layout.addLayout(buttons)

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
            f"true: <b>{_escape(entry['true'])}</b> / predicted: "
            f'<b style="color:{bad}">{_escape(entry["pred"])}</b> (p={float(entry["prob"]):.2f})'
        )
        self.caption.setToolTip(misclassified_label(entry))
        self.path_label.setText(os.path.normpath(entry["path"]))
        self.position_label.setText(f"{self._index + 1} of {len(self._entries)}")
        self.previous_button.setEnabled(self._index > 0)
        self.next_button.setEnabled(self._index < len(self._entries) - 1)
        self._pixmap = None
        path = entry["path"]
        image = self._loader.image(path)
        if image is not None:
            self._set_image(image)
        elif self._loader.error(path):
            self._on_failed(path, self._loader.error(path) or "")
        else:
            self.image_label.setPixmap(QPixmap())
            self.image_label.setText("Loading…")
            self._loader.request(path)

    def current_entry(self) -> dict[str, Any] | None:
        return self._entries[self._index] if self._entries else None

    def has_image(self) -> bool:
        return self._pixmap is not None

    def _current_path(self) -> str | None:
        entry = self.current_entry()
        return entry["path"] if entry else None

    def _on_loaded(self, path: str) -> None:
        image = self._loader.image(path)
        if path == self._current_path() and image is not None:
            self._set_image(image)

    def _on_failed(self, path: str, reason: str) -> None:
        if path == self._current_path():
            self._pixmap = None
            self.image_label.setPixmap(QPixmap())
            self.image_label.setText(f"This image cannot be shown:\n{reason}")

    def _set_image(self, image) -> None:
        self._pixmap = QPixmap.fromImage(image)
        self.image_label.setText("")
        self._fit_pixmap()

    def _fit_pixmap(self) -> None:
        if self._pixmap is None:
            return
        area = self.image_label.size()
        pixmap = self._pixmap
        if pixmap.width() > area.width() or pixmap.height() > area.height():
            pixmap = pixmap.scaled(area, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        elif pixmap.width() * 2 <= area.width() and pixmap.height() * 2 <= area.height():
            # Small validation images are shown enlarged (pixels kept sharp), not as a postage stamp.
            factor = min(area.width() // pixmap.width(), area.height() // pixmap.height())
            pixmap = pixmap.scaled(pixmap.size() * factor, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)
        self.image_label.setPixmap(pixmap)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit_pixmap()


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
            precision, recall = _precision_recall(confusion)
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
        self._fill_table(precision, recall)
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

    def open_preview(self, row: int) -> ImagePreviewDialog:
        """Enlarge the gallery's image at ``row`` (what a click does)."""
        if self._preview is None:
            self._preview = ImagePreviewDialog(self)
        entries = [
            self._gallery_model.item(r).data(_ENTRY_ROLE) for r in range(self._gallery_model.rowCount())
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
        self.table = QTableWidget(0, 4, page)
        self.table.setObjectName("perClassTable")
        self.table.setHorizontalHeaderLabels(["Class", "Precision", "Recall", "Support"])
        self.table.horizontalHeaderItem(1).setToolTip("Of the images predicted as this class, the share that really are")
        self.table.horizontalHeaderItem(2).setToolTip("Of the images of this class, the share the model recognised")
        self.table.horizontalHeaderItem(3).setToolTip("Validation images of this class")
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setMinimumWidth(340)
        self.table.setSortingEnabled(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setMinimumSectionSize(64)
        bar_delegate = _ShareBarDelegate(self.table)
        self.table.setItemDelegateForColumn(1, bar_delegate)
        self.table.setItemDelegateForColumn(2, bar_delegate)
        self.table.itemSelectionChanged.connect(self._on_table_selection)
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
        self.gallery = _GalleryView(page)
        self.gallery.setObjectName("misclassifiedGallery")
        self.gallery.setModel(self._gallery_model)
        self._gallery_delegate = _GalleryDelegate(self._thumbnails, self.gallery)
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

    def _fill_table(self, precision: Sequence[float], recall: Sequence[float]) -> None:
        n = len(self._class_names)
        support = [sum(row) for row in self._confusion]
        predicted = [sum(self._confusion[i][j] for i in range(n)) for j in range(n)]
        self.table.setSortingEnabled(False)
        self.table.clearSelection()
        self.table.setRowCount(n)
        for i, name in enumerate(self._class_names):
            name_item = QTableWidgetItem(name)
            name_item.setToolTip(name)
            self.table.setItem(i, 0, name_item)
            p = _as_float(precision[i]) if predicted[i] else float("nan")
            r = _as_float(recall[i]) if support[i] else float("nan")
            self.table.setItem(i, 1, _share_item(p, "No validation image was predicted as this class"))
            self.table.setItem(i, 2, _share_item(r, "This class has no validation images"))
            support_item = _NumberItem(str(support[i]))
            support_item.setData(_SORT_ROLE, float(support[i]))
            support_item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(i, 3, support_item)
        # Class order until the user sorts by a column.
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)

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
                text += f" &nbsp;·&nbsp; hardest class: <b>{_escape(weakest[0])}</b> (recall {weakest[1]:.0%})"
        if caption:
            text += f' &nbsp;<span style="color:{semantic_colour("muted", self.palette()).name()}">({_escape(caption)})</span>'
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
            item.setData(entry, _ENTRY_ROLE)
            item.setToolTip(f"{label}\n{os.path.normpath(entry['path'])}\nClick to enlarge")
            item.setEditable(False)
            self._gallery_model.appendRow(item)

        total = len(self._misclassified)
        self.gallery_title.setText(f"Misclassified validation images ({total})")
        filtered = true_name is not None or pred_name is not None
        if filtered:
            what = f"true <b>{_escape(true_name or 'any')}</b>"
            if pred_name is not None:
                what += f", predicted <b>{_escape(pred_name)}</b>"
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

    def _on_table_selection(self) -> None:
        rows = {index.row() for index in self.table.selectionModel().selectedRows()}
        if len(rows) != 1:
            return
        item = self.table.item(rows.pop(), 0)
        if item is not None:
            self.set_gallery_filter(item.text(), None)

    def _on_thumbnail_failed(self, path: str, reason: str) -> None:
        for row in range(self._gallery_model.rowCount()):
            item = self._gallery_model.item(row)
            entry = item.data(_ENTRY_ROLE)
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


def _share_item(value: float, undefined_reason: str) -> QTableWidgetItem:
    if math.isnan(value):
        item = _NumberItem("—")
        item.setToolTip(undefined_reason)
    else:
        item = _NumberItem(f"{value:.1%}")
    item.setData(_SORT_ROLE, value)
    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


def _precision_recall(confusion: Sequence[Sequence[int]]) -> tuple[list[float], list[float]]:
    n = len(confusion)
    precision, recall = [], []
    for i in range(n):
        predicted = sum(int(confusion[r][i]) for r in range(n))
        actual = sum(int(v) for v in confusion[i])
        precision.append(confusion[i][i] / predicted if predicted else 0.0)
        recall.append(confusion[i][i] / actual if actual else 0.0)
    return precision, recall


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _escape(text: Any) -> str:
    import html

    return html.escape(str(text))

