"""What the dataset browser lists: one :class:`BrowserItem` per image or skipped file of a
checked dataset, and the list model that filters them by class and split.

The model knows the project's current ``data.exclude`` too, so an image left out shows as
left out at once, before the data is checked again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from ..core.exclusions import exclusion_keys, same_exclusion

#: Where a row keeps its :class:`BrowserItem`.
ITEM_ROLE = Qt.ItemDataRole.UserRole + 1

#: The split filter's choices, in the order shown ("all": every image, left out ones too).
SHOW_CHOICES = (
    ("all", "All images"),
    ("train", "Train"),
    ("val", "Validation"),
    ("test", "Test"),
    ("excluded", "Left out"),
    ("skipped", "Skipped files"),
)
SUBSET_NAMES = {
    "train": "train",
    "val": "validation",
    "test": "test",
    "excluded": "left out",
    "back": "brought back",
}


@dataclass(frozen=True)
class BrowserItem:
    """One image (or skipped file) of the dataset as the browser lists it."""

    path: str
    #: How ``data.exclude`` names it (relative to the dataset folder, / separators).
    key: str
    class_name: str  # "" for a skipped file outside any class folder
    subset: str  # train, val, test, excluded (by the last check) or skipped
    reason: str = ""  # why a skipped file was skipped


def browser_items(prepared: Any) -> list[BrowserItem]:
    """The images of ``prepared`` by class, then path; then the skipped files."""
    root = prepared.root
    names = prepared.class_names
    listed = [
        (path, label, subset)
        for subset in ("train", "val", "test", "excluded")
        for path, label in getattr(prepared, subset)
    ]
    keys = exclusion_keys([path for path, _label, _subset in listed], root)
    images = [
        BrowserItem(path, key, names[label], subset) for (path, label, subset), key in zip(listed, keys)
    ]
    order = {name: i for i, name in enumerate(names)}
    images.sort(key=lambda item: (order[item.class_name], item.key))
    unusable = [*prepared.bad_files, *prepared.ignored]
    skipped = []
    for (path, reason), key in zip(unusable, exclusion_keys([path for path, _reason in unusable], root)):
        folder = Path(path).parent.name
        skipped.append(BrowserItem(path, key, folder if folder in order else "", "skipped", reason))
    return images + skipped


class DatasetModel(QAbstractListModel):
    """The dataset's items, filtered by class and split; one row per item shown.

    ``left_out`` is the project's current ``data.exclude`` (as :func:`same_exclusion`
    keys): an image in it shows as left out at once, before the data is checked again.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._items: list[BrowserItem] = []
        self._rows: list[BrowserItem] = []
        self._forms: dict[str, str] = {}  # key -> same_exclusion(key), worked out once
        self._left_out: set[str] = set()
        self._class: str | None = None
        self._show = "all"

    # ------------------------------------------------------------ Qt model

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self._rows)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        item = self._rows[index.row()]
        if role == ITEM_ROLE:
            return item
        if role == Qt.ItemDataRole.DisplayRole:
            return os.path.basename(item.path)
        if role == Qt.ItemDataRole.ToolTipRole:
            state = SUBSET_NAMES.get(self.state_of(item), item.subset)
            if item.subset == "skipped":
                return f"{item.key}\nskipped: {item.reason}"
            return f"{item.key}\nclass {item.class_name} · {state}"
        return None

    # ------------------------------------------------------------ contents

    def set_items(self, items: list[BrowserItem], left_out: Iterable[str] | None = None) -> None:
        self._items = list(items)
        self._forms = {}  # only these items' keys are asked for from now on
        if left_out is not None:
            self._left_out = {same_exclusion(key) for key in left_out}
        self._refilter()

    def set_left_out(self, keys: Iterable[str]) -> None:
        self._left_out = {same_exclusion(key) for key in keys}
        self._refilter()

    def set_filter(self, class_name: str | None, show: str) -> None:
        self._class, self._show = class_name, show
        self._refilter()

    def items(self) -> list[BrowserItem]:
        return list(self._items)

    def shown(self) -> list[BrowserItem]:
        return list(self._rows)

    def item(self, row: int) -> BrowserItem:
        return self._rows[row]

    def row_of(self, key: str) -> int:
        return next((row for row, item in enumerate(self._rows) if item.key == key), -1)

    def state_of(self, item: BrowserItem) -> str:
        """train, val, test, excluded, skipped, or back (brought back, not yet checked)."""
        if item.subset == "skipped":
            return "skipped"
        if self._left_out and self._exclusion_form(item.key) in self._left_out:
            return "excluded"
        return "back" if item.subset == "excluded" else item.subset

    def _exclusion_form(self, key: str) -> str:
        form = self._forms.get(key)
        if form is None:
            form = self._forms[key] = same_exclusion(key)
        return form

    def is_left_out(self, item: BrowserItem) -> bool:
        return self.state_of(item) == "excluded"

    def counts(self, class_name: str | None = None) -> dict[str, int]:
        """Items per filter choice (for ``class_name``, or every class)."""
        counts = {key: 0 for key, _label in SHOW_CHOICES}
        for item in self._items:
            if class_name is not None and item.class_name != class_name:
                continue
            state = self.state_of(item)
            if state in counts:  # one brought back is among all images only, until checked
                counts[state] += 1
            if state != "skipped":
                counts["all"] += 1
        return counts

    def _matches(self, item: BrowserItem) -> bool:
        if self._class is not None and item.class_name != self._class:
            return False
        state = self.state_of(item)
        if self._show == "all":  # left-out images among them, dimmed, where they were
            return state != "skipped"
        return state == self._show

    def _refilter(self) -> None:
        rows = [item for item in self._items if self._matches(item)]
        if [item.key for item in rows] == [item.key for item in self._rows]:
            # The same rows (e.g. one image left out among all): repaint them, and the
            # view keeps its selection and scroll position.
            self._rows = rows
            if rows:
                self.dataChanged.emit(self.index(0), self.index(len(rows) - 1))
            return
        self.beginResetModel()
        self._rows = rows
        self.endResetModel()
