"""The training panel: how to train, Start/Pause/Stop, and how far the run has got.

The panel only edits :class:`~desktop_tl.core.config.TrainConfig` values and shows what the
engine reports; the window decides what the buttons do. The common settings are a grid;
the rest are in its :class:`~desktop_tl.gui.advanced_settings.AdvancedSettings` section
under it (which also holds the test share and loader workers of the data section).
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QSize, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from ..core.config import DEVICES, OPTIMIZERS, PRECISIONS, SCHEDULES, DataConfig, TrainConfig
from .advanced_settings import AdvancedSettings
from .decade_spin_box import DecadeSpinBox
from .notice import Notice

OPTIMIZER_LABELS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD (momentum)"}
SCHEDULE_LABELS = {"none": "Constant", "cosine": "Cosine decay", "step": "Step decay"}
DEVICE_LABELS = {"auto": "Automatic", "cpu": "CPU", "cuda": "CUDA GPU", "mps": "Apple GPU (MPS)"}
PRECISION_LABELS = {"auto": "Automatic", "fp32": "fp32 (full)", "bf16": "bf16", "fp16": "fp16"}


class LearningRateSpinBox(DecadeSpinBox):
    """A learning rate: shows 0.001 or 1e-05, steps 1-2-5."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(1e-7, 10.0, smallest_step=1e-7, parent=parent)


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


class TrainingPanel(QWidget):
    """Hyperparameters, the run buttons and the progress line."""

    start_requested = Signal()
    export_requested = Signal()
    pause_requested = Signal()  # toggles pause/resume
    stop_requested = Signal()
    config_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 10_000)
        self.epochs_spin.setToolTip("Passes over the training images.")
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 4096)
        self.batch_spin.setToolTip("Images per optimisation step.")
        self.lr_spin = LearningRateSpinBox()
        self.lr_spin.setToolTip("Learning rate of the new head. Arrow keys step 1-2-5.")
        self.lr_mult_spin = QDoubleSpinBox()
        self.lr_mult_spin.setDecimals(3)
        self.lr_mult_spin.setRange(0.0, 10.0)
        self.lr_mult_spin.setSingleStep(0.05)
        self.lr_mult_spin.setPrefix("× ")
        self.lr_mult_spin.setToolTip(
            "The backbone's learning rate is the head's times this "
            "(smaller keeps pretrained features from being wrecked)."
        )
        self.backbone_lr_label = QLabel("")
        self.backbone_lr_label.setObjectName("backboneLr")
        self.optimizer_combo = _combo(OPTIMIZERS, OPTIMIZER_LABELS)
        self.schedule_combo = _combo(SCHEDULES, SCHEDULE_LABELS)
        self.schedule_combo.setToolTip("How the learning rate changes over the epochs.")
        self.device_combo = _combo(DEVICES, DEVICE_LABELS)
        self.device_combo.setToolTip("Automatic uses a CUDA GPU, then an Apple GPU, then the CPU.")
        self.precision_combo = _combo(PRECISIONS, PRECISION_LABELS)
        self.precision_combo.setToolTip(
            "Automatic uses bf16/fp16 where the device is fast with it, otherwise full precision."
        )

        for widget in (self.epochs_spin, self.batch_spin, self.lr_spin, self.lr_mult_spin):
            widget.valueChanged.connect(self._changed)
        for combo in (self.optimizer_combo, self.schedule_combo, self.device_combo, self.precision_combo):
            combo.currentIndexChanged.connect(self._changed)

        lr_mult_row = QHBoxLayout()
        lr_mult_row.setSpacing(6)
        lr_mult_row.addWidget(self.lr_mult_spin)
        lr_mult_row.addWidget(self.backbone_lr_label)

        self.settings_grid = QGridLayout()
        self.settings_grid.setHorizontalSpacing(10)
        self.settings_grid.setVerticalSpacing(6)
        # (label, field) pairs in reading order; the grid shows them two or four a row.
        self._settings_fields: list[tuple[QLabel, QWidget | QHBoxLayout]] = [
            (QLabel(text), field)
            for text, field in (
                ("Epochs", self.epochs_spin),
                ("Batch size", self.batch_spin),
                ("Learning rate", self.lr_spin),
                ("Backbone rate", lr_mult_row),
                ("Optimiser", self.optimizer_combo),
                ("Schedule", self.schedule_combo),
                ("Device", self.device_combo),
                ("Precision", self.precision_combo),
            )
        ]
        # Every other run setting, folded away under the grid until asked for.
        self.advanced = AdvancedSettings()
        self.advanced.changed.connect(self.config_changed)
        self.advanced.toggle.toggled.connect(self._on_advanced_toggled)
        self.optimizer_combo.currentIndexChanged.connect(self._show_dependent_settings)
        self.schedule_combo.currentIndexChanged.connect(self._show_dependent_settings)
        self.settings_columns = 0
        self._lay_out_settings(4)
        grid = self.settings_grid
        style = self.style()
        self.start_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay), "Start training"
        )
        self.start_button.setObjectName("startButton")
        self.start_button.setToolTip("Start training (Ctrl+R)")
        self.start_button.setDefault(True)
        self.pause_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaPause), "Pause")
        self.pause_button.setToolTip("Pause or resume between batches (Space or Ctrl+P)")
        self.stop_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaStop), "Stop")
        self.stop_button.setToolTip("Stop after the current batch (Ctrl+.); the last checkpoint is kept.")
        self.export_button = QPushButton("Export model…")
        self.export_button.setToolTip(
            "Take the finished run's model out: ONNX, torch.export "
            "or safetensors, as a bundle with a model card (Ctrl+E)."
        )
        self.export_button.setVisible(False)  # shown once a run has left a checkpoint
        self.export_button.clicked.connect(self.export_requested)
        for button in (self.start_button, self.pause_button, self.stop_button, self.export_button):
            button.setMinimumHeight(30)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.start_button.clicked.connect(self.start_requested)
        self.pause_button.clicked.connect(self.pause_requested)
        self.stop_button.clicked.connect(self.stop_requested)
        buttons = self.button_grid = QGridLayout()
        buttons.setSpacing(8)
        self._buttons_wide: bool | None = None
        self._lay_out_buttons(wide=True)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("Not started")
        self.progress.setTextVisible(True)
        self.progress.setMinimumHeight(22)
        self.status_label = Notice()
        self.status_label.setObjectName("runStatus")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        layout.addLayout(grid)
        layout.addWidget(self.advanced)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        self.load_from(TrainConfig())
        self.set_run_state("idle")

    # ------------------------------------------------------------ reflow

    def _lay_out_settings(self, grid_columns: int) -> None:
        """Lay the settings out in four grid columns (two settings a row) or two (one)."""
        if grid_columns == self.settings_columns:
            return
        grid = self.settings_grid
        for label, field in self._settings_fields:
            grid.removeWidget(label)
            if isinstance(field, QHBoxLayout):
                grid.removeItem(field)
            else:
                grid.removeWidget(field)
        per_row = grid_columns // 2  # label and field pairs a row
        for index, (label, field) in enumerate(self._settings_fields):
            row, column = divmod(index, per_row)
            grid.addWidget(label, row, column * 2)
            if isinstance(field, QHBoxLayout):
                grid.addLayout(field, row, column * 2 + 1)
            else:
                grid.addWidget(field, row, column * 2 + 1)
        for column in range(4):
            grid.setColumnStretch(column, 1 if column % 2 and column < grid_columns else 0)
        self.advanced.set_columns(grid_columns)
        self.settings_columns = grid_columns
        self.updateGeometry()

    def _lay_out_buttons(self, wide: bool) -> None:
        """Start, Pause, Stop (and Export) in one row, or Start above the others."""
        if wide == self._buttons_wide:
            return
        grid = self.button_grid
        order = (self.start_button, self.pause_button, self.stop_button, self.export_button)
        for button in order:
            grid.removeWidget(button)
        if wide:
            for column, button in enumerate(order):
                grid.addWidget(button, 0, column)
            stretches = (2, 1, 1, 1)
        else:
            grid.addWidget(self.start_button, 0, 0, 1, 2)
            grid.addWidget(self.pause_button, 1, 0)
            grid.addWidget(self.stop_button, 1, 1)
            grid.addWidget(self.export_button, 2, 0, 1, 2)
            stretches = (1, 1, 0, 0)
        for column, stretch in enumerate(stretches):
            grid.setColumnStretch(column, stretch)
        self._buttons_wide = wide
        self.updateGeometry()

    def _width_needed(self, grid_columns: int) -> int:
        """The width the panel needs with its settings in ``grid_columns`` grid columns."""
        grid = self.settings_grid
        hints = [
            (
                label.minimumSizeHint().width(),
                field.minimumSize().width()
                if isinstance(field, QHBoxLayout)
                else max(field.minimumSizeHint().width(), field.minimumWidth()),
            )
            for label, field in self._settings_fields
        ]
        per_row = grid_columns // 2  # label and field pairs a row
        columns = []
        for column in range(per_row):
            mine = hints[column::per_row]
            columns.append(max(h[0] for h in mine))
            columns.append(max(h[1] for h in mine))
        grid_width = sum(columns) + grid.horizontalSpacing() * (len(columns) - 1)
        grid_width = max(grid_width, self.advanced.width_needed(grid_columns))

        def width(button: QPushButton) -> int:
            return button.minimumSizeHint().width()

        pause_stop = width(self.pause_button) + width(self.stop_button) + 8
        if grid_columns >= 4:
            buttons = width(self.start_button) + pause_stop + 8
            if self.export_button.isVisible():
                buttons += width(self.export_button) + 8
        else:
            buttons = max(width(self.start_button), pause_stop, width(self.export_button))
        return max(grid_width, buttons)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        # As narrow as the two-column layout allows; resizeEvent picks the columns.
        hint = super().minimumSizeHint()
        if not hasattr(self, "start_button"):
            return hint
        return QSize(self._width_needed(2), hint.height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._reflow(event.size().width())

    def _reflow(self, width: int) -> None:
        wide = width >= self._width_needed(4)
        self._lay_out_settings(4 if wide else 2)
        self._lay_out_buttons(wide)

    def _on_advanced_toggled(self, _expanded: bool) -> None:
        # The form may need more room than the grid: pick the columns again, and let the
        # column around the panel learn the new minimum width.
        self._reflow(self.width())
        self.updateGeometry()

    # ------------------------------------------------------------ config

    def epochs(self) -> int:
        """The number of epochs the next run will train."""
        return int(self.epochs_spin.value())

    def apply_to(self, train: TrainConfig) -> None:
        train.epochs = int(self.epochs_spin.value())
        train.batch_size = int(self.batch_spin.value())
        train.lr = float(self.lr_spin.value())
        train.backbone_lr_mult = float(self.lr_mult_spin.value())
        train.optimizer = self.optimizer_combo.currentData()
        train.schedule = self.schedule_combo.currentData()
        train.device = self.device_combo.currentData()
        train.precision = self.precision_combo.currentData()
        self.advanced.apply_to(train)

    def load_from(self, train: TrainConfig) -> None:
        widgets = (
            self.epochs_spin,
            self.batch_spin,
            self.lr_spin,
            self.lr_mult_spin,
            self.optimizer_combo,
            self.schedule_combo,
            self.device_combo,
            self.precision_combo,
        )
        for widget in widgets:
            widget.blockSignals(True)
        try:
            self.epochs_spin.setValue(train.epochs)
            self.batch_spin.setValue(train.batch_size)
            self.lr_spin.setValue(train.lr)
            self.lr_mult_spin.setValue(train.backbone_lr_mult)
            _select(self.optimizer_combo, train.optimizer)
            _select(self.schedule_combo, train.schedule)
            _select(self.device_combo, train.device)
            _select(self.precision_combo, train.precision)
        finally:
            for widget in widgets:
                widget.blockSignals(False)
        self.advanced.load_from(train)
        self._show_backbone_lr()

    def apply_data_to(self, data: DataConfig) -> None:
        """The data settings the advanced section holds (test share, loader workers)."""
        self.advanced.apply_data_to(data)

    def load_data_from(self, data: DataConfig) -> None:
        self.advanced.load_data_from(data)

    def set_available_devices(self, available: dict[str, bool], auto_device: str = "") -> None:
        """Grey out devices this machine lacks; say what Automatic picks."""
        model = self.device_combo.model()
        for index in range(self.device_combo.count()):
            device = self.device_combo.itemData(index)
            item = model.item(index)
            if device in available and item is not None:
                item.setEnabled(bool(available[device]))
                if not available[device]:
                    item.setToolTip("not available on this machine")
        if auto_device:
            index = self.device_combo.findData("auto")
            self.device_combo.setItemText(index, f"Automatic ({auto_device})")

    # ------------------------------------------------------------ run state

    def set_run_state(self, state: str, can_start: bool = False, why_not: str = "") -> None:
        """``idle``, ``running``, ``paused`` or ``stopping``; ``why_not`` says what keeps
        Start disabled (shown on the button's tooltip)."""
        running = state in ("running", "paused", "stopping")
        self.start_button.setEnabled(not running and can_start)
        if not can_start and why_not:
            tip = f"Start training (Ctrl+R): not now. {why_not}"
        else:
            tip = "Start training (Ctrl+R)"
        # The status tip shows in the window's status bar while the pointer is over it.
        self.start_button.setToolTip(tip)
        self.start_button.setStatusTip(tip)
        self.pause_button.setEnabled(state in ("running", "paused"))
        self.stop_button.setEnabled(state in ("running", "paused"))
        self.pause_button.setText("Resume" if state == "paused" else "Pause")
        icon = (
            QStyle.StandardPixmap.SP_MediaPlay if state == "paused" else QStyle.StandardPixmap.SP_MediaPause
        )
        self.pause_button.setIcon(self.style().standardIcon(icon))
        for widget in (
            self.epochs_spin,
            self.batch_spin,
            self.lr_spin,
            self.lr_mult_spin,
            self.optimizer_combo,
            self.schedule_combo,
            self.device_combo,
            self.precision_combo,
        ):
            widget.setEnabled(not running)
        self.advanced.set_editable(not running)

    def show_stage(self, message: str, done: int, total: int) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(min(done, total))
            self.progress.setFormat(f"{message} {done}/{total}")
        else:
            self.progress.setRange(0, 0)
            self.progress.setFormat(message)

    def show_batch(self, event: Any, epochs: int, paused: bool = False) -> None:
        per_epoch = max(1, event.batches_per_epoch)
        total = max(1, epochs * per_epoch)
        self.progress.setRange(0, total)
        self.progress.setValue(min(event.step + 1, total))
        # None: a phase still to run has no measured speed yet (just after a freeze change).
        left = "estimating…" if event.eta_s is None else f"{format_duration(event.eta_s)} left"
        text = f"Epoch {event.epoch + 1}/{epochs} · batch {event.batch + 1}/{per_epoch} · {left}"
        if paused:
            text = "Paused · " + text
        self.progress.setFormat(text)

    def reset_progress(self) -> None:
        """Back to "Not started" (the last run's progress belongs to another project)."""
        self.export_button.setVisible(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("Not started")

    def show_finished(self, status: str, epochs: int, seconds: float | None, has_model: bool = False) -> None:
        """The run's end on the progress bar; with ``has_model`` (a checkpoint was written)
        the Export button appears beside Stop."""
        self.export_button.setVisible(has_model)
        words = {
            "completed": "Done",
            "early-stopped": "Stopped early",
            "cancelled": "Stopped",
            "failed": "Failed",
        }
        text = f"{words.get(status, status)} after {epochs} epoch{'s' if epochs != 1 else ''}"
        if seconds:
            text += f" · {format_duration(seconds)}"
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        if status in ("completed", "early-stopped"):
            self.progress.setValue(self.progress.maximum())
        self.progress.setFormat(text)

    def show_message(self, level: str, text: str) -> None:
        self.status_label.show_message(level, text)

    def _changed(self, *_args: Any) -> None:
        self._show_backbone_lr()
        self.config_changed.emit()

    def _show_dependent_settings(self, *_args: Any) -> None:
        self.advanced.set_optimizer_and_schedule(
            self.optimizer_combo.currentData(), self.schedule_combo.currentData()
        )

    def _show_backbone_lr(self) -> None:
        rate = self.lr_spin.value() * self.lr_mult_spin.value()
        self.backbone_lr_label.setText(f"= {rate:.3g}" if rate > 0 else "= 0 (fixed)")


def _combo(values: tuple[str, ...], labels: dict[str, str]) -> QComboBox:
    combo = QComboBox()
    for value in values:
        combo.addItem(labels.get(value, value), value)
    return combo


def _select(combo: QComboBox, value: str) -> None:
    index = combo.findData(value)
    if index >= 0:
        combo.setCurrentIndex(index)
