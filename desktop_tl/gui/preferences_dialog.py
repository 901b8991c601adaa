"""Preferences: where runs, weights and cached features go, the theme, and the memory
budget new projects start with; the dialog that edits them and the code that applies them.

The engine finds its folders through environment variables (``DTL_RUNS_DIR``,
``DTL_WEIGHTS_DIR``, ``DTL_CACHE_DIR``; see :mod:`desktop_tl.core.run_folder` and
:mod:`desktop_tl.plugin.weights`), read each time it needs one. A folder chosen here is
therefore honoured by setting that variable in the window's own process: once at
start-up, before any run, and again whenever the choice changes. A folder chosen here
wins over the same variable set when the app was launched; clearing the choice brings
the launch value (or the platform's default) back. Runs started from the window, the
run history and weight look-ups all see the same folders as ``desktop-tl`` on the command
line would with those variables set.

The theme is applied to the whole application at once: the colour-scheme hint (which
native styles follow) and an explicit palette (which every other style follows), or,
for "system", neither, so the desktop's own scheme shows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QColor, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QApplication,
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

from ..core.config import RunConfig, TrainConfig
from ..core.run_folder import cache_dir, runs_dir
from ..first_start import unwritable_place
from ..plugin.weights import WEIGHTS_DIR_ENV, weights_dir
from .notice import Notice
from .settings import THEMES

THEME_LABELS = {"system": "Follow the system", "light": "Light", "dark": "Dark"}
#: Run states in which the engine may be reading the folders (see MainWindow.run_state).
_RUN_GOING = ("running", "paused", "stopping")


@dataclass(frozen=True)
class FolderPreference:
    """One folder the engine reads from an environment variable."""

    key: str  # the name under which AppSettings keeps the choice
    label: str
    variable: str
    engine_folder: Callable[[], Path]  # the engine's answer for the current environment
    purpose: str


FOLDERS = (
    FolderPreference(
        "runs",
        "Runs folder",
        "DTL_RUNS_DIR",
        runs_dir,
        "Each run started from this window gets a new folder here; the run history lists the runs in it.",
    ),
    FolderPreference(
        "weights",
        "Weights folder",
        WEIGHTS_DIR_ENV,
        weights_dir,
        "Pretrained weights files are looked up here (after the torch hub "
        "cache), and Import weights… copies files into it.",
    ),
    FolderPreference(
        "cache",
        "Cache folder",
        "DTL_CACHE_DIR",
        cache_dir,
        "Features of frozen layers are kept here (in features/) so that a "
        "later run on the same images skips the frozen part.",
    ),
)


# --------------------------------------------------------------------------- applying


class AppPreferences(QObject):
    """The preferences of one window's process: what the launch environment said, and
    applying the stored choices on top of it."""

    def __init__(self, settings: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        # Captured before any choice is applied, so that clearing a choice restores them.
        self.launch_environment = {f.variable: os.environ.get(f.variable) for f in FOLDERS}
        self.default_folders = {f.key: f.engine_folder() for f in FOLDERS}

    def chosen(self, folder: FolderPreference) -> str:
        return self.settings.chosen_folder(folder.key) if self.settings is not None else ""

    def default_note(self, folder: FolderPreference) -> str:
        """Where the folder is when nothing is chosen, and why."""
        origin = f"from {folder.variable}" if self.launch_environment[folder.variable] else "the default"
        return f"{self.default_folders[folder.key]} ({origin})"

    def apply_folders(self) -> None:
        """Point the engine's variables at the chosen folders (or back to the launch values)."""
        for folder in FOLDERS:
            chosen = self.chosen(folder)
            launch = self.launch_environment[folder.variable]
            if chosen:
                os.environ[folder.variable] = chosen
            elif launch is None:
                os.environ.pop(folder.variable, None)
            else:
                os.environ[folder.variable] = launch

    def new_project_config(self) -> RunConfig:
        """An empty project, with the memory budget chosen for new projects."""
        config = RunConfig()
        budget = self.settings.new_project_cache_budget_mb if self.settings is not None else None
        if budget is not None:
            config.train.cache_budget_mb = budget
        return config


def new_project_config(window: Any) -> RunConfig:
    """What File > New starts from: the window's preferences applied to an empty project."""
    preferences = getattr(window, "preferences", None)
    return preferences.new_project_config() if preferences is not None else RunConfig()


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


# --------------------------------------------------------------------------- theme


_DARK = {
    QPalette.ColorRole.Window: "#202124",
    QPalette.ColorRole.WindowText: "#e8eaed",
    QPalette.ColorRole.Base: "#17181a",
    QPalette.ColorRole.AlternateBase: "#24262a",
    QPalette.ColorRole.Text: "#e8eaed",
    QPalette.ColorRole.Button: "#2d2f33",
    QPalette.ColorRole.ButtonText: "#e8eaed",
    QPalette.ColorRole.BrightText: "#ffffff",
    QPalette.ColorRole.Highlight: "#4c8bf5",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#8ab4f8",
    QPalette.ColorRole.PlaceholderText: "#9aa0a6",
    QPalette.ColorRole.ToolTipBase: "#2d2f33",
    QPalette.ColorRole.ToolTipText: "#e8eaed",
    QPalette.ColorRole.Light: "#4a4d52",
    QPalette.ColorRole.Midlight: "#3a3d41",
    QPalette.ColorRole.Mid: "#2a2c30",
    QPalette.ColorRole.Dark: "#101113",
    QPalette.ColorRole.Shadow: "#000000",
}
_LIGHT = {
    QPalette.ColorRole.Window: "#efefef",
    QPalette.ColorRole.WindowText: "#1f1f1f",
    QPalette.ColorRole.Base: "#ffffff",
    QPalette.ColorRole.AlternateBase: "#f5f5f5",
    QPalette.ColorRole.Text: "#1f1f1f",
    QPalette.ColorRole.Button: "#efefef",
    QPalette.ColorRole.ButtonText: "#1f1f1f",
    QPalette.ColorRole.BrightText: "#ffffff",
    QPalette.ColorRole.Highlight: "#3072c4",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#1a5fb4",
    QPalette.ColorRole.PlaceholderText: "#757575",
    QPalette.ColorRole.ToolTipBase: "#ffffdc",
    QPalette.ColorRole.ToolTipText: "#1f1f1f",
    QPalette.ColorRole.Light: "#ffffff",
    QPalette.ColorRole.Midlight: "#e3e3e3",
    QPalette.ColorRole.Mid: "#b8b8b8",
    QPalette.ColorRole.Dark: "#9f9f9f",
    QPalette.ColorRole.Shadow: "#767676",
}


def theme_palette(theme: str) -> QPalette:
    """The palette of the ``light`` or ``dark`` theme (disabled text dimmed)."""
    colours = _DARK if theme == "dark" else _LIGHT
    palette = QPalette()
    for role, colour in colours.items():
        palette.setColor(role, QColor(colour))
    dimmed = QColor(colours[QPalette.ColorRole.PlaceholderText])
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, dimmed)
    return palette


def apply_theme(theme: str) -> None:
    """Switch the whole application to ``theme`` ("system", "light" or "dark") now."""
    if theme not in THEMES:
        raise ValueError(f"unknown theme {theme!r}; choose one of {', '.join(THEMES)}")
    app = QApplication.instance()
    hints = app.styleHints()
    if theme == "system":
        hints.unsetColorScheme()
        app.setPalette(QPalette())  # an empty palette: back to the platform's own
        return
    hints.setColorScheme(Qt.ColorScheme.Dark if theme == "dark" else Qt.ColorScheme.Light)
    app.setPalette(theme_palette(theme))


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
