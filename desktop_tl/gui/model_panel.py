"""The model panel: which pretrained backbone, where its weights come from, which head.

The model list is searchable (type any part of a name). The weights line says plainly
whether the backbone starts pretrained and from where, or that no weights are on this
machine, with the two ways out: import a file, or explicitly choose random
initialisation (what it says for each choice: weights_choice). Head options become
proper widgets from their :class:`HeadOption` kinds (head_options_form).

The panel also builds the model off the GUI thread whenever the choice or the number of
classes changes, so the layer tree and parameter counts are always the real thing. The
structure does not depend on the weights, so that build skips reading them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QCompleter,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.config import ModelConfig, RunConfig
from ..errors import UserError
from .background import BackgroundTask, LatestRequest, run_in_background
from .head_options_form import HeadOptionsForm
from .notice import Notice
from .weights_choice import describe_weights, weights_ready


class ModelPanel(QWidget):
    """Backbone, weights, head and the parameter counts of the built model."""

    config_changed = Signal()
    model_built = Signal(object)  # BuiltModel, or None when the choice cannot be built
    busy_changed = Signal(bool)
    weights_changed = Signal()
    log = Signal(str, str)

    def __init__(self, settings: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.host: Any = None
        self.built: Any = None
        self.build_error = ""  # why the chosen model could not be built; "" when it could
        self.weights_status: Any = None
        self._weights_choice = "auto"  # "auto", "none" or a file path
        self._head_values: dict[str, dict[str, Any]] = {}
        self._num_classes = 0
        self._task: BackgroundTask | None = None
        self._latest_build = LatestRequest()
        self._loading = False

        self.provider_combo = QComboBox()
        self.provider_combo.setToolTip("Who provides the backbone (each is a plugin).")
        self.provider_combo.currentIndexChanged.connect(self._on_provider_changed)

        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.model_combo.setMaxVisibleItems(20)
        self.model_combo.lineEdit().setPlaceholderText("type to search…")
        self._model_items = QStandardItemModel(self)
        self._weights_by_model: dict[str, Any] = {}  # model -> WeightsStatus, this provider
        self._status_cache: dict[str, dict[str, Any]] = {}  # provider -> its models' statuses
        self.model_combo.setModel(self._model_items)
        completer = QCompleter(self._model_items, self.model_combo)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.model_combo.setCompleter(completer)
        self.model_combo.setToolTip("The pretrained network. Type any part of a name to search.")
        self.model_combo.activated.connect(self._on_model_chosen)
        self.model_combo.lineEdit().editingFinished.connect(self._on_model_chosen)
        self.with_weights_check = QCheckBox("Only models with weights here")
        self.with_weights_check.setToolTip(
            "List only the backbones whose pretrained weights are on this machine (shown "
            "in bold in the list)."
        )
        self.with_weights_check.toggled.connect(self._on_with_weights_toggled)

        self.weights_label = Notice()
        self.weights_label.setObjectName("weightsLabel")
        self.import_button = QPushButton("Import weights…")
        self.import_button.setToolTip(
            "Verify a .safetensors/.pth/.pt file for this model and copy it into the local weights folder."
        )
        self.import_button.clicked.connect(self.choose_weights_file)
        self.random_check = QCheckBox("Random initialisation")
        self.random_check.setToolTip(
            "Start the backbone from random weights instead of "
            "pretrained ones (needs far more images and time)."
        )
        self.random_check.toggled.connect(self._on_random_toggled)
        weights_row = QHBoxLayout()
        weights_row.setSpacing(8)
        weights_row.addWidget(self.import_button)
        weights_row.addWidget(self.random_check)
        weights_row.addStretch(1)

        self.head_combo = QComboBox()
        self.head_combo.setToolTip("The new classifier put on top of the backbone.")
        self.head_combo.currentIndexChanged.connect(self._on_head_changed)
        for combo in (self.provider_combo, self.model_combo, self.head_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        self.head_form = HeadOptionsForm()
        self.head_form.changed.connect(self._on_head_options_changed)

        self.params_label = QLabel("")
        self.params_label.setObjectName("paramsLabel")
        self.params_label.setWordWrap(True)
        self.build_progress = QProgressBar()
        self.build_progress.setRange(0, 0)
        self.build_progress.setFormat("Building the model…")
        self.build_progress.setTextVisible(True)
        self.build_progress.setMaximumHeight(16)
        self.build_progress.setVisible(False)
        self.notice = Notice()

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(6)
        # In a narrow column a long row puts its label above the field instead of cutting it.
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("Provider", self.provider_combo)
        form.addRow("Backbone", self.model_combo)
        form.addRow("", self.with_weights_check)
        form.addRow("Weights", self.weights_label)
        form.addRow("", weights_row)
        form.addRow("Head", self.head_combo)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addLayout(form)
        head_options = QHBoxLayout()
        head_options.setContentsMargins(16, 0, 0, 0)
        head_options.addWidget(self.head_form)
        layout.addLayout(head_options)
        layout.addWidget(self.build_progress)
        layout.addWidget(self.params_label)
        layout.addWidget(self.notice)

        self._build_timer = QTimer(self)
        self._build_timer.setSingleShot(True)
        self._build_timer.setInterval(250)
        self._build_timer.timeout.connect(self.build_now)
        self.setEnabled(False)

    # ------------------------------------------------------------ host and config

    def set_host(self, host: Any) -> None:
        self.host = host
        self._status_cache.clear()
        self._loading = True
        try:
            self.provider_combo.clear()
            for provider_id, provider in host.backbone_providers().items():
                self.provider_combo.addItem(provider.display_name, provider_id)
                self.provider_combo.setItemData(
                    self.provider_combo.count() - 1,
                    provider.description or provider.display_name,
                    Qt.ItemDataRole.ToolTipRole,
                )
            self.head_combo.clear()
            for head_id, head in host.head_types().items():
                self.head_combo.addItem(head.display_name, head_id)
                self.head_combo.setItemData(
                    self.head_combo.count() - 1,
                    head.description or head.display_name,
                    Qt.ItemDataRole.ToolTipRole,
                )
        finally:
            self._loading = False
        if not self.provider_combo.count():
            self.notice.show_message(
                "error",
                "No backbone plugins are installed, so there is nothing to train. "
                "Install one (e.g. pip install -e plugins/dtl_efficientnet_lite) and restart.",
            )
        self._fill_models(prefer_weights=True)
        self._fill_head_options()
        self._refresh_weights()
        self.setEnabled(True)

    def apply_to(self, model: ModelConfig) -> None:
        model.backbone = self.backbone_name()
        model.weights = self._weights_choice
        model.head = self.head_combo.currentData() or model.head
        model.head_options = self.head_form.values()

    def load_from(self, model: ModelConfig) -> None:
        """Show a configuration's model section."""
        self._loading = True
        try:
            provider_id, _, model_name = model.backbone.rpartition(":")
            if self.host is not None:
                try:
                    provider, model_name = self.host.resolve_backbone(model.backbone)
                    provider_id = provider.id
                except UserError as exc:
                    self.notice.show_message("error", str(exc))
            index = self.provider_combo.findData(provider_id)
            if index >= 0:
                self.provider_combo.setCurrentIndex(index)
            self._fill_models()
            if model_name not in self.listed_models() and self.with_weights_check.isChecked():
                self.with_weights_check.setChecked(False)  # show the project's model
                self._fill_models()
            self.model_combo.setCurrentText(model_name)
            self._weights_choice = model.weights or "auto"
            self.random_check.setChecked(self._weights_choice == "none")
            head_index = self.head_combo.findData(model.head)
            if head_index >= 0:
                self.head_combo.setCurrentIndex(head_index)
            self._head_values[model.head] = dict(model.head_options)
            self._fill_head_options()
        finally:
            self._loading = False
        self._refresh_weights()
        self.config_changed.emit()

    def backbone_name(self) -> str:
        provider_id = self.provider_combo.currentData() or ""
        model_name = self.model_combo.currentText().strip()
        return f"{provider_id}:{model_name}" if provider_id else model_name

    def model_name(self) -> str:
        return self.model_combo.currentText().strip()

    def weights_ok(self) -> tuple[bool, str]:
        """Whether training can start with this weights choice, and why not."""
        return weights_ready(self._weights_choice, self.weights_status)

    # ------------------------------------------------------------ building

    def request_build(self, num_classes: int | None = None) -> None:
        """Rebuild the model soon (changes arriving together cause one build)."""
        if num_classes is not None:
            self._num_classes = num_classes
        self._build_timer.start()
        self._set_busy(True)

    def build_now(self) -> None:
        self._build_timer.stop()
        if self.host is None or not self.model_name():
            self._set_busy(self._task is not None)
            return
        config = RunConfig()
        self.apply_to(config.model)
        config.model.weights = "none"  # the structure is the same; skip reading weights
        num_classes = self._num_classes or 2
        host = self.host
        ticket = self._latest_build.begin()
        if self._task is not None:
            self._task.cancel()

        def build(task: BackgroundTask) -> Any:
            from ..core.model import build_model

            return build_model(config, host, num_classes)

        self.build_progress.setVisible(True)
        self._set_busy(True)
        self._task = run_in_background(
            build,
            on_result=ticket.only_current(self._on_built),
            on_error=ticket.only_current(self._on_build_failed),
            name="build-model",
        )

    @property
    def busy(self) -> bool:
        return self._task is not None or self._build_timer.isActive()

    _busy_shown = False

    def _set_busy(self, busy: bool) -> None:
        if busy != self._busy_shown:
            self._busy_shown = busy
            self.busy_changed.emit(busy)

    def _on_built(self, built: Any) -> None:
        self._task = None
        self.build_progress.setVisible(False)
        self.built = built
        self.build_error = ""
        self.notice.clear_message()
        self._show_params(built)
        self.model_built.emit(built)
        self._set_busy(False)

    def _on_build_failed(self, exc: BaseException, tb: str) -> None:
        self._task = None
        self.build_progress.setVisible(False)
        self.built = None
        self.params_label.setText("")
        self.build_error = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, UserError):
            self.notice.show_message("error", str(exc))
            self.log.emit("warning", f"model not built: {exc}")
        else:
            self.notice.show_message(
                "error",
                f"The model could not be built ({type(exc).__name__}: {exc}). The log has the details.",
            )
            self.log.emit("error", tb)
        self.model_built.emit(None)
        self._set_busy(False)

    def _show_params(self, built: Any) -> None:
        backbone = sum(p.numel() for p in built.model.backbone.parameters())
        head = sum(p.numel() for p in built.model.head.parameters())
        pre = built.backbone.preprocessing
        classes = (
            f"{self._num_classes} classes" if self._num_classes else "2 classes until a dataset is chosen"
        )
        self.params_label.setText(
            f"Backbone: {backbone:,} parameters, {built.backbone.feature_dim:,} features, "
            f"{pre.crop}×{pre.crop} px input\nHead: {head:,} parameters for {classes}"
        )

    # ------------------------------------------------------------ weights

    def choose_weights_file(self) -> None:
        start = ""
        if self.settings is not None:
            start = self.settings.value("folders/last_weights", "") or ""
        path, _ = QFileDialog.getOpenFileName(
            self,
            f"Weights for {self.model_name()}",
            start,
            "Weights (*.safetensors *.pth *.pt);;All files (*)",
        )
        if path:
            if self.settings is not None:
                self.settings.set_value("folders/last_weights", str(Path(path).parent))
            self.import_weights(path)

    def import_weights(self, path: str) -> None:
        """Verify and copy a weights file into the weights folder (off the GUI thread)."""
        host, backbone = self.host, self.backbone_name()

        def do_import(task: BackgroundTask) -> Any:
            from ..core.weights import import_weights

            return import_weights(path, model_name=backbone, host=host)

        self.import_button.setEnabled(False)
        self.weights_label.show_message("info", f"Checking {Path(path).name}…")
        run_in_background(
            do_import, on_result=self._on_imported, on_error=self._on_import_failed, name="import-weights"
        )

    def _on_imported(self, target: Any) -> None:
        self.import_button.setEnabled(True)
        self.log.emit("info", f"weights imported to {target}")
        self._weights_choice = "auto"
        self.random_check.setChecked(False)
        self._status_cache.clear()
        self._fill_models()  # the imported model is now one with weights
        self._refresh_weights()

    def _on_import_failed(self, exc: BaseException, tb: str) -> None:
        self.import_button.setEnabled(True)
        self._refresh_weights()
        message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        self.notice.show_message("error", f"The weights file was not imported: {message}")
        self.log.emit(
            "warning" if isinstance(exc, UserError) else "error",
            message if isinstance(exc, UserError) else tb,
        )

    def _refresh_weights(self) -> None:
        if self.host is None or not self.model_name():
            self.weights_status = None
            self.weights_label.show_message("info", "Choose a backbone.")
            self.import_button.setVisible(False)
            return
        line = describe_weights(self.host, self.backbone_name(), self._weights_choice)
        self.weights_status = line.status
        self.weights_label.show_message(line.level, line.text)
        if line.tooltip is not None:
            self.weights_label.setToolTip(line.tooltip)
        if line.plugin_error:
            self.log.emit("error", line.plugin_error)
        self.import_button.setVisible(line.can_import)
        self.weights_changed.emit()

    def _on_random_toggled(self, checked: bool) -> None:
        if self._loading:
            return
        self._weights_choice = "none" if checked else "auto"
        self._refresh_weights()
        self.config_changed.emit()

    # ------------------------------------------------------------ choices

    def _fill_models(self, prefer_weights: bool = False) -> None:
        """List the provider's models, those with pretrained weights on this machine in
        bold (only those when the filter is on). Keeps the current model when listed;
        otherwise, or with ``prefer_weights`` when the current one has none, selects the
        first model that has weights (the first model when none has)."""
        provider_id = self.provider_combo.currentData()
        if self.host is not None and provider_id and provider_id not in self._status_cache:
            # file-existence checks only, but thousands for a large provider: once each
            self._status_cache[provider_id] = dict(self.host.weights_statuses(provider_id))
        statuses = self._status_cache.get(provider_id, {}) if self.host is not None else {}
        self._weights_by_model = statuses
        with_weights = [m for m, status in statuses.items() if status.available]
        models = with_weights if self.with_weights_check.isChecked() else list(statuses)
        current = self.model_combo.currentText()
        self._loading, was_loading = True, self._loading
        try:
            self._model_items.clear()
            bold = QFont()
            bold.setBold(True)
            for model in models:
                item = QStandardItem(model)
                status = statuses[model]
                if status.available:
                    item.setFont(bold)
                    item.setToolTip(f"Pretrained weights on this machine: {status.detail}")
                else:
                    item.setToolTip("No pretrained weights on this machine")
                self._model_items.appendRow(item)
            keep = current in models and not (prefer_weights and with_weights and current not in with_weights)
            if keep:
                self.model_combo.setCurrentText(current)
            elif models:
                choice = next((m for m in models if m in with_weights), models[0])
                self.model_combo.setCurrentIndex(models.index(choice))
        finally:
            self._loading = was_loading

    def listed_models(self) -> list[str]:
        """The model names the list shows now."""
        return [self._model_items.item(row).text() for row in range(self._model_items.rowCount())]

    def models_with_weights(self) -> list[str]:
        """This provider's models whose pretrained weights are on this machine."""
        return [m for m, status in self._weights_by_model.items() if status.available]

    def _on_with_weights_toggled(self, _checked: bool) -> None:
        if self._loading:
            return
        self._fill_models()
        self._on_model_chosen()

    def _on_provider_changed(self, _index: int) -> None:
        if self._loading:
            return
        self._fill_models(prefer_weights=True)
        self._on_model_chosen()

    _last_model = ""

    def _on_model_chosen(self, *_args: Any) -> None:
        if self._loading:
            return
        name = self.backbone_name()
        if name == self._last_model:
            return
        models = self.listed_models()
        if self.model_name() not in models:
            self.notice.show_message(
                "error",
                f"{self.model_name()!r} is not one of this provider's models; "
                "pick one from the list (type to search).",
            )
            return
        self._last_model = name
        self.notice.clear_message()
        if self._weights_choice not in ("auto", "none"):
            self._weights_choice = "auto"  # a file chosen for another model does not fit
        self._refresh_weights()
        self.config_changed.emit()

    def _on_head_changed(self, _index: int) -> None:
        if self._loading:
            return
        self._fill_head_options()
        self.config_changed.emit()

    def _on_head_options_changed(self) -> None:
        head_id = self.head_combo.currentData()
        if head_id:
            self._head_values[head_id] = self.head_form.values()
        self.config_changed.emit()

    def _fill_head_options(self) -> None:
        head_id = self.head_combo.currentData()
        if self.host is None or not head_id:
            self.head_form.set_options((), {})
            return
        head = self.host.head_types().get(head_id)
        if head is None:
            self.head_form.set_options((), {})
            return
        self.head_form.set_options(tuple(head.options), self._head_values.get(head_id, {}))

    def cancel(self) -> None:
        self._build_timer.stop()
        if self._task is not None:
            self._task.cancel()
            self._latest_build.drop()
            self._task = None
            self.build_progress.setVisible(False)
        self._set_busy(False)
