"""A head type's options as a form: one proper widget per :class:`HeadOption` kind.

An int becomes a spin box, a float a decimal spin box, a bool a check box, a choice a
combo box and an int list a validated line ("256, 128").
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QRegularExpression, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLineEdit, QSpinBox, QWidget

INT_LIST_PATTERN = r"^\s*(\d+\s*(,\s*\d+\s*)*,?)?\s*$"


def parse_int_list(text: str) -> list[int]:
    return [int(part) for part in text.replace(" ", "").split(",") if part]


class HeadOptionsForm(QWidget):
    """Widgets for one head type's options, built from their kinds."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._widgets: dict[str, tuple[Any, QWidget]] = {}
        self._layout = QFormLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setHorizontalSpacing(10)
        self._layout.setVerticalSpacing(6)
        self._layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

    def set_options(self, options: tuple[Any, ...], values: dict[str, Any]) -> None:
        while self._layout.rowCount():
            self._layout.removeRow(0)
        self._widgets.clear()
        for option in options:
            value = values.get(option.name, option.default)
            widget = self._make_widget(option, value)
            label = option.label or option.name.replace("_", " ").capitalize()
            if option.help:
                widget.setToolTip(option.help)
            self._layout.addRow(label, widget)
            self._widgets[option.name] = (option, widget)
        self.setVisible(bool(options))

    def values(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, (option, widget) in self._widgets.items():
            if option.kind == "int":
                result[name] = int(widget.value())
            elif option.kind == "float":
                result[name] = float(widget.value())
            elif option.kind == "bool":
                result[name] = bool(widget.isChecked())
            elif option.kind == "choice":
                result[name] = widget.currentText()
            elif option.kind == "int_list":
                result[name] = parse_int_list(widget.text())
            else:
                result[name] = widget.text()
        return result

    def widget(self, name: str) -> QWidget:
        return self._widgets[name][1]

    def _make_widget(self, option: Any, value: Any) -> QWidget:
        kind = option.kind
        if kind == "int":
            spin = QSpinBox()
            spin.setRange(
                int(option.minimum if option.minimum is not None else 0),
                int(option.maximum if option.maximum is not None else 1_000_000),
            )
            spin.setValue(int(value))
            spin.valueChanged.connect(self.changed)
            return spin
        if kind == "float":
            spin = QDoubleSpinBox()
            spin.setDecimals(3)
            spin.setRange(
                float(option.minimum if option.minimum is not None else 0.0),
                float(option.maximum if option.maximum is not None else 1e6),
            )
            spin.setSingleStep(0.05)
            spin.setValue(float(value))
            spin.valueChanged.connect(self.changed)
            return spin
        if kind == "bool":
            box = QCheckBox()
            box.setChecked(bool(value))
            box.toggled.connect(self.changed)
            return box
        if kind == "choice":
            combo = QComboBox()
            combo.addItems([str(c) for c in option.choices])
            index = combo.findText(str(value))
            combo.setCurrentIndex(max(0, index))
            combo.currentIndexChanged.connect(self.changed)
            return combo
        edit = QLineEdit()
        if kind == "int_list":
            edit.setValidator(QRegularExpressionValidator(QRegularExpression(INT_LIST_PATTERN)))
            edit.setPlaceholderText("e.g. 256, 128")
            if isinstance(value, (list, tuple)):
                value = ", ".join(str(v) for v in value)
        edit.setText("" if value is None else str(value))
        edit.editingFinished.connect(self.changed)
        return edit
