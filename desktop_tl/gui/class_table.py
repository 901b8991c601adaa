"""The per-class table of the evaluation view: precision, recall, support and F1 per class.

Rates sort by value (undefined ones first) and carry a bar so weak classes stand out;
selecting a row names its class through :attr:`PerClassTable.class_chosen`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from PySide6.QtCore import QModelIndex, QRectF, Qt, Signal
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from .icons import mix, semantic_colour

_SORT_ROLE = Qt.ItemDataRole.UserRole + 2


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


class PerClassTable(QTableWidget):
    """Class, precision, recall, support and F1, one row per class."""

    class_chosen = Signal(str)  # the class of the row the user selected

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 5, parent)
        self.setObjectName("perClassTable")
        self.setHorizontalHeaderLabels(["Class", "Precision", "Recall", "Support", "F1"])
        self.horizontalHeaderItem(1).setToolTip(
            "Of the images predicted as this class, the share that really are"
        )
        self.horizontalHeaderItem(2).setToolTip("Of the images of this class, the share the model recognised")
        self.horizontalHeaderItem(3).setToolTip("Validation images of this class")
        self.horizontalHeaderItem(4).setToolTip(
            "The harmonic mean of precision and recall: high only when both are"
        )
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setAlternatingRowColors(True)
        self.setShowGrid(False)
        self.setWordWrap(False)
        self.setMinimumWidth(340)
        self.setSortingEnabled(True)
        header = self.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3, 4):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setMinimumSectionSize(64)
        bar_delegate = _ShareBarDelegate(self)
        self.setItemDelegateForColumn(1, bar_delegate)
        self.setItemDelegateForColumn(2, bar_delegate)
        self.setItemDelegateForColumn(4, bar_delegate)
        self.itemSelectionChanged.connect(self._on_selection)

    def fill(
        self,
        class_names: Sequence[str],
        confusion: Sequence[Sequence[int]],
        precision: Sequence[float],
        recall: Sequence[float],
        f1: Sequence[float] | None = None,
    ) -> None:
        """One row per class; a rate with nothing to divide by shows as a dash. F1 is
        derived from precision and recall when not given."""
        n = len(class_names)
        support = [sum(row) for row in confusion]
        predicted = [sum(confusion[i][j] for i in range(n)) for j in range(n)]
        self.setSortingEnabled(False)
        self.clearSelection()
        self.setRowCount(n)
        for i, name in enumerate(class_names):
            name_item = QTableWidgetItem(name)
            name_item.setToolTip(name)
            self.setItem(i, 0, name_item)
            p = _as_float(precision[i]) if predicted[i] else float("nan")
            r = _as_float(recall[i]) if support[i] else float("nan")
            self.setItem(i, 1, _share_item(p, "No validation image was predicted as this class"))
            self.setItem(i, 2, _share_item(r, "This class has no validation images"))
            support_item = _NumberItem(str(support[i]))
            support_item.setData(_SORT_ROLE, float(support[i]))
            support_item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.setItem(i, 3, support_item)
            if math.isnan(p) and math.isnan(r):
                f = float("nan")
            elif f1 is not None:
                f = _as_float(f1[i])
            else:
                pp, rr = (0.0 if math.isnan(p) else p), (0.0 if math.isnan(r) else r)
                f = 2 * pp * rr / (pp + rr) if pp + rr > 0 else 0.0
            self.setItem(i, 4, _share_item(f, "No validation image of this class, none predicted as it"))
        # Class order until the user sorts by a column.
        self.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.setSortingEnabled(True)

    def _on_selection(self) -> None:
        rows = {index.row() for index in self.selectionModel().selectedRows()}
        if len(rows) != 1:
            return
        item = self.item(rows.pop(), 0)
        if item is not None:
            self.class_chosen.emit(item.text())


def _share_item(value: float, undefined_reason: str) -> QTableWidgetItem:
    if math.isnan(value):
        item = _NumberItem("—")
        item.setToolTip(undefined_reason)
    else:
        item = _NumberItem(f"{value:.1%}")
    item.setData(_SORT_ROLE, value)
    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
