"""The Runs tab's table of runs: its columns, one row of cells per run (sortable by value,
its status coloured) and the filter by words typed and status.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QPalette, QStandardItem
from PySide6.QtWidgets import QWidget

from ..core.run_history import RunRecord, format_share
from .icons import semantic_colour

COLUMNS = (
    "Name",
    "Date",
    "Dataset",
    "Backbone",
    "Freeze",
    "Head",
    "Epochs",
    "Val acc",
    "Best val acc",
    "Duration",
    "Status",
)
STATUS_FILTERS = (
    "All statuses",
    "completed",
    "early-stopped",
    "cancelled",
    "failed",
    "running",
    "interrupted",
    "damaged",
)
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
PATH_ROLE = Qt.ItemDataRole.UserRole + 2
STATUS_COLOURS = {
    "completed": "good",
    "early-stopped": "good",
    "cancelled": "warning",
    "failed": "bad",
    "damaged": "bad",
    "interrupted": "warning",
    "running": "accent",
}


class RunFilter(QSortFilterProxyModel):
    """Rows whose text contains every word typed, with the chosen status."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.words: list[str] = []
        self.status = ""
        self.setSortRole(SORT_ROLE)

    def set_filter(self, text: str, status: str) -> None:
        self.words = text.lower().split()
        self.status = status
        self.invalidate()

    def filterAcceptsRow(self, row: int, parent: QModelIndex) -> bool:  # noqa: N802 - Qt override
        model = self.sourceModel()
        record: RunRecord = model.item(row, 0).data(Qt.ItemDataRole.UserRole)
        if self.status and record.status != self.status:
            return False
        haystack = " ".join(
            [
                record.name,
                record.folder_name,
                record.note,
                record.dataset,
                record.backbone,
                record.head,
                record.freeze,
                record.status,
            ]
        ).lower()
        return all(word in haystack for word in self.words)


def run_row(record: RunRecord, palette: QPalette) -> list[QStandardItem]:
    """The table's cells for ``record``: text shown, a key to sort by and the run's folder
    in each; the record itself in the first."""
    values = [
        (record.name, record.name.lower()),
        (record.date_text, record.started or 0.0),
        (record.dataset_name, record.dataset_name.lower()),
        (record.backbone, record.backbone),
        (record.freeze, record.freeze),
        (record.head, record.head),
        (record.epochs_text, record.epochs_completed if record.epochs_completed is not None else -1),
        (format_share(record.val_acc), record.val_acc if record.val_acc is not None else -1.0),
        (format_share(record.best_val_acc), record.best_val_acc if record.best_val_acc is not None else -1.0),
        (record.duration_text, record.duration_s if record.duration_s is not None else -1.0),
        (record.status, record.status),
    ]
    items = []
    for text, key in values:
        item = QStandardItem(text)
        item.setData(key, SORT_ROLE)
        item.setData(str(record.path), PATH_ROLE)
        items.append(item)
    items[0].setData(record, Qt.ItemDataRole.UserRole)
    tips = [str(record.path)]
    if record.renamed:
        tips.append(f"folder: {record.folder_name}")
    if record.note:
        tips.append(f"note: {record.note}")
    if record.problem:
        tips.append(f"problem: {record.problem}")
    items[0].setToolTip("\n".join(tips))
    items[2].setToolTip(record.dataset)
    if record.problem:
        items[0].setText(f"⚠ {record.name}")
    status = items[-1]
    if record.reason or record.problem:
        status.setToolTip(record.problem or record.reason)
    colour = STATUS_COLOURS.get(record.status)
    if colour:
        status.setForeground(semantic_colour(colour, palette))
    return items
