"""What a data check found, as the data panel shows it: a table of images per class and
split (:class:`ClassCountsTable`) and the one-line summary over it (:func:`summary_text`).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

#: The table's split columns.
SUBSET_COLUMNS = (("train", 1), ("val", 2), ("test", 3))


class ClassCountsTable(QTableWidget):
    """One row per class with its train, validation and test image counts; the test
    column only when the data has a test split."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 4, parent)
        self.setHorizontalHeaderLabels(["Class", "Train", "Validation", "Test"])
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def show_counts(self, prepared: Any) -> None:
        counts = prepared.counts()
        self.setColumnHidden(3, not prepared.test)
        self.setRowCount(len(prepared.class_names))
        for row, name in enumerate(prepared.class_names):
            self.setItem(row, 0, QTableWidgetItem(name))
            for subset, column in SUBSET_COLUMNS:
                n = counts.get(subset, {}).get(name, 0)
                item = QTableWidgetItem(str(n))
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.setItem(row, column, item)
        fit_table_height(self, len(prepared.class_names), max_rows=12)


def fit_table_height(table: QTableWidget, rows: int, max_rows: int) -> None:
    """As tall as its rows (up to ``max_rows``, then it scrolls)."""
    shown = max(1, min(rows, max_rows))
    height = (
        table.horizontalHeader().sizeHint().height()
        + shown * table.verticalHeader().defaultSectionSize()
        + 2 * table.frameWidth()
        + 6
    )
    table.setFixedHeight(height)


def summary_text(prepared: Any) -> str:
    """Classes, images, the split and how many the user left out, on one line."""
    total = len(prepared.train) + len(prepared.val) + len(prepared.test)
    parts = [
        f"{len(prepared.class_names)} classes",
        f"{total:,} images",
        f"{len(prepared.train):,} train / {len(prepared.val):,} validation",
    ]
    if prepared.test:
        parts[-1] += f" / {len(prepared.test):,} test"
    excluded = len(getattr(prepared, "excluded", ()))
    if excluded:
        parts.append(f"{excluded:,} left out by you")
    return "  ·  ".join(parts)
