"""The files a data check skipped, one row each with the reason (unreadable, or not an image
of a class), as the dataset browser lists them; rows can be limited to one class folder.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from .dataset_items import BrowserItem
from .icons import placeholder_pixmap

#: Where a row's first cell keeps the class folder its file is in ("" outside any).
CLASS_ROLE = Qt.ItemDataRole.UserRole + 1


class SkippedFilesTable(QTableWidget):
    """File and why it was skipped, beside a broken-image mark."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 2, parent)
        self.setObjectName("browserSkipped")
        self.setHorizontalHeaderLabels(["File", "Why it was skipped"])
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setWordWrap(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.setIconSize(QSize(32, 32))
        self.verticalHeader().setDefaultSectionSize(40)

    def show_items(self, items: list[BrowserItem]) -> None:
        icon = QIcon(placeholder_pixmap(32, self.palette(), broken=True))
        self.setRowCount(len(items))
        for row, item in enumerate(items):
            name = QTableWidgetItem(icon, item.key)
            name.setToolTip(item.path)
            name.setData(CLASS_ROLE, item.class_name)
            self.setItem(row, 0, name)
            reason = QTableWidgetItem(item.reason)
            reason.setToolTip(item.reason)
            self.setItem(row, 1, reason)
        self.resizeColumnToContents(0)
        self.setColumnWidth(0, min(self.columnWidth(0), 420))

    def show_class(self, class_name: str | None) -> None:
        """Show only the files in ``class_name``'s folder (every file for None)."""
        for row in range(self.rowCount()):
            of_class = self.item(row, 0).data(CLASS_ROLE)
            self.setRowHidden(row, class_name is not None and of_class != class_name)

    def shown_count(self) -> int:
        return sum(not self.isRowHidden(row) for row in range(self.rowCount()))
