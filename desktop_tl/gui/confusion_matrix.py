"""The confusion matrix heat map of the evaluation view.

Rows are the true class, columns the predicted class; each cell is shaded by its share of
the true class. Hovering explains a cell in words; clicking one emits its indices. The
Runs tab saves the same drawing as PNG or SVG (:func:`save_matrix_image`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PySide6.QtCore import QEvent, QPoint, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics, QMouseEvent, QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from ..errors import UserError
from .icons import mix, readable_text_on, semantic_colour


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
    MAX_CELL = 180  # large enough that the matrix grows with the window
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
        self._normalised = False  # cells show each row's shares instead of counts
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

    def set_normalised(self, on: bool) -> None:
        """Show each cell as its share of the true class (row) instead of its count."""
        self._normalised = bool(on)
        self.update()

    def is_normalised(self) -> bool:
        return self._normalised

    def displayed_values(self) -> list[list[float]]:
        """What the cells show: counts, or row shares (each row sums to 1; an empty
        row stays 0) when normalised."""
        if not self._normalised:
            return [[float(v) for v in row] for row in self._matrix]
        return [
            [v / total if total else 0.0 for v in row] for row, total in zip(self._matrix, self._row_totals)
        ]

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
            text = f"{count} of the {total} '{true_name}' images were recognised correctly ({share})."
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
                rect = QRectF(
                    g.origin.x() + j * g.cell + 1, g.origin.y() + i * g.cell + 1, g.cell - 2, g.cell - 2
                )
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
                label = f"{count / total:.0%}" if self._normalised and total else f"{count}"
                count_rect = rect.adjusted(2, 2, -2, -2)
                if show_share and count:
                    count_rect = QRectF(
                        rect.x(), rect.y() + rect.height() * 0.12, rect.width(), rect.height() * 0.5
                    )
                painter.drawText(count_rect, Qt.AlignmentFlag.AlignCenter, label)
                if show_share and count:
                    painter.setFont(share_font)
                    share_rect = QRectF(
                        rect.x(), rect.y() + rect.height() * 0.55, rect.width(), rect.height() * 0.35
                    )
                    second = f"{count}" if self._normalised else f"{count / total:.0%}"
                    painter.drawText(share_rect, Qt.AlignmentFlag.AlignCenter, second)
        # Hover and selection outlines on top of the cells.
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for cell, colour, width in (
            (self._hover, mix(base, text, 0.7), 1.5),
            (self._selected, palette.color(QPalette.ColorRole.Highlight), 2.5),
        ):
            if cell is None:
                continue
            i, j = cell
            rect = QRectF(
                g.origin.x() + j * g.cell + 1, g.origin.y() + i * g.cell + 1, g.cell - 2, g.cell - 2
            )
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
            metrics.elidedText(
                "shade: share of the true class",
                Qt.TextElideMode.ElideRight,
                max(0, self.width() - x - self.PAD),
            ),
        )
        painter.end()


def save_matrix_image(
    class_names: Sequence[str],
    confusion: Sequence[Sequence[int]],
    path: str | os.PathLike[str],
    *,
    title: str = "Confusion matrix",
) -> Path:
    """The matrix drawn as in the Evaluation tab, saved as PNG or SVG (by the suffix)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise UserError(
            f"a confusion matrix can be saved as .png or .svg, not {suffix or 'a file without extension'}"
        )
    if not path.parent.is_dir():
        raise UserError(f"folder {path.parent} does not exist")
    widget = ConfusionMatrixWidget()
    widget.set_matrix(class_names, confusion)
    side = max(420, min(1400, 140 + 70 * len(class_names)))
    widget.resize(side, side)
    if suffix == ".png":
        if not widget.grab().save(str(path)):
            raise UserError(f"could not write {path}")
    else:
        from PySide6.QtSvg import QSvgGenerator

        generator = QSvgGenerator()
        generator.setFileName(str(path))
        generator.setSize(QSize(side, side))
        generator.setViewBox(QRect(0, 0, side, side))
        generator.setTitle(title)
        painter = QPainter(generator)
        widget.render(painter)
        painter.end()
        if not path.exists():
            raise UserError(f"could not write {path}")
    widget.deleteLater()
    return path
