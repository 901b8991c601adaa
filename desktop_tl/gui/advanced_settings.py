"""The Train tab's "Advanced settings": every run setting the main grid leaves out.

A toggle shows or hides a form of the remaining :class:`~desktop_tl.core.config.TrainConfig`
fields (regularisation, the step schedule, early stopping, the seed, the feature cache,
TensorBoard) and the two data settings without a place in the data panel (the test share
and the loader workers). Collapsed, one line names the settings that differ from their
defaults. Every control's range is the one :meth:`RunConfig.validate` allows, so the form
cannot produce an invalid configuration; settings that do not apply (momentum without
SGD, the step schedule's size and factor without it) are disabled and say why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QLabel,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
    QWidgetItem,
)

from ..core.config import MAX_AUGMENTED_VIEWS, MAX_SEED, DataConfig, TrainConfig
from .decade_spin_box import DecadeSpinBox

FEATURE_CACHE_LABELS = {"auto": "Automatic", "off": "Off"}
#: The largest test share the form offers: with the data panel's largest validation share
#: (50 %) it keeps the two under the 95 % that validate() allows, leaving images to train on.
MAX_TEST_PERCENT = 44.0

_TIPS = {
    "weight_decay": "Weight decay (L2) added by the optimiser to every trainable parameter; "
    "0 turns it off. Typical values are 1e-5 to 1e-2 (AdamW uses it as decoupled decay). "
    "Arrow keys step 1-2-5.",
    "momentum": "Momentum of SGD: the share of the previous step kept in each update, 0 to 1 "
    "(0.9 is usual; 0 is plain SGD).",
    "step_size": "Step decay: the learning rate is multiplied by the factor below every this many epochs.",
    "gamma": "Step decay: the factor the learning rate is multiplied by at each step, 0 to 1 "
    "(0.1 divides it by ten).",
    "label_smoothing": "Label smoothing: this share of each target is spread evenly over all "
    "classes, 0 to 0.99, which makes the model less over-confident; 0 turns it off.",
    "early_stopping_patience": "Stop the run after this many epochs without a lower "
    "validation loss (the best checkpoint is kept); Off trains every epoch.",
    "seed": f"Random seed for the initialisation of the head, the batch order and the "
    f"augmentation (0 to {MAX_SEED}); the same seed and settings repeat a run. The split of "
    f"the images has its own seed in the data panel.",
    "tensorboard": "Also write the losses, accuracy and confusion matrix for TensorBoard in "
    "the run folder's tensorboard/ (needs the tensorboard package).",
    "feature_cache": "Automatic keeps the output of the frozen part of the backbone for each "
    "image, so later epochs skip recomputing it (same result, much faster); Off runs the "
    "whole model on every image every epoch.",
    "cache_budget_mb": "Memory (in MB) a run may use for cached features and decoded images; "
    "beyond it they go to the cache folder on disk. 0 keeps nothing in memory.",
    "feature_cache_reuse": "Reuse features an earlier run cached for the same images, "
    "backbone and frozen layers (kept in the cache folder), instead of computing them again.",
    "augmented_views": f"With augmentation: augmented versions of each training image computed "
    f"once and kept in the feature cache, one drawn per image each epoch (0 to "
    f"{MAX_AUGMENTED_VIEWS}). 0 reads and augments the images every epoch (slower, a fresh "
    f"variation each time).",
    "test_fraction": f"Share of the images held out as a test set, used neither for training "
    f"nor to pick the best epoch; 0 keeps none. Only for datasets without their own split "
    f"folders. At most {MAX_TEST_PERCENT:g} %, so that with the largest validation share "
    f"images are left to train on.",
    "num_workers": "Processes that read and decode images while the model trains. Automatic "
    "picks a number for this machine and dataset; 0 reads them in the training thread "
    "(slower, but simplest when a loader misbehaves).",
}

_WHY_DISABLED = {
    "momentum": "Only SGD uses momentum: choose “SGD (momentum)” as the optimiser to set it.",
    "step_size": "Used by the step decay schedule only: choose “Step decay” as the schedule to set it.",
    "gamma": "Used by the step decay schedule only: choose “Step decay” as the schedule to set it.",
    "feature_cache_reuse": "The feature cache is off, so there are no features to reuse.",
    "augmented_views": "The feature cache is off, so augmented views are not kept; the images "
    "are read every epoch.",
}


class AdvancedSettings(QWidget):
    """The collapsible "Advanced settings" section; ``changed`` fires on every edit (not
    on :meth:`load_from`), ``data_changed`` also when the test share or workers change."""

    changed = Signal()
    data_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._optimizer = TrainConfig().optimizer
        self._schedule = TrainConfig().schedule

        self.weight_decay_spin = DecadeSpinBox(0.0, 10.0, smallest_step=1e-6)
        self.momentum_spin = _fraction_spin(0.0, 1.0, step=0.05)
        self.step_size_spin = QSpinBox()
        self.step_size_spin.setRange(1, 100_000)
        self.step_size_spin.setPrefix("every ")
        self.step_size_spin.setSuffix(" epochs")
        self.gamma_spin = _fraction_spin(0.0, 1.0, step=0.05)
        self.gamma_spin.setPrefix("× ")
        self.label_smoothing_spin = _fraction_spin(0.0, 0.99, step=0.05)
        self.patience_spin = QSpinBox()
        self.patience_spin.setRange(0, 100_000)
        self.patience_spin.setSpecialValueText("Off")
        self.patience_spin.setPrefix("after ")
        self.patience_spin.setSuffix(" epochs")
        # A double spin box with no decimals: seeds go up to 2**32 - 1, past a QSpinBox's int.
        self.seed_spin = QDoubleSpinBox()
        self.seed_spin.setDecimals(0)
        self.seed_spin.setRange(0, MAX_SEED)
        self.tensorboard_check = QCheckBox("log for TensorBoard")
        self.feature_cache_combo = QComboBox()
        for value, label in FEATURE_CACHE_LABELS.items():
            self.feature_cache_combo.addItem(label, value)
        self.budget_spin = QSpinBox()
        self.budget_spin.setRange(0, 1_000_000)
        self.budget_spin.setSingleStep(256)
        self.budget_spin.setSuffix(" MB")
        self.reuse_check = QCheckBox("from earlier runs")
        self.views_spin = QSpinBox()
        self.views_spin.setRange(0, MAX_AUGMENTED_VIEWS)
        self.views_spin.setSpecialValueText("None")
        self.views_spin.setSuffix(" per image")
        self.test_spin = QDoubleSpinBox()
        self.test_spin.setRange(0.0, MAX_TEST_PERCENT)
        self.test_spin.setDecimals(1)
        self.test_spin.setSingleStep(5)
        self.test_spin.setSuffix(" %")
        self.test_spin.setSpecialValueText("None")
        self.workers_spin = QSpinBox()
        self.workers_spin.setRange(-1, 1024)
        self.workers_spin.setSpecialValueText("Automatic")

        # The form's sections and their (config field, label, control) rows, in reading order.
        sections: list[tuple[str, list[tuple[str, str, QWidget]]]] = [
            (
                "Optimisation",
                [
                    ("weight_decay", "Weight decay", self.weight_decay_spin),
                    ("momentum", "Momentum", self.momentum_spin),
                    ("label_smoothing", "Label smoothing", self.label_smoothing_spin),
                    ("early_stopping_patience", "Early stopping", self.patience_spin),
                    ("step_size", "Step size", self.step_size_spin),
                    ("gamma", "Step factor", self.gamma_spin),
                ],
            ),
            (
                "Feature cache",
                [
                    ("feature_cache", "Caching", self.feature_cache_combo),
                    ("cache_budget_mb", "Memory budget", self.budget_spin),
                    ("feature_cache_reuse", "Reuse features", self.reuse_check),
                    ("augmented_views", "Augmented views", self.views_spin),
                ],
            ),
            (
                "Data, seed and logging",
                [
                    ("test_fraction", "Test split", self.test_spin),
                    ("num_workers", "Loader workers", self.workers_spin),
                    ("seed", "Seed", self.seed_spin),
                    ("tensorboard", "TensorBoard", self.tensorboard_check),
                ],
            ),
        ]
        self._sections: list[tuple[QLabel, list[tuple[str, QLabel, QWidget]]]] = [
            (_heading(heading), [(name, QLabel(text), control) for name, text, control in rows])
            for heading, rows in sections
        ]
        self._rows = {name: (label, control) for _, rows in self._sections for name, label, control in rows}
        self._applies = dict.fromkeys(self._rows, True)
        for name, (label, control) in self._rows.items():
            label.setBuddy(control)
            label.setToolTip(_TIPS[name])
            control.setToolTip(_TIPS[name])
            control.setObjectName(f"advanced_{name}")

        self.toggle = QToolButton()
        self.toggle.setObjectName("advancedToggle")
        self.toggle.setText("Advanced settings")
        self.toggle.setCheckable(True)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setToolTip("Show or hide the less common settings of the run.")
        self.summary_label = QLabel()
        self.summary_label.setObjectName("advancedSummary")
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextFormat(Qt.TextFormat.PlainText)
        self.summary_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)

        self.form = QWidget()
        self.form.setObjectName("advancedForm")
        self.grid = QGridLayout(self.form)
        self.grid.setContentsMargins(0, 0, 0, 6)
        self.grid.setHorizontalSpacing(10)
        self.grid.setVerticalSpacing(6)
        self.columns = 0
        self.set_columns(4)
        self.form.setVisible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.toggle, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.form)
        self.toggle.toggled.connect(self.set_expanded)

        for spin in (
            self.weight_decay_spin,
            self.momentum_spin,
            self.step_size_spin,
            self.gamma_spin,
            self.label_smoothing_spin,
            self.patience_spin,
            self.seed_spin,
            self.budget_spin,
            self.views_spin,
        ):
            spin.valueChanged.connect(self._changed)
        self.feature_cache_combo.currentIndexChanged.connect(self._changed)
        for check in (self.tensorboard_check, self.reuse_check):
            check.toggled.connect(self._changed)
        for spin in (self.test_spin, self.workers_spin):
            spin.valueChanged.connect(self._data_changed)
        self.load_from(TrainConfig())
        self.load_data_from(DataConfig())

    # ------------------------------------------------------------ showing

    def is_expanded(self) -> bool:
        return self.toggle.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        """Show the form (the summary line hides) or fold it away."""
        if self.toggle.isChecked() != expanded:
            self.toggle.setChecked(expanded)  # comes back here through toggled
            return
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.form.setVisible(expanded)
        self.summary_label.setVisible(not expanded)
        self.updateGeometry()

    def set_editable(self, editable: bool) -> None:
        """Lock the form while a run trains; it can still be opened to read."""
        self.form.setEnabled(editable)

    def set_columns(self, grid_columns: int) -> None:
        """Lay the form out in four grid columns (two settings a row) or two (one)."""
        if grid_columns == self.columns:
            return
        grid = self.grid
        for heading, rows in self._sections:
            grid.removeWidget(heading)
            for _, label, control in rows:
                grid.removeWidget(label)
                grid.removeWidget(control)
        for (heading, rows), (heading_row, positions) in zip(
            self._sections, _positions(self._sections, grid_columns)
        ):
            grid.addWidget(heading, heading_row, 0, 1, grid_columns)
            for (_, label, control), (row, column) in zip(rows, positions):
                grid.addWidget(label, row, column)
                grid.addWidget(control, row, column + 1)
        for column in range(4):
            grid.setColumnStretch(column, 1 if column % 2 and column < grid_columns else 0)
        self.columns = grid_columns
        self.updateGeometry()

    def width_needed(self, grid_columns: int) -> int:
        """The width the section needs with its form (when shown) in ``grid_columns``."""
        width = _layout_minimum(self.toggle)
        if not self.is_expanded():
            return width
        per_row = grid_columns // 2
        columns = [0] * (per_row * 2)
        for (heading, rows), (_, positions) in zip(self._sections, _positions(self._sections, grid_columns)):
            width = max(width, _layout_minimum(heading))
            for (_, label, control), (_, column) in zip(rows, positions):
                columns[column] = max(columns[column], _layout_minimum(label))
                columns[column + 1] = max(columns[column + 1], _layout_minimum(control))
        return max(width, sum(columns) + self.grid.horizontalSpacing() * (len(columns) - 1))

    # ------------------------------------------------------------ which settings apply

    def set_optimizer_and_schedule(self, optimizer: str, schedule: str) -> None:
        """Enable momentum only with SGD, and the step size and factor only with the step
        schedule (the choices live in the main settings)."""
        self._optimizer, self._schedule = optimizer, schedule
        self._update_applicability()

    def _update_applicability(self) -> None:
        cache_on = self.feature_cache_combo.currentData() != "off"
        applies = {
            "momentum": self._optimizer == "sgd",
            "step_size": self._schedule == "step",
            "gamma": self._schedule == "step",
            "feature_cache_reuse": cache_on,
            "augmented_views": cache_on,
        }
        for name, on in applies.items():
            self._applies[name] = on
            label, control = self._rows[name]
            tip = _TIPS[name] if on else f"{_WHY_DISABLED[name]}\n\n{_TIPS[name]}"
            for widget in (label, control):
                widget.setEnabled(on)
                widget.setToolTip(tip)
        self._show_summary()

    def applies(self, name: str) -> bool:
        """Whether the setting ``name`` (a config field) applies with the choices made now
        (its control is enabled when the form is)."""
        return self._applies[name]

    # ------------------------------------------------------------ config

    def apply_to(self, train: TrainConfig) -> None:
        train.weight_decay = float(self.weight_decay_spin.value())
        train.momentum = float(self.momentum_spin.value())
        train.step_size = int(self.step_size_spin.value())
        train.gamma = float(self.gamma_spin.value())
        train.label_smoothing = float(self.label_smoothing_spin.value())
        train.early_stopping_patience = int(self.patience_spin.value())
        train.seed = int(self.seed_spin.value())
        train.tensorboard = self.tensorboard_check.isChecked()
        train.feature_cache = self.feature_cache_combo.currentData()
        train.cache_budget_mb = int(self.budget_spin.value())
        train.feature_cache_reuse = self.reuse_check.isChecked()
        train.augmented_views = int(self.views_spin.value())

    def load_from(self, train: TrainConfig) -> None:
        with signals_blocked(self._train_controls()):
            self.weight_decay_spin.setValue(train.weight_decay)
            self.momentum_spin.setValue(train.momentum)
            self.step_size_spin.setValue(train.step_size)
            self.gamma_spin.setValue(train.gamma)
            self.label_smoothing_spin.setValue(train.label_smoothing)
            self.patience_spin.setValue(train.early_stopping_patience)
            self.seed_spin.setValue(train.seed)
            self.tensorboard_check.setChecked(bool(train.tensorboard))
            index = self.feature_cache_combo.findData(train.feature_cache)
            self.feature_cache_combo.setCurrentIndex(max(0, index))
            self.budget_spin.setValue(train.cache_budget_mb)
            self.reuse_check.setChecked(bool(train.feature_cache_reuse))
            self.views_spin.setValue(train.augmented_views)
        self._optimizer, self._schedule = train.optimizer, train.schedule
        self._update_applicability()

    def apply_data_to(self, data: DataConfig) -> None:
        """The test share and loader workers into ``data`` (the data panel sets the rest)."""
        data.test_fraction = round(self.test_spin.value() / 100.0, 4)
        data.num_workers = int(self.workers_spin.value())

    def load_data_from(self, data: DataConfig) -> None:
        with signals_blocked((self.test_spin, self.workers_spin)):
            self.test_spin.setValue(data.test_fraction * 100.0)
            self.workers_spin.setValue(data.num_workers)
        self._show_summary()

    def _train_controls(self) -> tuple[QWidget, ...]:
        return tuple(
            control
            for name, (_, control) in self._rows.items()
            if name not in ("test_fraction", "num_workers")
        )

    # ------------------------------------------------------------ summary

    def summary(self) -> list[str]:
        """The settings (that apply) differing from their defaults, as short phrases."""
        train, data = TrainConfig(), DataConfig()
        self.apply_to(train)
        self.apply_data_to(data)
        defaults, data_defaults = TrainConfig(), DataConfig()
        parts: list[str] = []

        def differs(name: str) -> bool:
            return self.applies(name) and getattr(train, name) != getattr(defaults, name)

        phrases: list[tuple[str, Callable[[], str]]] = [
            ("weight_decay", lambda: f"weight decay {train.weight_decay:.3g}"),
            ("momentum", lambda: f"momentum {train.momentum:g}"),
            ("label_smoothing", lambda: f"label smoothing {train.label_smoothing:g}"),
            (
                "early_stopping_patience",
                lambda: f"early stopping after {train.early_stopping_patience} epochs",
            ),
            ("step_size", lambda: f"step every {train.step_size} epochs"),
            ("gamma", lambda: f"step factor {train.gamma:g}"),
            ("feature_cache", lambda: "feature cache off"),
            ("cache_budget_mb", lambda: f"memory budget {train.cache_budget_mb} MB"),
            ("feature_cache_reuse", lambda: "no feature reuse"),
            ("augmented_views", lambda: f"{train.augmented_views} augmented views"),
            ("seed", lambda: f"seed {train.seed}"),
            ("tensorboard", lambda: "TensorBoard"),
        ]
        parts.extend(phrase() for name, phrase in phrases if differs(name))
        if data.test_fraction != data_defaults.test_fraction:
            parts.append(f"test split {data.test_fraction * 100:g} %")
        if data.num_workers != data_defaults.num_workers:
            parts.append(f"{data.num_workers} loader workers")
        return parts

    def _show_summary(self) -> None:
        parts = self.summary()
        text = "Advanced: " + ", ".join(parts) if parts else "Advanced: all at their defaults"
        self.summary_label.setText(text)

    def _changed(self, *_args: Any) -> None:
        self._update_applicability()
        self.changed.emit()

    def _data_changed(self, *_args: Any) -> None:
        self._show_summary()
        self.data_changed.emit()
        self.changed.emit()


def _positions(
    sections: list[tuple[QLabel, list[Any]]], grid_columns: int
) -> list[tuple[int, list[tuple[int, int]]]]:
    """Per section: its heading's row, and each setting's (row, label column)."""
    per_row = grid_columns // 2
    row = 0
    placed = []
    for _, rows in sections:
        heading_row = row
        positions = [(heading_row + 1 + i // per_row, (i % per_row) * 2) for i in range(len(rows))]
        placed.append((heading_row, positions))
        row = heading_row + 1 + (len(rows) + per_row - 1) // per_row
    return placed


def _layout_minimum(widget: QWidget) -> int:
    """The narrowest a layout makes ``widget`` (a spin box, say, never below its size hint)."""
    return QWidgetItem(widget).minimumSize().width()


def _heading(text: str) -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setBold(True)
    label.setFont(font)
    return label


def _fraction_spin(low: float, high: float, step: float) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setDecimals(3)
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setCorrectionMode(QAbstractSpinBox.CorrectionMode.CorrectToNearestValue)
    return spin


@contextmanager
def signals_blocked(widgets: tuple[QWidget, ...]) -> Iterator[None]:
    """Block the widgets' signals inside a ``with`` (loading a config is not an edit)."""
    for widget in widgets:
        widget.blockSignals(True)
    try:
        yield
    finally:
        for widget in widgets:
            widget.blockSignals(False)
