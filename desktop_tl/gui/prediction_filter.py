"""Sorting and filtering the prediction list: by predicted label and by confidence, with a
summary of how many images each label got. The bar holds the choices; the functions
decide order and visibility from the rows alone, so the view only applies them."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QWidget
from superqt import QElidingLabel

ALL_LABELS = ""
SORTS = {
    "added": "Order added",
    "confidence-desc": "Most confident first",
    "confidence-asc": "Least confident first",
    "label": "By predicted label",
}


def top_of(row: Any) -> tuple[str, float] | None:
    """The predicted label and its probability, or None for a row without a result."""
    return row.top[0] if row.status == "done" and row.top else None


def row_visible(row: Any, label: str, min_confidence: float) -> bool:
    """Whether ``row`` passes the filter; with no filter every row shows (errors too)."""
    if label == ALL_LABELS and min_confidence <= 0:
        return True
    top = top_of(row)
    if top is None:
        return False
    return (label == ALL_LABELS or top[0] == label) and top[1] >= min_confidence


def sort_key(sort: str, added: dict[str, int]):
    """The key ordering rows for ``sort``; rows without a result go last."""

    def key(row: Any):
        top = top_of(row)
        order = added.get(row.path, 0)
        if sort == "confidence-desc":
            return (top is None, -(top[1] if top else 0.0), order)
        if sort == "confidence-asc":
            return (top is None, top[1] if top else 0.0, order)
        if sort == "label":
            return (top is None, top[0] if top else "", -(top[1] if top else 0.0), order)
        return (order,)

    return key


def summary_text(rows: Sequence[Any], shown: int) -> str:
    """``Predicted: brick 12 · grass 3`` and, when filtered, how many are shown."""
    counts = Counter(top[0] for top in map(top_of, rows) if top is not None)
    if not counts:
        return ""
    text = "Predicted: " + " · ".join(f"{name} {n}" for name, n in counts.most_common())
    if shown < len(rows):
        text += f"  (showing {shown} of {len(rows)})"
    return text


class PredictionFilterBar(QWidget):
    """Show: [label] [at least N %] · Sort: [order] · the summary."""

    changed = Signal()
    save_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label_combo = QComboBox(self)
        self.label_combo.setToolTip("Show only images predicted as this class")
        self.confidence_spin = QSpinBox(self)
        self.confidence_spin.setRange(0, 100)
        self.confidence_spin.setSingleStep(5)
        self.confidence_spin.setPrefix("at least ")
        self.confidence_spin.setSuffix(" %")
        self.confidence_spin.setToolTip(
            "Show only images whose predicted class has at least this probability"
        )
        self.sort_combo = QComboBox(self)
        for value, text in SORTS.items():
            self.sort_combo.addItem(text, value)
        self.save_button = QPushButton("Save table…", self)
        self.save_button.setToolTip(
            "Save the results shown as CSV: path, then label and probability for each of the top classes"
        )
        self.save_button.clicked.connect(self.save_requested)
        # Elided (full text on hover): many classes must not widen the window.
        self.summary_label = QElidingLabel(self)
        self.summary_label.setObjectName("predictionSummary")
        self.set_classes([])
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Show:", self))
        layout.addWidget(self.label_combo)
        layout.addWidget(self.confidence_spin)
        layout.addSpacing(12)
        layout.addWidget(QLabel("Sort:", self))
        layout.addWidget(self.sort_combo)
        layout.addSpacing(12)
        layout.addWidget(self.summary_label, 1)
        layout.addWidget(self.save_button)
        self.label_combo.currentIndexChanged.connect(lambda _i: self.changed.emit())
        self.confidence_spin.valueChanged.connect(lambda _v: self.changed.emit())
        self.sort_combo.currentIndexChanged.connect(lambda _i: self.changed.emit())

    def set_classes(self, names: Sequence[str]) -> None:
        """The labels to filter by (the loaded model's classes); keeps the choice if it is
        still one of them."""
        current = self.label()
        self.label_combo.blockSignals(True)
        self.label_combo.clear()
        self.label_combo.addItem("All labels", ALL_LABELS)
        for name in names:
            self.label_combo.addItem(name, name)
        index = self.label_combo.findData(current)
        self.label_combo.setCurrentIndex(max(0, index))
        self.label_combo.blockSignals(False)

    def label(self) -> str:
        return self.label_combo.currentData() or ALL_LABELS

    def min_confidence(self) -> float:
        return self.confidence_spin.value() / 100.0

    def sort(self) -> str:
        return self.sort_combo.currentData() or "added"

    def set_filter(self, label: str = ALL_LABELS, min_percent: int = 0, sort: str = "added") -> None:
        self.label_combo.setCurrentIndex(max(0, self.label_combo.findData(label)))
        self.confidence_spin.setValue(min_percent)
        self.sort_combo.setCurrentIndex(max(0, self.sort_combo.findData(sort)))
