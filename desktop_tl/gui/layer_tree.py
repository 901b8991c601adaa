"""The model as a tree of modules whose check boxes mean "this trains".

Built from :func:`desktop_tl.core.layers.layer_tree`. Parents are tri-state: checked when
everything under them trains, unchecked when it is all frozen, partly checked otherwise.
The panel holds no freeze state of its own: it reports what the person clicked
(``toggled``, ``preset_chosen``) and shows the states it is given back.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QFont, QPainter, QPalette, QPen, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QButtonGroup,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from .icons import is_dark, mix

COLUMNS = ("Layer", "Type", "Parameters", "Trainable")
NAME_ROLE = Qt.ItemDataRole.UserRole + 1

_CHECK = {
    "trainable": Qt.CheckState.Checked,
    "frozen": Qt.CheckState.Unchecked,
    "partial": Qt.CheckState.PartiallyChecked,
}


def format_count(n: int) -> str:
    """1234 -> '1.2 k', 3_400_000 -> '3.4 M': short enough for a column."""
    n = int(n)
    if n >= 1_000_000_000:
        return f"{n / 1e9:.1f} G"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} M"
    if n >= 10_000:
        return f"{n / 1e3:.0f} k"
    if n >= 1_000:
        return f"{n / 1e3:.1f} k"
    return str(n)


def share_text(share: float) -> str:
    """A trainable share that never reads 0.0% while something trains."""
    if 0 < share < 0.001:
        return f"{share:.3%}"
    if 0 < share < 0.01:
        return f"{share:.2%}"
    return f"{share:.1%}"


def layer_label(name: str) -> str:
    """A module's name as the tree shows its path: "blocks.15" for
    "backbone.blocks.15" (a bare "15" says nothing), "head.fc" for the head."""
    if name.startswith("backbone.") and name.count(".") >= 2:
        return name[len("backbone.") :]
    return name


def last_blocks_text(n: int) -> str:
    return f"Last {n} block" if n == 1 else f"Last {n} blocks"


def walk(node: Any) -> Iterator[Any]:
    yield node
    for child in node.children:
        yield from walk(child)


def freeze_changes(old_root: Any, new_root: Any) -> dict[str, bool]:
    """The fewest {module name: trainable} entries that turn ``old`` into ``new``.

    A subtree that becomes uniformly trainable or frozen is named once at its top;
    partly trainable subtrees are looked into.
    """
    old_states = {node.name: node.state for node in walk(old_root)}
    changes: dict[str, bool] = {}

    def visit(node: Any) -> None:
        state = node.state
        if state in ("trainable", "frozen"):
            if old_states.get(node.name) != state:
                changes[node.name] = state == "trainable"
            return
        if state == "partial":
            for child in node.children:
                visit(child)

    for child in new_root.children:  # the root has no name to send
        visit(child)
    return changes


class LayerTreePanel(QWidget):
    """Tree view, preset buttons and the trainable/total count."""

    toggled = Signal(str, bool)  # qualified module name, trainable
    preset_chosen = Signal(str)  # "head-only", "last:N" or "none"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._updating = False
        self._items: dict[str, list[QStandardItem]] = {}
        self._pending: set[str] = set()
        self._root: Any = None
        self._stage_names: list[str] = []

        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.model.itemChanged.connect(self._on_item_changed)

        self.view = _LayerView()
        self.view.setModel(self.model)
        self.view.setItemDelegateForColumn(0, _CheckBoxBorderDelegate(self.view))
        self.view.setAlternatingRowColors(True)
        self.view.setUniformRowHeights(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.view.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setMinimumSectionSize(48)

        self.placeholder = QLabel(
            "The model's layers appear here once a backbone is chosen.\n\n"
            "Tick a layer to train it; untick it to keep its pretrained weights frozen."
        )
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setObjectName("placeholder")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(self.view)

        self.head_only_button = QPushButton("Head only")
        self.head_only_button.setToolTip("Freeze the whole backbone; train only the new head.")
        self.last_button = QPushButton(last_blocks_text(1))
        self.last_button.setToolTip("Train the last backbone block and the head.")
        self.last_spin = QSpinBox()
        self.last_spin.setRange(1, 1)
        self.last_spin.setToolTip("How many of the backbone's last blocks train.")
        self.last_spin.valueChanged.connect(self._describe_last_blocks)
        self.everything_button = QPushButton("Everything")
        self.everything_button.setToolTip("Fine-tune every layer.")
        self.preset_group = QButtonGroup(self)
        self.preset_group.setExclusive(True)
        for button in (self.head_only_button, self.last_button, self.everything_button):
            button.setCheckable(True)
            self.preset_group.addButton(button)
        self.head_only_button.clicked.connect(lambda: self.preset_chosen.emit("head-only"))
        self.last_button.clicked.connect(self._emit_last)
        self.last_spin.valueChanged.connect(self._on_last_spin)
        self.everything_button.clicked.connect(lambda: self.preset_chosen.emit("none"))

        presets = QHBoxLayout()
        presets.setSpacing(6)
        # No "Train:" label: the group is titled "Layers to train", and the row has to fit
        # beside two other columns at 1024 px.
        presets.addWidget(self.head_only_button)
        presets.addWidget(self.last_button)
        presets.addWidget(self.last_spin)
        presets.addWidget(self.everything_button)
        presets.addStretch(1)

        self.counts_label = QLabel("")
        self.counts_label.setObjectName("countsLabel")
        self.hint_label = QLabel("")
        self.hint_label.setObjectName("hintLabel")
        self.hint_label.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addLayout(presets)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.counts_label)
        layout.addWidget(self.hint_label)
        self.set_presets_enabled(False)

    # ------------------------------------------------------------ content

    def has_tree(self) -> bool:
        """True while a model's layers are shown (not the message in their place)."""
        return self.stack.currentWidget() is not self.placeholder

    def set_tree(self, root: Any | None, message: str = "") -> None:
        """Show a model's layers (``None``: no model, show ``message`` instead)."""
        self._root = root
        self._items.clear()
        self._pending.clear()
        self._updating = True
        try:
            self.model.removeRows(0, self.model.rowCount())
            if root is None:
                self.placeholder.setText(message or self.placeholder.text())
                self.stack.setCurrentWidget(self.placeholder)
                self.counts_label.setText("")
                self.set_presets_enabled(False)
                return
            for child in root.children:
                self._add(self.model.invisibleRootItem(), child)
        finally:
            self._updating = False
        self.stack.setCurrentWidget(self.view)
        self.set_presets_enabled(True)
        self.view.collapseAll()
        for row in range(self.model.rowCount()):
            self.view.expand(self.model.index(row, 0))
        self.view.fit_columns()
        self._show_counts(root)

    def update_states(self, root: Any) -> None:
        """Refresh check boxes and counts from a new tree of the same model."""
        self._root = root
        self._updating = True
        try:
            for node in walk(root):
                items = self._items.get(node.name)
                if items is not None:
                    self._fill_state(node, items)
        finally:
            self._updating = False
        self.view.fit_trainable_column()
        self._show_counts(root)

    def set_pending(self, names: Iterable[str]) -> None:
        """Mark modules whose change was sent to the engine and not yet applied."""
        self._pending.update(names)
        self._style_pending()

    def clear_pending(self) -> None:
        self._pending.clear()
        self._style_pending()

    def set_preset(self, preset: str, overrides: dict[str, bool] | None = None) -> None:
        """Show which preset is in force (none of the buttons when it is custom)."""
        self.preset_group.setExclusive(False)
        for button in self.preset_group.buttons():
            button.setChecked(False)
        if preset == "head-only":
            self.head_only_button.setChecked(True)
        elif preset == "none":
            self.everything_button.setChecked(True)
        elif preset.startswith("last:"):
            self.last_button.setChecked(True)
            try:
                n = int(preset.split(":", 1)[1])
            except ValueError:
                n = 1
            self.last_spin.blockSignals(True)
            self.last_spin.setMaximum(max(self.last_spin.maximum(), n))
            self.last_spin.setValue(n)
            self.last_spin.blockSignals(False)
        self.preset_group.setExclusive(True)
        if overrides:
            self.hint_label.setText(
                f"{_preset_text(preset)} with {len(overrides)} layer "
                f"change{'s' if len(overrides) != 1 else ''} ticked by hand."
            )
        elif not self._training_hint:
            self.hint_label.setText("")

    def set_stage_count(self, n: int) -> None:
        self.last_spin.setMaximum(max(1, n))
        self._describe_last_blocks()

    def set_stage_names(self, names: list[str]) -> None:
        """The backbone's blocks in order (what "Last N blocks" counts from the end), so
        the button can say which layers it unfreezes."""
        self._stage_names = list(names)
        self.set_stage_count(len(names))

    def _describe_last_blocks(self, *_args: Any) -> None:
        n = self.last_spin.value()
        self.last_button.setText(last_blocks_text(n))
        names = [layer_label(name) for name in self._stage_names[-n:]]
        if names:
            shown = ", ".join(names if len(names) <= 4 else [names[0], "…", names[-1]])
            of = f" (of {len(self._stage_names)})" if self._stage_names else ""
            self.last_button.setToolTip(
                f"Train the head and the backbone's last {n} block{'s' if n != 1 else ''}"
                f"{of}: {shown}. Also while training: the change applies at the next batch."
            )
        else:
            self.last_button.setToolTip(
                f"Train the head and the backbone's last {n} block{'s' if n != 1 else ''}."
            )

    _training_hint = False

    def set_training(self, training: bool) -> None:
        self._training_hint = training
        if training:
            self.hint_label.setText(
                "Training: tick a layer or press a preset to unfreeze it now; the change "
                "reaches the model at the next batch and is marked on the plots. "
                "Space pauses."
            )
        else:
            self.hint_label.setText("")

    def set_presets_enabled(self, enabled: bool) -> None:
        for widget in (self.head_only_button, self.last_button, self.last_spin, self.everything_button):
            widget.setEnabled(enabled)

    def item_for(self, name: str) -> QStandardItem | None:
        items = self._items.get(name)
        return items[0] if items else None

    def check_state(self, name: str) -> Qt.CheckState | None:
        item = self.item_for(name)
        return None if item is None else item.checkState()

    def set_trainable(self, name: str, trainable: bool) -> None:
        """Tick or untick a module as if clicked (the same path a click takes)."""
        item = self.item_for(name)
        if item is None:
            raise KeyError(f"no layer named {name!r}")
        item.setCheckState(Qt.CheckState.Checked if trainable else Qt.CheckState.Unchecked)

    # ------------------------------------------------------------ internals

    def _add(self, parent: QStandardItem, node: Any) -> None:
        short = node.name.rsplit(".", 1)[-1] or "model"
        name_item = QStandardItem(short)
        name_item.setData(node.name, NAME_ROLE)
        name_item.setToolTip(node.name)
        type_item = QStandardItem(node.type_name)
        params_item = QStandardItem(format_count(node.total_params) if node.total_params else "–")
        params_item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        params_item.setToolTip(f"{node.total_params:,} parameters")
        trainable_item = QStandardItem("")
        items = [name_item, type_item, params_item, trainable_item]
        for item in items:
            item.setEditable(False)
        self._items[node.name] = items
        self._fill_state(node, items)
        parent.appendRow(items)
        for child in node.children:
            self._add(name_item, child)

    def _fill_state(self, node: Any, items: list[QStandardItem]) -> None:
        name_item, _, _, trainable_item = items
        state = node.state
        if state in _CHECK:
            name_item.setCheckable(True)
            name_item.setCheckState(_CHECK[state])
        else:
            name_item.setCheckable(False)
            name_item.setData(None, Qt.ItemDataRole.CheckStateRole)
        palette = self.palette()
        if state == "trainable":
            text, colour = "yes", palette.color(QPalette.ColorRole.Text)
        elif state == "frozen":
            text, colour = "frozen", palette.color(QPalette.ColorRole.PlaceholderText)
        elif state == "partial":
            share = node.trainable_params / node.total_params if node.total_params else 0
            text, colour = f"partly, {share_text(share)}", palette.color(QPalette.ColorRole.Text)
        else:
            text, colour = "", palette.color(QPalette.ColorRole.Text)
        if node.name in self._pending:
            text = "applying…"
        trainable_item.setText(text)
        trainable_item.setForeground(QBrush(colour))

    def _style_pending(self) -> None:
        self._updating = True
        try:
            for name, items in self._items.items():
                font = QFont(self.font())
                font.setItalic(name in self._pending)
                for item in items:
                    item.setFont(font)
            if self._root is not None:
                for node in walk(self._root):
                    items = self._items.get(node.name)
                    if items is not None:
                        self._fill_state(node, items)
        finally:
            self._updating = False
        self.view.fit_trainable_column()

    def _show_counts(self, root: Any) -> None:
        trainable, total = root.trainable_params, root.total_params
        share = trainable / total if total else 0.0
        self.counts_label.setText(f"Trainable: {trainable:,} of {total:,} parameters ({share_text(share)})")

    def _on_item_changed(self, item: QStandardItem) -> None:
        if self._updating or item.column() != 0 or not item.isCheckable():
            return
        name = item.data(NAME_ROLE)
        if name is None:
            return
        self.toggled.emit(str(name), item.checkState() == Qt.CheckState.Checked)

    def _emit_last(self) -> None:
        self.preset_chosen.emit(f"last:{self.last_spin.value()}")

    def _on_last_spin(self, value: int) -> None:
        self.last_button.setChecked(True)
        self.preset_chosen.emit(f"last:{value}")


class _CheckBoxBorderDelegate(QStyledItemDelegate):
    """Draws the name column, and on a dark palette a border round its check box that
    stands out from the row: Fusion draws that border in the window colour darkened,
    which on a dark base all but vanishes, and an unticked (frozen) layer then shows no
    box at all. Native styles draw boxes of their own that stay visible."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        super().paint(painter, option, index)
        if index.data(Qt.ItemDataRole.CheckStateRole) is None or not is_dark(option.palette):
            return
        widget = option.widget
        style = widget.style() if widget is not None else QApplication.style()
        if style.name().lower() != "fusion":
            return
        item = QStyleOptionViewItem(option)
        self.initStyleOption(item, index)
        box = style.subElementRect(QStyle.SubElement.SE_ItemViewItemCheckIndicator, item, widget)
        palette = item.palette
        border = mix(palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Text), 0.5)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        painter.setPen(QPen(border, 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(box.adjusted(0, 0, -1, -1))
        painter.restore()


class _LayerView(QTreeView):
    """A tree whose name column takes the width the other columns leave (never less than
    a readable minimum; a horizontal scroll bar appears below that)."""

    NAME_MIN_WIDTH = 110
    TYPE_MAX_WIDTH = 120

    def fit_columns(self) -> None:
        for column in (1, 2, 3):
            self.resizeColumnToContents(column)
        if self.columnWidth(1) > self.TYPE_MAX_WIDTH:
            self.setColumnWidth(1, self.TYPE_MAX_WIDTH)
        self._fit_name_column()

    def fit_trainable_column(self) -> None:
        """Widen the Trainable column when a state needs it ("partly, 18%")."""
        needed = self.sizeHintForColumn(3)
        if needed > self.columnWidth(3):
            self.setColumnWidth(3, needed)
            self._fit_name_column()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit_name_column()

    def _fit_name_column(self) -> None:
        others = sum(self.columnWidth(column) for column in (1, 2, 3))
        available = self.viewport().width() - others
        self.setColumnWidth(0, max(self.NAME_MIN_WIDTH, available))


def _preset_text(preset: str) -> str:
    if preset == "head-only":
        return "Head only"
    if preset == "none":
        return "Everything"
    if preset.startswith("last:"):
        return f"Last {preset.split(':', 1)[1]} blocks"
    return "Custom"
