"""The data panel: where the images come from, what classes they hold and how they split.

(About 590 lines: one form, half of it the construction of its fields; the image check
itself runs in core.data on a background task, and the class counts table and summary line
are :mod:`~desktop_tl.gui.class_counts`.)

Choosing a folder (picker, typed path or a drop on the window) checks every image off the
GUI thread with :func:`desktop_tl.core.data.prepare_data`, with progress and a Cancel
button. The result is shown as a table of classes with image counts per split plus the
files that were skipped and why; a dataset that cannot be used is explained in the panel.
"View images…" opens the :class:`~desktop_tl.gui.dataset_browser.DatasetBrowser`, where
images can be left out of training (the project's ``data.exclude``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.config import AUGMENT_PRESETS, DataConfig
from ..errors import UserError
from .background import BackgroundTask, LatestRequest, run_in_background
from .class_counts import ClassCountsTable, fit_table_height, summary_text
from .notice import Notice

AUTO_LOADER = "auto"

AUGMENT_LABELS = {"none": "None", "light": "Light: crop + flip", "strong": "Strong: + colour, TrivialAugment"}
AUGMENT_HELP = (
    "Random changes to training images each epoch. None keeps the images as they are, "
    "which lets frozen layers' features be computed once (much faster)."
)


class DataPanel(QWidget):
    """Loader, dataset path, split, augmentation, class counts and the skipped files."""

    prepared_changed = Signal(object)  # PreparedData, or None when there is none
    busy_changed = Signal(bool)
    config_changed = Signal()
    log = Signal(str, str)  # level, message

    def __init__(self, settings: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.host: Any = None
        self.prepared: Any = None
        #: The data settings ``prepared`` was checked with (the fields may have moved on since).
        self.prepared_with: DataConfig | None = None
        self._task: BackgroundTask | None = None
        self._latest_check = LatestRequest()
        #: The project's ``data.exclude``: images the user left out of training.
        self._exclude: list[str] = []
        #: The dataset path the left-out list was made in, and the lists of other
        #: datasets chosen before in this window (brought back when one is chosen again).
        self._exclude_path = ""
        self._exclude_by_path: dict[str, list[str]] = {}
        self._exclude_note = ""
        #: Why the last check refused the data ("" when it did not).
        self.problem = ""
        self.browser: Any = None  # the dataset browser, made when first opened

        self.loader_combo = QComboBox()
        self.loader_combo.addItem("Automatic", AUTO_LOADER)
        self.loader_combo.setToolTip(
            "How the dataset is read. Automatic picks the first installed loader that understands the path."
        )
        self.loader_combo.currentIndexChanged.connect(self._on_loader_changed)

        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("Choose or drop a folder of class subfolders")
        self.path_edit.setClearButtonEnabled(True)
        self.path_edit.editingFinished.connect(self._on_path_edited)
        self.path_edit.textEdited.connect(self._on_path_typed)
        self.path_edit.setToolTip(
            "A folder with one subfolder per class (optionally inside "
            "train/ and val/), or a CSV/TSV manifest of path,label."
        )
        self.browse_button = QToolButton()
        self.browse_button.setText("Browse…")
        self.browse_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        self.browse_button.clicked.connect(self.choose_folder)
        menu = QMenu(self.browse_button)
        menu.addAction("Folder…", self.choose_folder)
        menu.addAction("Manifest file (CSV/TSV)…", self.choose_manifest)
        self.browse_button.setMenu(menu)
        path_row = QHBoxLayout()
        path_row.setSpacing(4)
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(self.browse_button)

        self.val_spin = QDoubleSpinBox()
        self.val_spin.setRange(5, 50)
        self.val_spin.setDecimals(0)
        self.val_spin.setSingleStep(5)
        self.val_spin.setSuffix(" %")
        self.val_spin.setValue(20)
        self.val_spin.setToolTip(
            "Share of each class held out for validation when the data has no train/val folders of its own."
        )
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 999_999)
        self.seed_spin.setToolTip("The random split depends only on this seed.")
        self.split_label = QLabel("")
        self.split_label.setObjectName("splitLabel")
        self.split_label.setWordWrap(True)
        split_row = QHBoxLayout()
        split_row.setSpacing(6)
        split_row.addWidget(QLabel("validation"))
        split_row.addWidget(self.val_spin)
        split_row.addWidget(QLabel("seed"))
        split_row.addWidget(self.seed_spin)
        split_row.addStretch(1)
        self._resplit_timer = QTimer(self)
        self._resplit_timer.setSingleShot(True)
        self._resplit_timer.setInterval(400)
        self._resplit_timer.timeout.connect(self.reload)
        self.val_spin.valueChanged.connect(self._on_split_changed)
        self.seed_spin.valueChanged.connect(self._on_split_changed)

        self.augment_combo = QComboBox()
        for preset in AUGMENT_PRESETS:
            self.augment_combo.addItem(AUGMENT_LABELS.get(preset, preset), preset)
        self.augment_combo.setToolTip(AUGMENT_HELP)
        for combo in (self.loader_combo, self.augment_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        self.augment_combo.currentIndexChanged.connect(lambda _i: self.config_changed.emit())

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        # In a narrow column a long row puts its label above the field instead of cutting it.
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(6)
        form.addRow("Loader", self.loader_combo)
        form.addRow("Images", path_row)
        form.addRow("Split", split_row)
        form.addRow("", self.split_label)
        form.addRow("Augmentation", self.augment_combo)

        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        self.progress_box = QWidget()
        self.progress_box.setLayout(progress_row)
        progress_row.setContentsMargins(0, 0, 0, 0)
        self.progress_box.setVisible(False)

        self.notice = Notice()

        self.class_table = ClassCountsTable()
        self.class_table.setVisible(False)

        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self.summary_label.setObjectName("dataSummary")

        self.skipped_button = QToolButton()
        self.skipped_button.setCheckable(True)
        self.skipped_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.skipped_button.setArrowType(Qt.ArrowType.RightArrow)
        self.skipped_button.setAutoRaise(True)
        self.skipped_button.toggled.connect(self._on_skipped_toggled)
        self.skipped_button.setVisible(False)
        self.skipped_table = QTableWidget(0, 2)
        self.skipped_table.setHorizontalHeaderLabels(["File", "Why it was skipped"])
        self.skipped_table.verticalHeader().setVisible(False)
        self.skipped_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.skipped_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.skipped_table.horizontalHeader().setStretchLastSection(True)
        self.skipped_table.setWordWrap(False)
        self.skipped_table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.skipped_table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.skipped_table.setVisible(False)

        self.view_images_button = QPushButton("View images…")
        self.view_images_button.setObjectName("viewImages")
        self.view_images_button.clicked.connect(self.open_browser)
        self.view_images_button.setToolTip(
            "See the images by class and split, enlarge them, and leave bad ones out of training"
        )
        self.view_images_button.setVisible(False)
        images_row = QHBoxLayout()
        images_row.setContentsMargins(0, 0, 0, 0)
        images_row.addWidget(self.view_images_button)
        images_row.addWidget(self.skipped_button)
        images_row.addStretch(1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addLayout(form)
        layout.addWidget(self.progress_box)
        layout.addWidget(self.notice)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.class_table)
        layout.addLayout(images_row)
        layout.addWidget(self.skipped_table)
        layout.addStretch(1)
        self._show_split_hint()
        self.setEnabled(False)

    # ------------------------------------------------------------ host and config

    def set_host(self, host: Any) -> None:
        self.host = host
        current = self.loader_combo.currentData()
        self.loader_combo.blockSignals(True)
        self.loader_combo.clear()
        self.loader_combo.addItem("Automatic", AUTO_LOADER)
        for loader_id, loader in host.dataset_loaders().items():
            self.loader_combo.addItem(loader.display_name, loader_id)
            self.loader_combo.setItemData(
                self.loader_combo.count() - 1,
                loader.description or loader.display_name,
                Qt.ItemDataRole.ToolTipRole,
            )
        index = self.loader_combo.findData(current)
        self.loader_combo.setCurrentIndex(max(0, index))
        self.loader_combo.blockSignals(False)
        self.setEnabled(True)

    def apply_to(self, data: DataConfig) -> None:
        data.path = self.path_edit.text().strip()
        data.loader = self.loader_combo.currentData() or AUTO_LOADER
        data.val_fraction = round(self.val_spin.value() / 100.0, 4)
        data.split_seed = int(self.seed_spin.value())
        data.augment = self.augment_combo.currentData() or "none"
        data.exclude = list(self._exclude)

    def load_from(self, data: DataConfig, prepare: bool = True) -> None:
        """Show a configuration's data section (and check the images, unless told not to)."""
        for widget in (self.val_spin, self.seed_spin, self.loader_combo, self.augment_combo):
            widget.blockSignals(True)
        try:
            index = self.loader_combo.findData(data.loader)
            if index < 0 and data.loader != AUTO_LOADER:
                self.loader_combo.addItem(f"{data.loader} (not installed)", data.loader)
                index = self.loader_combo.count() - 1
            self.loader_combo.setCurrentIndex(max(0, index))
            self.val_spin.setValue(round(data.val_fraction * 100))
            self.seed_spin.setValue(int(data.split_seed))
            self.augment_combo.setCurrentIndex(max(0, self.augment_combo.findData(data.augment)))
            self._test_fraction = data.test_fraction
            self._exclude = list(data.exclude)
            self._exclude_path = _same_path_key(data.path)
            self._exclude_by_path = {}
        finally:
            for widget in (self.val_spin, self.seed_spin, self.loader_combo, self.augment_combo):
                widget.blockSignals(False)
        self.path_edit.setText(data.path)
        if prepare:
            self.reload()

    _test_fraction = 0.0

    def set_test_fraction(self, fraction: float) -> None:
        """The share held out as a test split (an Advanced setting of the Train tab): the
        images are split again so that the counts shown are the ones a run will use."""
        if fraction != self._test_fraction:
            self._test_fraction = fraction
            if self.path_edit.text().strip():
                self.reload()

    def data_config(self) -> DataConfig:
        data = DataConfig(test_fraction=self._test_fraction)
        self.apply_to(data)
        return data

    # ------------------------------------------------------------ leaving images out

    def excluded_images(self) -> list[str]:
        """The project's ``data.exclude``: the images left out of training."""
        return list(self._exclude)

    def set_excluded_images(self, keys: list[str]) -> None:
        """Leave exactly ``keys`` out of training (the project changes), and check again."""
        keys = list(keys)
        if keys == self._exclude:
            return
        self._exclude = keys
        self._exclude_path = _same_path_key(self.path_edit.text().strip())
        self.config_changed.emit()
        if self.path_edit.text().strip():
            self.reload()

    def open_browser(self) -> None:
        """Show the dataset browser (one per panel, kept while the window lives)."""
        from .dataset_browser import DatasetBrowser

        if self.browser is None:
            # A window of its own beside the main one, not a child of this panel: the panel
            # is disabled while training, and browsing should still work then.
            self.browser = DatasetBrowser(self, self.window())
            screen = self.window().screen().availableGeometry() if self.window().screen() else None
            width, height = (
                (1100, 760)
                if screen is None
                else (min(1100, int(screen.width() * 0.85)), min(760, int(screen.height() * 0.85)))
            )
            self.browser.resize(width, height)
        self.browser.show()
        self.browser.raise_()
        self.browser.activateWindow()

    # ------------------------------------------------------------ choosing data

    def set_path(self, path: str | os.PathLike[str]) -> None:
        self.path_edit.setText(os.fspath(path))
        self.reload()

    def choose_folder(self) -> None:
        start = self._start_folder()
        folder = QFileDialog.getExistingDirectory(self, "Choose the dataset folder", start)
        if folder:
            self._remember_folder(folder)
            self.set_path(folder)

    def choose_manifest(self) -> None:
        start = self._start_folder()
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Choose a dataset manifest",
            start,
            f"Manifests ({' '.join(self._file_patterns()) or '*'});;All files (*)",
        )
        if path:
            self._remember_folder(str(Path(path).parent))
            self.set_path(path)

    def accepts_drop(self, path: str) -> bool:
        """A folder, or a file whose name an installed loader reads (its file patterns)."""
        from ..plugin.manager import loader_candidates

        loaders = self.host.dataset_loaders().values() if self.host is not None else ()
        return Path(path).is_dir() or bool(loader_candidates(loaders, path))

    def _file_patterns(self) -> list[str]:
        loaders = self.host.dataset_loaders().values() if self.host is not None else ()
        return [pattern for loader in loaders for pattern in loader.file_patterns]

    def _start_folder(self) -> str:
        current = self.path_edit.text().strip()
        if current and Path(current).exists():
            return str(Path(current).parent)
        if self.settings is not None and getattr(self.settings, "last_data_folder", ""):
            return self.settings.last_data_folder
        return str(Path.home())

    def _remember_folder(self, folder: str) -> None:
        if self.settings is not None:
            try:
                self.settings.last_data_folder = str(Path(folder).parent)
            except Exception:  # settings are a convenience, never a reason to fail
                pass

    # ------------------------------------------------------------ preparing

    @property
    def busy(self) -> bool:
        return self._task is not None

    def reload(self) -> None:
        """Check the dataset at the current path off the GUI thread."""
        self._resplit_timer.stop()
        self.cancel(quiet=True)
        path = self.path_edit.text().strip()
        self._checked_path = path
        self.problem = ""
        self._set_prepared(None)
        self._follow_the_dataset(path)
        if not path:
            self.notice.clear_message()
            return
        if self.host is None:
            self.notice.show_message("info", "Waiting for PyTorch to load…")
            return
        if not Path(path).exists():
            self.notice.show_message(
                "error",
                f"{path} does not exist. Choose a folder with one subfolder per class, "
                "or a CSV/TSV manifest.",
            )
            self.log.emit("warning", f"dataset path {path} does not exist")
            return
        config = self.data_config()
        host = self.host
        ticket = self._latest_check.begin()

        def prepare(task: BackgroundTask) -> Any:
            from ..core.data import prepare_data

            return prepare_data(config, host, progress=task.report_progress, should_stop=task.should_stop)

        self.notice.show_message("info", f"Checking the images in {path}…")
        self.progress.setRange(0, 0)
        self.progress.setFormat("Checking images…")
        self.progress_box.setVisible(True)
        self._task = run_in_background(
            prepare,
            on_result=ticket.only_current(lambda prepared: self._on_prepared(prepared, config)),
            on_error=ticket.only_current(self._on_failed),
            on_progress=ticket.only_current(self._on_progress),
            name="prepare-data",
        )
        self.busy_changed.emit(True)

    def cancel(self, quiet: bool = False) -> None:
        task = self._task
        if task is None:
            return
        task.cancel()
        self._latest_check.drop()
        self._task = None
        self.progress_box.setVisible(False)
        if not quiet:
            self.notice.show_message(
                "warning", "Checking the images was cancelled. Choose the folder again to retry."
            )
        self.busy_changed.emit(False)

    def _on_progress(self, done: int, total: int, message: str) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(min(done, total))
            self.progress.setFormat(f"{message or 'Checking images'} %v / %m")
        else:
            self.progress.setRange(0, 0)
            self.progress.setFormat(message or "Checking images…")

    def _on_prepared(self, prepared: Any, checked_with: DataConfig) -> None:
        self._finish_task()
        self._set_prepared(prepared)
        self.prepared_with = checked_with
        self.log.emit("info", f"dataset {prepared.root}: {summary_text(prepared)}")
        if prepared.excluded_gone:
            gone = prepared.excluded_gone
            self.log.emit(
                "info",
                f"{len(gone)} image(s) left out of training are no longer in the dataset "
                f"(moved or deleted): {', '.join(gone[:5])}{' …' if len(gone) > 5 else ''}",
            )
        for message in prepared.warnings:
            self.log.emit("warning", message)

    def _on_failed(self, exc: BaseException, tb: str) -> None:
        self.problem = str(exc)  # before busy_changed, so that its listeners can say why
        self._finish_task()
        if isinstance(exc, UserError):
            self.notice.show_message("error", str(exc))
            self.log.emit("warning", f"dataset refused: {exc}")
        else:
            self.notice.show_message(
                "error",
                f"The dataset could not be read because of an unexpected error "
                f"({type(exc).__name__}: {exc}). The log has the details.",
            )
            self.log.emit("error", tb)

    def _finish_task(self) -> None:
        self._task = None
        self.progress_box.setVisible(False)
        self.busy_changed.emit(False)

    # ------------------------------------------------------------ showing the result

    def _set_prepared(self, prepared: Any) -> None:
        self.prepared = prepared
        self.prepared_with = None
        if prepared is None:
            self.class_table.setRowCount(0)
            self.class_table.setVisible(False)
            self.summary_label.setText("")
            self._show_skipped([], [])
            self._show_split_hint()
            # After a refusal the images stay browsable: the way back may be there.
            self.view_images_button.setVisible(
                self.browser is not None and bool(self.path_edit.text().strip())
            )
            self.prepared_changed.emit(None)
            return
        self.class_table.show_counts(prepared)
        self.class_table.setVisible(True)
        self.summary_label.setText(summary_text(prepared))
        self.view_images_button.setVisible(True)
        self._show_skipped(list(prepared.bad_files), list(prepared.ignored))
        self._show_split_hint()
        problems = []
        if prepared.bad_files:
            problems.append(
                f"{len(prepared.bad_files)} image file"
                f"{'s' if len(prepared.bad_files) != 1 else ''} could not be read and will be "
                "skipped (see the list below)."
            )
        warnings = list(prepared.warnings)
        problems += warnings[:3]  # the rest are in the log, one line each
        if len(warnings) > 3:
            problems.append(f"{len(warnings) - 3} more warnings in the Log tab.")
        if problems:
            self.notice.show_message("warning", "\n".join(problems + [self._exclude_note]).strip())
        elif self._exclude_note:
            self.notice.show_message("info", self._exclude_note)
        else:
            self.notice.clear_message()
        self.prepared_changed.emit(prepared)

    def _follow_the_dataset(self, path: str) -> None:
        """The left-out list names images of one dataset. Another dataset chosen while
        that one is still there starts with none left out (the list is kept, and comes
        back if the first is chosen again); a dataset whose old folder is gone was moved,
        so the list goes with it."""
        key = _same_path_key(path)
        old = self._exclude_path
        self._exclude_note = ""
        if not key or key == old:
            return
        if old and self._exclude and Path(old).exists():
            self._exclude_by_path[old] = self._exclude
            count = len(self._exclude)
            self._exclude = self._exclude_by_path.pop(key, [])
            # The folder's name on screen (it is next to the path box), the path in the log.
            name = Path(old).name if Path(old).name != Path(key).name else old
            images = f"{count} image{'s' if count != 1 else ''}"
            verb = "are" if count != 1 else "is"
            self._exclude_note = (
                f"The {images} left out of training in {name} {verb} not left out here; "
                f"choosing {name} again brings the list back."
            )
            self.log.emit("info", f"the {images} left out of training in {old} {verb} not left out of {key}")
            self.config_changed.emit()
        elif key in self._exclude_by_path and not self._exclude:
            self._exclude = self._exclude_by_path.pop(key)
            count = len(self._exclude)
            self._exclude_note = (
                f"{count} image{'s' if count != 1 else ''} left out of training here before "
                f"{'are' if count != 1 else 'is'} left out again."
            )
            self.log.emit("info", self._exclude_note)
            self.config_changed.emit()
        self._exclude_path = key

    def _show_split_hint(self) -> None:
        prepared = self.prepared
        predefined = prepared is not None and prepared.split_source == "predefined"
        self.val_spin.setEnabled(not predefined)
        self.seed_spin.setEnabled(not predefined)
        if prepared is None:
            self.split_label.setText("Used when the data has no train/ and val/ folders.")
        elif predefined:
            self.split_label.setText("Using the dataset's own train/val split.")
        elif prepared.split_source == "drawn-from-train":
            self.split_label.setText(
                "No val/ folder: validation drawn from train/, the same proportion from every class."
            )
        else:
            self.split_label.setText("Random split, the same proportion from every class.")

    def _show_skipped(self, bad: list[tuple[str, str]], ignored: list[tuple[str, str]]) -> None:
        rows = [(path, reason) for path, reason in bad] + [(path, reason) for path, reason in ignored]
        self.skipped_table.setRowCount(len(rows))
        root = Path(self.prepared.root) if self.prepared is not None else None
        for row, (path, reason) in enumerate(rows):
            shown = path
            if root is not None:
                try:
                    shown = str(Path(path).relative_to(root))
                except ValueError:
                    pass
            item = QTableWidgetItem(shown)
            item.setToolTip(path)
            self.skipped_table.setItem(row, 0, item)
            reason_item = QTableWidgetItem(reason)
            reason_item.setToolTip(reason)
            self.skipped_table.setItem(row, 1, reason_item)
        fit_table_height(self.skipped_table, len(rows), max_rows=8)
        if rows:
            parts = []
            if bad:
                parts.append(f"{len(bad)} unreadable")
            if ignored:
                parts.append(f"{len(ignored)} ignored")
            self.skipped_button.setText(f"Skipped files ({', '.join(parts)})")
        self.skipped_button.setVisible(bool(rows))
        if not rows:
            self.skipped_button.setChecked(False)
        self._on_skipped_toggled(self.skipped_button.isChecked())

    def _on_skipped_toggled(self, shown: bool) -> None:
        self.skipped_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.skipped_table.setVisible(shown and self.skipped_table.rowCount() > 0)

    # ------------------------------------------------------------ reacting

    _checked_path: str | None = None

    def _on_path_typed(self, _text: str) -> None:
        # What is typed is not what was checked: Start waits until it has been.
        if self.prepared is not None:
            self._set_prepared(None)
            self.notice.show_message("info", "Press Enter to check this dataset.")

    def _on_path_edited(self) -> None:
        if self.path_edit.text().strip() != self._checked_path or (self.prepared is None and not self.busy):
            self.reload()

    def _on_loader_changed(self, _index: int) -> None:
        self.config_changed.emit()
        if self.path_edit.text().strip():
            self.reload()

    def _on_split_changed(self, _value: object) -> None:
        self.config_changed.emit()
        if self.path_edit.text().strip() and not (
            self.prepared is not None and self.prepared.split_source == "predefined"
        ):
            self._resplit_timer.start()


def _same_path_key(path: str) -> str:
    """``path`` written the same way whatever the spelling (a trailing slash, ~, ..)."""
    return os.path.abspath(os.path.expanduser(path)) if path else ""
