"""Preferences: where runs, weights and cached features go, the theme, and the memory
budget new projects start with; the dialog that edits them and the Preferences… action.

The folders are applied by :mod:`desktop_tl.gui.app_preferences` (through the engine's
environment variables) and the theme by :mod:`desktop_tl.gui.theme`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.config import TrainConfig
from ..core.run_folder import runs_dir
from ..first_start import unwritable_place
from .app_preferences import FOLDERS, AppPreferences, FolderPreference
from .app_preferences import new_project_config as new_project_config  # File > New imports it here
from .notice import Notice
from .settings import THEMES
from .theme import apply_theme

THEME_LABELS = {"system": "Follow the system", "light": "Light", "dark": "Dark"}
#: Run states in which the engine may be reading the folders (see MainWindow.run_state).
_RUN_GOING = ("running", "paused", "stopping")


def install_preferences(window: Any, menu: QMenu, before: QAction | None = None) -> QAction:
    """Apply the stored preferences to ``window``'s process (folders, theme, the budget of
    its first, empty project) and add Preferences… (Ctrl+,) to ``menu`` before ``before``."""
    preferences = AppPreferences(window.settings, window)
    window.preferences = preferences
    preferences.apply_folders()
    if window.settings is not None and window.settings.theme != "system":
        apply_theme(window.settings.theme)  # "system" leaves the palette alone
    window.config = preferences.new_project_config()
    action = QAction("&Preferences…", window)
    action.setShortcut(QKeySequence("Ctrl+,"))
    action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    action.setMenuRole(QAction.MenuRole.PreferencesRole)  # macOS: the application menu
    action.triggered.connect(lambda _checked=False: open_preferences(window))
    if window.settings is None:
        action.setEnabled(False)
        action.setToolTip("This window was opened without a settings store.")
    window.addAction(action)
    menu.insertAction(before, action)
    menu.insertSeparator(before)
    window.preferences_action = action
    return action


def open_preferences(window: Any) -> "PreferencesDialog":
    """Show the Preferences dialog for ``window`` (window-modal; returned for tests)."""
    dialog = PreferencesDialog(window)
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    window.preferences_dialog = dialog
    dialog.open()
    return dialog


# --------------------------------------------------------------------------- the cache


def feature_cache_usage(directory: Path) -> tuple[int, int]:
    """(files, bytes) of the feature-cache entries in ``directory``, including partly
    written ones."""
    from ..core.feature_cache import ENTRY_SUFFIX  # imports torch: only once it is loaded

    files = size = 0
    if not directory.is_dir():
        return 0, 0
    for path in directory.iterdir():
        # The files prune() manages: entries, and the temporary files of writes.
        if path.suffix == ENTRY_SUFFIX or path.name.endswith(".tmp"):
            try:
                size += path.stat().st_size
                files += 1
            except OSError:
                continue
    return files, size


def describe_size(nbytes: int) -> str:
    if nbytes < 1024:
        return f"{nbytes} bytes"
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


# --------------------------------------------------------------------------- the dialog


class FolderRow(QWidget):
    """A folder field with Browse… and Default, and a line saying why it was refused."""

    def __init__(
        self, folder: FolderPreference, chosen: str, default_note: str, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.folder = folder
        self.edit = QLineEdit(chosen)
        self.edit.setPlaceholderText(default_note)
        self.edit.setToolTip(
            f"{folder.purpose}\nEmpty: {default_note}. "
            f"Sets {folder.variable} for runs started from this window."
        )
        self.edit.setClearButtonEnabled(True)
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self.browse)
        self.default_button = QPushButton("Default")
        self.default_button.setToolTip(f"Use {default_note}")
        self.default_button.clicked.connect(self.edit.clear)
        self.problem = Notice()
        fields = QHBoxLayout()
        fields.setContentsMargins(0, 0, 0, 0)
        fields.addWidget(self.edit, 1)
        fields.addWidget(self.browse_button)
        fields.addWidget(self.default_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(fields)
        layout.addWidget(self.problem)
        self.edit.textChanged.connect(lambda _text: self.problem.clear_message())

    def text(self) -> str:
        return self.edit.text().strip()

    def browse(self) -> None:
        start = self.text() or self.edit.placeholderText().rsplit(" (", 1)[0]
        chosen = QFileDialog.getExistingDirectory(self, f"Choose the {self.folder.label.lower()}", start)
        if chosen:
            self.edit.setText(chosen)
            self.check()

    def check(self) -> bool:
        """Whether the folder in the field can be used; says why not beside it."""
        text = self.text()
        if not text:
            return True
        path = Path(text).expanduser()
        if not path.is_absolute():
            self.problem.show_message(
                "error", f"{text} is not a full path: choose the folder with Browse… or type it from the top."
            )
            return False
        reason = unwritable_place(path)
        if reason:
            self.problem.show_message(
                "error",
                f"{path} cannot be written ({reason}). Choose "
                "a folder you can write to, or ask for write access.",
            )
            return False
        return True


class PreferencesDialog(QDialog):
    """Folders, feature cache and theme. The theme applies as soon as it is chosen (and
    goes back on Cancel); folders and the budget apply on OK, once every folder checks."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window_ = window
        self.preferences: AppPreferences = window.preferences
        self.settings = window.settings
        self.setWindowTitle("Preferences")
        self._theme_before = self.settings.theme
        running = getattr(window, "run_state", "idle") in _RUN_GOING

        folders_box = QGroupBox("Folders")
        folders_form = QFormLayout(folders_box)
        self.folder_rows: dict[str, FolderRow] = {}
        for folder in FOLDERS:
            row = FolderRow(folder, self.preferences.chosen(folder), self.preferences.default_note(folder))
            row.setEnabled(not running)
            self.folder_rows[folder.key] = row
            label = QLabel(folder.label)
            label.setToolTip(folder.purpose)
            folders_form.addRow(label, row)
        if running:
            folders_form.addRow(QLabel("The folders can be changed once the run has stopped."))

        cache_box = QGroupBox("Feature cache")
        cache_form = QFormLayout(cache_box)
        self.budget_spin = QSpinBox()
        self.budget_spin.setRange(0, 1_000_000)
        self.budget_spin.setSingleStep(256)
        self.budget_spin.setSuffix(" MB")
        budget = self.settings.new_project_cache_budget_mb
        self.budget_spin.setValue(TrainConfig().cache_budget_mb if budget is None else budget)
        self.budget_spin.setToolTip(
            "How much memory a run may use for cached features and decoded images before "
            "the rest goes to the cache folder on disk (train.cache_budget_mb). New "
            "projects start with this value; an open project keeps its own."
        )
        cache_form.addRow("Memory budget for new projects", self.budget_spin)
        self.cache_size_label = QLabel()
        self.cache_size_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.clear_button = QPushButton("Clear…")
        self.clear_button.setToolTip("Delete the kept features; later runs compute them again.")
        self.clear_button.clicked.connect(self.ask_clear_cache)
        if running:
            self.clear_button.setEnabled(False)
            self.clear_button.setToolTip("A run may be reading the cache: stop it first.")
        size_row = QHBoxLayout()
        size_row.addWidget(self.cache_size_label, 1)
        size_row.addWidget(self.clear_button)
        cache_form.addRow("On disk", size_row)
        self.cache_notice = Notice()
        cache_form.addRow(self.cache_notice)

        look_box = QGroupBox("Appearance")
        look_form = QFormLayout(look_box)
        self.theme_combo = QComboBox()
        for theme in THEMES:
            self.theme_combo.addItem(THEME_LABELS[theme], theme)
        self.theme_combo.setCurrentIndex(self.theme_combo.findData(self._theme_before))
        self.theme_combo.currentIndexChanged.connect(self._on_theme_chosen)
        look_form.addRow("Theme", self.theme_combo)

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.buttons = buttons

        layout = QVBoxLayout(self)
        for box in (folders_box, cache_box, look_box):
            layout.addWidget(box)
        layout.addStretch(1)
        layout.addWidget(buttons)
        # Never smaller than the contents (the size line wraps, notices come and go).
        layout.setSizeConstraint(QLayout.SizeConstraint.SetMinimumSize)
        self.refresh_cache_size()
        self.resize(max(self.sizeHint().width(), 760), self.sizeHint().height())

    # ------------------------------------------------------------------ cache

    def cache_folder(self) -> Path:
        from ..core.feature_cache import features_dir

        return features_dir()

    def refresh_cache_size(self) -> tuple[int, int]:
        folder = self.cache_folder()
        files, size = feature_cache_usage(folder)
        self.cache_size_label.setText(
            (f"{describe_size(size)} in {files} file{'s' if files != 1 else ''}" if files else "Empty")
            + f"\n{folder}"
        )
        self.clear_button.setEnabled(
            bool(files) and getattr(self.window_, "run_state", "idle") not in _RUN_GOING
        )
        return files, size

    def ask_clear_cache(self) -> None:
        files, size = self.refresh_cache_size()
        if not files:
            return
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Clear the feature cache",
            f"Delete {describe_size(size)} of cached features in "
            f"{self.cache_folder()}? Later runs compute them again (slower the "
            "first time). Nothing else in the folder is touched.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.button(QMessageBox.StandardButton.Yes).setText("Delete")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        self.clear_question = box
        box.finished.connect(lambda result: self._on_clear_answered(result))
        box.open()

    def _on_clear_answered(self, result: int) -> None:
        self.clear_question = None
        if result != QMessageBox.StandardButton.Yes:
            return
        self.clear_cache()

    def clear_cache(self) -> list[Path]:
        """Delete every kept feature entry (and writes abandoned a day ago or earlier)."""
        from ..core.feature_cache import prune

        before = self.refresh_cache_size()[1]
        removed = prune(self.cache_folder(), keep_bytes=0)
        files, after = self.refresh_cache_size()
        if files:
            self.cache_notice.show_message(
                "warning",
                f"Freed {describe_size(before - after)}; {files} file(s) could not "
                "be deleted (in use by a run in another program, or being written now).",
            )
        else:
            self.cache_notice.show_message(
                "good", f"Freed {describe_size(before - after)} ({len(removed)} file(s) deleted)."
            )
        return removed

    # ------------------------------------------------------------------ theme

    def _on_theme_chosen(self, _index: int) -> None:
        apply_theme(self.theme_combo.currentData())

    # ------------------------------------------------------------------ OK / Cancel

    def accept(self) -> None:
        rows = list(self.folder_rows.values())
        if not all([row.check() for row in rows]):  # every row says its problem at once
            return
        changed = False
        for row in rows:
            if row.isEnabled() and row.text() != self.preferences.chosen(row.folder):
                self.settings.set_chosen_folder(row.folder.key, row.text())
                changed = True
        self.preferences.apply_folders()
        self.settings.new_project_cache_budget_mb = self.budget_spin.value()
        self.settings.theme = self.theme_combo.currentData()
        self.settings.sync()
        if changed:
            runs_view = getattr(self.window_, "runs_view", None)
            if runs_view is not None:
                runs_view.refresh()
            self.window_.show_status("Preferences saved: new runs go to " + str(runs_dir()))
        super().accept()

    def reject(self) -> None:
        if self.theme_combo.currentData() != self._theme_before:
            apply_theme(self._theme_before)
        super().reject()
