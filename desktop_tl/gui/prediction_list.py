"""The prediction view's list: one row per image, in the order shown, with its result.

The list keeps its rows in the order it shows them: :meth:`PredictionList.arrange`
sorts and filters them in place by the filter bar's rules (prediction_filter), keeping
the current row. Each item's tooltip repeats its result in words; thumbnails are read
off the GUI thread, the first ones as soon as images are added.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView

from .prediction_filter import row_visible, sort_key
from .prediction_rows import (
    ROW_ROLE,
    THUMBNAIL_SIDE,
    PredictionDelegate,
    PredictionRow,
    ResultList,
    format_probability,
)
from .thumbnails import ThumbnailLoader

#: Thumbnails read as soon as images are added (the rest when their rows are shown), so
#: they are ready when the list is first looked at.
EAGER_THUMBNAILS = 48


class PredictionList(ResultList):
    """The rows; ``view`` is the prediction view, whose model and top-k they are painted
    and described with."""

    def __init__(self, view: Any) -> None:
        super().__init__(view)
        self._view = view
        self._rows: list[PredictionRow] = []
        self._items: dict[str, QStandardItem] = {}
        self._added: dict[str, int] = {}  # path -> when it was added ("Order added")
        self.thumbnails = ThumbnailLoader(THUMBNAIL_SIDE, self)
        self.thumbnails.ready.connect(lambda _path: self.viewport().update())
        self.thumbnails.failed.connect(lambda _path, _reason: self.viewport().update())
        self._model = QStandardItemModel(self)
        self.setModel(self._model)
        self._delegate = PredictionDelegate(view, self.thumbnails)
        self.setItemDelegate(self._delegate)
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)

    @property
    def rows(self) -> list[PredictionRow]:
        """The rows in the order shown (the list's own, not copies)."""
        return self._rows

    def copies(self) -> list[PredictionRow]:
        """The rows in the order shown, as copies."""
        return [PredictionRow(r.path, r.status, list(r.top), r.error) for r in self._rows]

    def row(self, place: int) -> PredictionRow | None:
        """The row at ``place`` in the order shown (None outside the list)."""
        return self._rows[place] if 0 <= place < len(self._rows) else None

    def current_row(self) -> PredictionRow | None:
        return self.row(self.currentIndex().row())

    def add(self, paths: Iterable[str], status: str) -> list[str]:
        """List the files not listed yet, with ``status``; returns their full paths."""
        new: list[str] = []
        for path in paths:
            key = os.path.abspath(path)
            if key in self._items:
                continue
            row = PredictionRow(key, status=status)
            item = QStandardItem()
            item.setData(row, ROW_ROLE)
            item.setData(key, Qt.ItemDataRole.DisplayRole)
            item.setToolTip(key)
            item.setEditable(False)
            self._rows.append(row)
            self._items[key] = item
            self._added[key] = len(self._added)
            self._model.appendRow(item)
            new.append(key)
        if new:
            self.scrollTo(self._model.indexFromItem(self._items[new[0]]))
            for path in new[:EAGER_THUMBNAILS]:
                self.thumbnails.request(path)
        return new

    def set_result(self, path: str, status: str, error: str | None, top: list[tuple[str, float]]) -> None:
        """What the model said about the image at ``path`` (nothing when it is no longer listed)."""
        item = self._items.get(path)
        if item is None:
            return
        row: PredictionRow = item.data(ROW_ROLE)
        row.status, row.error, row.top = status, error, top
        self._refresh_item(item, row)

    def clear_results(self, status: str) -> None:
        """Every row back to ``status``, without a result (another model, or none)."""
        for row in self._rows:
            row.status = status
            row.top = []
            row.error = None
        self.refresh()

    def refresh(self) -> None:
        """Describe every row's result again (the top-k changed)."""
        for row in self._rows:
            item = self._items.get(row.path)
            if item is not None:
                self._refresh_item(item, row)

    def _refresh_item(self, item: QStandardItem, row: PredictionRow) -> None:
        if row.status == "done" and row.top:
            lines = "\n".join(f"{name}: {format_probability(p)}" for name, p in row.top[: self._view.top_k])
            item.setToolTip(f"{row.path}\n{lines}")
        elif row.status == "error":
            item.setToolTip(f"{row.path}\n{row.error}")
        else:
            item.setToolTip(row.path)
        item.setData(row, ROW_ROLE)  # tells the view to repaint the row

    def arrange(self, sort: str, label: str, min_confidence: float) -> int:
        """Order the rows by ``sort`` and show those of ``label`` with at least
        ``min_confidence`` (prediction_filter's rules); returns how many are shown."""
        wanted = sorted(self._rows, key=sort_key(sort, self._added))
        if [r.path for r in wanted] != [r.path for r in self._rows]:
            current = self.currentIndex()
            keep = self._rows[current.row()].path if current.isValid() else None
            items = [self._model.takeRow(0)[0] for _ in range(self._model.rowCount())]
            by_path = {item.data(Qt.ItemDataRole.DisplayRole): item for item in items}
            self._rows = wanted
            for row in wanted:
                self._model.appendRow(by_path[row.path])
            if keep is not None:
                self.setCurrentIndex(self._model.indexFromItem(self._items[keep]))
        shown = 0
        for index, row in enumerate(self._rows):
            visible = row_visible(row, label, min_confidence)
            self.setRowHidden(index, not visible)
            shown += visible
        return shown

    def shown_rows(self) -> list[PredictionRow]:
        """The rows the filter lets through, in the order shown (copies)."""
        return [r for i, r in enumerate(self.copies()) if not self.isRowHidden(i)]

    def remove_selected(self) -> None:
        rows = sorted({index.row() for index in self.selectionModel().selectedIndexes()}, reverse=True)
        for r in rows:
            row = self._rows.pop(r)
            self._items.pop(row.path, None)
            self._added.pop(row.path, None)
            self._model.removeRow(r)

    def remove_all(self) -> None:
        self.thumbnails.clear()
        self._delegate.forget()
        self._rows.clear()
        self._items.clear()
        self._added.clear()
        self._model.clear()

    def thumbnail_ready(self, path: str) -> bool:
        """True once the row's thumbnail has been read (or found unreadable)."""
        return self.thumbnails.image(path) is not None or self.thumbnails.error(path) is not None
