"""The dataset browser: every image of the checked dataset as a thumbnail, by class and split.

This module holds the window: the class and split filters, the count line, and leaving
images out of training or bringing them back, which edits the project's ``data.exclude``
through the data panel (the panel checks the data again; the files stay where they are).
The grid is :mod:`~desktop_tl.gui.dataset_grid`, what it lists
:mod:`~desktop_tl.gui.dataset_items`, the enlarged image
:mod:`~desktop_tl.gui.dataset_image_dialog`, and the files the check skipped, with the
reason, :mod:`~desktop_tl.gui.skipped_files_table`.
"""

from __future__ import annotations

import html
from typing import Any, Iterable

from PySide6.QtCore import QEvent, QModelIndex, QObject, Qt, QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.exclusions import same_exclusion
from .dataset_grid import THUMBNAIL_SIDE, ImageGrid, ImageTileDelegate
from .dataset_image_dialog import ImageDialog
from .dataset_items import SHOW_CHOICES, BrowserItem, DatasetModel, browser_items
from .icons import semantic_colour
from .skipped_files_table import SkippedFilesTable
from .thumbnails import ThumbnailLoader

GRID_HINT = (
    "Double-click or press Enter to enlarge. Select images and leave them out of training "
    "(the files stay where they are; the project remembers them)."
)
SKIPPED_HINT = (
    "These files are not trained on: they cannot be read, or are not images of a class. "
    "Repair or remove them on disk, then choose the folder again."
)


class DatasetBrowser(QDialog):
    """Browse the dataset the data panel checked; leave images out of training or bring
    them back. ``panel`` is the :class:`~desktop_tl.gui.data_panel.DataPanel` whose
    project setting (``data.exclude``) is edited."""

    def __init__(self, panel: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.panel = panel
        self.setWindowTitle("Dataset images")
        self.setObjectName("datasetBrowser")
        self._root = ""
        self._shown: Any = None  # the panel's check on screen
        self._resets = 0  # how often the rows were replaced (see _keeping_place)
        self.preview: ImageDialog | None = None

        self.thumbnails = ThumbnailLoader(THUMBNAIL_SIDE, self)
        self.model = DatasetModel(self)
        self.grid = ImageGrid(self)
        self.grid.setModel(self.model)
        self.delegate = ImageTileDelegate(self.thumbnails, self.model, self.grid)
        self.grid.setItemDelegate(self.delegate)
        self.thumbnails.ready.connect(self._on_thumbnail)
        self.thumbnails.failed.connect(lambda path, _reason: self._on_thumbnail(path))
        self.grid.activated.connect(self._enlarge_index)
        self.grid.customContextMenuRequested.connect(self._show_context_menu)
        self.grid.selectionModel().selectionChanged.connect(lambda *_: self._update_actions())
        # Rows scrolled past are not worth reading any more: the queue holds what is in view.
        self._scroll_settle = QTimer(self)
        self._scroll_settle.setSingleShot(True)
        self._scroll_settle.setInterval(60)
        self._scroll_settle.timeout.connect(self._drop_offscreen_requests)
        self.grid.verticalScrollBar().valueChanged.connect(lambda _v: self._scroll_settle.start())

        self.skipped_table = SkippedFilesTable(self)

        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.grid)
        self.stack.addWidget(self.skipped_table)

        self.class_combo = QComboBox(self)
        self.class_combo.setToolTip("Show the images of one class")
        self.class_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.class_combo.setMinimumContentsLength(14)
        self.class_combo.currentIndexChanged.connect(lambda _i: self._apply_filter())
        self.show_group = QButtonGroup(self)
        self.show_group.setExclusive(True)
        self.show_buttons: dict[str, QToolButton] = {}
        filter_row = QHBoxLayout()
        filter_row.setSpacing(6)
        class_label = QLabel("Class", self)
        filter_row.addWidget(class_label)
        filter_row.addWidget(self.class_combo)
        filter_row.addSpacing(12)
        for key, label in SHOW_CHOICES:
            button = QToolButton(self)
            button.setCheckable(True)
            button.setText(label)
            button.setObjectName(f"show_{key}")
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            self.show_group.addButton(button)
            self.show_buttons[key] = button
            filter_row.addWidget(button)
            button.toggled.connect(lambda on, _k=key, b=button: self._on_show_toggled(b, on))
        filter_row.addStretch(1)
        self.show_buttons["all"].setToolTip(
            "Every image of the dataset; the ones left out of training are dimmed"
        )
        self.show_buttons["excluded"].setToolTip("Images you left out of training; the files are kept")
        self.show_buttons["skipped"].setToolTip("Files the data check skipped, with the reason")

        self.hint_label = QLabel(GRID_HINT, self)
        self.hint_label.setWordWrap(True)
        self.hint_label.setObjectName("browserHint")

        self.count_label = QLabel(self)
        self.count_label.setObjectName("browserCount")
        self.count_label.setWordWrap(True)
        self.count_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.leave_out_button = QPushButton("Leave out of training", self)
        self.leave_out_button.setShortcut(QKeySequence(Qt.Key.Key_Delete))
        self.leave_out_button.clicked.connect(lambda: self.set_left_out(self.selected_items(), True))
        self.bring_back_button = QPushButton("Bring back", self)
        self.bring_back_button.clicked.connect(lambda: self.set_left_out(self.selected_items(), False))
        close_button = QPushButton("Close", self)
        close_button.setAutoDefault(False)
        close_button.clicked.connect(self.close)
        for button in (self.leave_out_button, self.bring_back_button):
            button.setAutoDefault(False)
        bottom = QHBoxLayout()
        bottom.addWidget(self.count_label, 1)
        bottom.addWidget(self.leave_out_button)
        bottom.addWidget(self.bring_back_button)
        bottom.addSpacing(12)
        bottom.addWidget(close_button)

        layout = QVBoxLayout(self)
        layout.addLayout(filter_row)
        layout.addWidget(self.hint_label)
        layout.addWidget(self.stack, 1)
        layout.addLayout(bottom)

        self.model.modelReset.connect(self._on_rows_changed)
        self.show_buttons["all"].setChecked(True)
        panel.prepared_changed.connect(self._on_prepared_changed)
        panel.busy_changed.connect(lambda _busy: self._update_status())
        panel.installEventFilter(self)  # the panel is locked while training: so is leaving out
        self.refresh()

    # ------------------------------------------------------------ contents

    def refresh(self) -> None:
        """Show what the panel has checked (keeping the last check while it checks again)."""
        prepared = self.panel.prepared
        if prepared is not None:
            self._show_prepared(prepared)
        self._update_status()

    def _on_prepared_changed(self, prepared: Any) -> None:
        if prepared is not None:
            self._show_prepared(prepared)
        elif not self.panel.path_edit.text().strip():
            self._root = ""
            self._shown = None
            self.model.set_items([])
            self.skipped_table.show_items([])
            self._fill_classes([])
        # While the panel checks again, the last check stays on screen with its marks.
        self._update_status()

    def _show_prepared(self, prepared: Any) -> None:
        if prepared is self._shown:  # shown already (opened, then shown): only the marks
            self.model.set_left_out(self.panel.excluded_images())
            return
        self._shown = prepared
        same_dataset = prepared.root == self._root
        if not same_dataset:
            self.thumbnails.clear()
            self.delegate.forget()
        self._root = prepared.root
        items = browser_items(prepared)

        def show() -> None:
            self.model.set_items(items, self.panel.excluded_images())
            self._fill_classes(prepared.class_names)

        if same_dataset:  # checked again (e.g. after leaving images out): stay in place
            self._keeping_place(show)
        else:
            show()
        self.skipped_table.show_items([item for item in items if item.subset == "skipped"])

    def _keeping_place(self, change: Any) -> None:
        """Run ``change`` (of the rows) keeping the selection and the scroll position."""
        selected = {item.key for item in self.selected_items()}
        current = self.grid.currentIndex()
        current_key = self.model.item(current.row()).key if current.isValid() else None
        bar = self.grid.verticalScrollBar()
        position = bar.value()
        resets = self._resets
        change()
        if self._resets == resets:
            return  # the same rows, repainted: nothing moved
        self.grid.doItemsLayout()
        selection = self.grid.selectionModel()
        for row, item in enumerate(self.model.shown()):
            if item.key in selected:
                selection.select(self.model.index(row), selection.SelectionFlag.Select)
        if current_key is not None and (row := self.model.row_of(current_key)) >= 0:
            selection.setCurrentIndex(self.model.index(row), selection.SelectionFlag.NoUpdate)
        bar.setValue(min(position, bar.maximum()))

    def _fill_classes(self, names: list[str]) -> None:
        chosen = self.class_combo.currentData()
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItem("All classes", None)
        for name in names:
            self.class_combo.addItem(name, name)
        index = self.class_combo.findData(chosen) if chosen is not None else 0
        self.class_combo.setCurrentIndex(max(0, index))
        self.class_combo.blockSignals(False)
        self._apply_filter()

    def _on_show_toggled(self, button: QToolButton, on: bool) -> None:
        font = button.font()
        font.setBold(on)  # the filter in use stands out at a glance
        button.setFont(font)
        if on:
            self._apply_filter()

    def _apply_filter(self) -> None:
        show = next((key for key, button in self.show_buttons.items() if button.isChecked()), "all")
        self.model.set_filter(self.class_combo.currentData(), show)
        self.stack.setCurrentWidget(self.skipped_table if show == "skipped" else self.grid)
        self.hint_label.setText(SKIPPED_HINT if show == "skipped" else GRID_HINT)
        for button in (self.leave_out_button, self.bring_back_button):
            button.setVisible(show != "skipped")
        if show == "skipped":
            self.skipped_table.show_class(self.class_combo.currentData())
        self._update_status()

    def _on_rows_changed(self) -> None:
        self._resets += 1
        self.thumbnails.cancel_pending()  # rows gone from view need not be read
        self.grid.placeholder = self._placeholder()
        self._update_status()

    def _placeholder(self) -> str:
        if not self.model.items():
            return "No checked dataset yet: choose a folder in the Data panel."
        show = next((key for key, button in self.show_buttons.items() if button.isChecked()), "all")
        if show == "excluded":
            return (
                "No image is left out. Select images and press “Leave out of training” to train without them."
            )
        return "No images here."

    # ------------------------------------------------------------ leaving out

    def selected_items(self) -> list[BrowserItem]:
        if self.stack.currentWidget() is not self.grid:
            return []
        rows = sorted(index.row() for index in self.grid.selectionModel().selectedIndexes())
        return [self.model.item(row) for row in rows if row < self.model.rowCount()]

    def set_left_out(self, items: Iterable[BrowserItem], left_out: bool) -> None:
        """Leave ``items`` out of training (or bring them back): the project's
        ``data.exclude`` changes and the panel checks the data again."""
        if not self.can_edit():
            return
        keys = [item.key for item in items if item.subset != "skipped"]
        current = list(self.panel.excluded_images())
        known = {same_exclusion(key) for key in current}
        if left_out:
            added = [key for key in keys if same_exclusion(key) not in known]
            if not added:
                return
            updated = current + added
        else:
            dropped = {same_exclusion(key) for key in keys}
            updated = [key for key in current if same_exclusion(key) not in dropped]
            if len(updated) == len(current):
                return
        self._keeping_place(lambda: self.model.set_left_out(updated))
        self.panel.set_excluded_images(updated)
        if self.preview is not None and self.preview.isVisible():
            self.preview.refresh()
        self._update_status()

    def can_edit(self) -> bool:
        """Whether images can be left out now (a dataset is shown and no training runs)."""
        return self.panel.isEnabled() and bool(self._root)

    def _show_context_menu(self, position: Any) -> None:
        index = self.grid.indexAt(position)
        if index.isValid() and not self.grid.selectionModel().isSelected(index):
            self.grid.setCurrentIndex(index)
        items = self.selected_items()
        if not items:
            return
        menu = QMenu(self)
        enlarge = menu.addAction("Enlarge", lambda: self._enlarge_index(self.grid.currentIndex()))
        enlarge.setEnabled(self.grid.currentIndex().isValid())
        menu.addSeparator()
        n = len(items)
        noun = "image" if n == 1 else f"{n:,} images"
        out = menu.addAction(f"Leave {noun} out of training", lambda: self.set_left_out(items, True))
        back = menu.addAction(f"Bring {noun} back", lambda: self.set_left_out(items, False))
        out.setEnabled(self.can_edit() and any(not self.model.is_left_out(i) for i in items))
        back.setEnabled(self.can_edit() and any(self.model.is_left_out(i) for i in items))
        menu.popup(self.grid.viewport().mapToGlobal(position))
        self._context_menu = menu  # kept for tests

    # ------------------------------------------------------------ enlarging

    def _enlarge_index(self, index: QModelIndex) -> None:
        if not index.isValid():
            return
        if self.preview is None:
            self.preview = ImageDialog(self)
        self.preview.show_items(self.model.shown(), index.row())
        self.preview.show()
        self.preview.raise_()
        self.preview.activateWindow()

    # ------------------------------------------------------------ status

    def _update_actions(self) -> None:
        items = self.selected_items()
        editable = self.can_edit()
        self.leave_out_button.setEnabled(editable and any(not self.model.is_left_out(i) for i in items))
        self.bring_back_button.setEnabled(editable and any(self.model.is_left_out(i) for i in items))
        why = ""
        if not self.panel.isEnabled():
            why = "Training is running: images can be left out or brought back once it has stopped."
        elif not items:
            why = "Select one or more images first (Ctrl or Shift + click for several)."
        self.leave_out_button.setToolTip(
            why or "Train without the selected images; the files stay where they are (Del)"
        )
        self.bring_back_button.setToolTip(why or "Train on the selected left-out images again")
        self._update_count()

    def _update_status(self) -> None:
        self._update_counts_on_buttons()
        self._update_actions()

    def _update_counts_on_buttons(self) -> None:
        counts = self.model.counts(self.class_combo.currentData())
        has_test = any(item.subset == "test" for item in self.model.items())
        for key, label in SHOW_CHOICES:
            button = self.show_buttons[key]
            button.setText(f"{label} ({counts[key]:,})")
        self.show_buttons["test"].setVisible(has_test)

    def _update_count(self) -> None:
        total_images = sum(1 for item in self.model.items() if item.subset != "skipped")
        shown = self.model.rowCount()
        selected = len(self.selected_items())
        left_out = sum(1 for item in self.model.items() if self.model.is_left_out(item))
        parts = []
        if self.stack.currentWidget() is self.skipped_table:
            parts.append(f"{self.skipped_table.shown_count():,} skipped files shown")
        else:
            parts.append(f"Showing {shown:,} of {total_images:,} images")
            if selected:
                parts.append(f"{selected:,} selected")
        if left_out:
            parts.append(f"{left_out:,} left out by you")
        status = "  ·  ".join(parts)
        if self.panel.busy:
            status += "  ·  checking the images again…"
        elif self.panel.prepared is None and self._root and getattr(self.panel, "problem", ""):
            bad = semantic_colour("bad", self.palette()).name()
            status = (
                f'{html.escape(status)}<br><span style="color:{bad}">The data cannot be trained on as it is: '
                f"{html.escape(self.panel.problem)}</span>"
            )
            self.count_label.setTextFormat(Qt.TextFormat.RichText)
            self.count_label.setText(status)
            return
        self.count_label.setTextFormat(Qt.TextFormat.PlainText)
        self.count_label.setText(status)

    # ------------------------------------------------------------ thumbnails

    def _on_thumbnail(self, path: str) -> None:
        self.grid.viewport().update()
        if self.preview is not None:
            self.preview.on_thumbnail(path)

    def _drop_offscreen_requests(self) -> None:
        self.thumbnails.cancel_pending()
        self.grid.viewport().update()  # the tiles in view ask again

    # ------------------------------------------------------------ Qt

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if watched is self.panel and event.type() == QEvent.Type.EnabledChange:
            self._update_actions()
            if self.preview is not None:
                self.preview.refresh()
        return super().eventFilter(watched, event)

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.refresh()
