"""The application's remembered choices, kept in QSettings.

Recent projects, the folders last used in each file dialog, the plugins the user turned
off, the window layout, where the unsaved project is autosaved, and the Preferences
(folders, theme, the cache budget of new projects). Everything goes
through :class:`AppSettings` so keys and value types live in one place; tests pass an INI
file path so they never touch the user's settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import platformdirs
from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QMainWindow, QWidget

ORGANIZATION = "desktop_tl"
APPLICATION = "desktop_tl"

#: How many recent projects the File menu offers.
MAX_RECENT_PROJECTS = 10

_RECENT_PROJECTS = "projects/recent"
_LAST_DATA_FOLDER = "folders/last_data"
_LAST_IMAGE_FOLDER = "folders/last_images"
_LAST_RUN_FOLDER = "folders/last_run"
_DISABLED_PLUGINS = "plugins/disabled"
_WINDOW_GEOMETRY = "window/geometry"
_WINDOW_STATE = "window/state"
_CHOSEN_FOLDERS = "preferences/folders/"  # + "runs", "weights" or "cache"
_THEME = "ui/theme"
_NEW_PROJECT_CACHE_BUDGET = "preferences/new_project_cache_budget_mb"

#: The window's colour themes: follow the desktop, or always light or dark.
THEMES = ("system", "light", "dark")


class AppSettings:
    """Typed access to the application's QSettings.

    ``AppSettings()`` uses the platform's normal store for ``("desktop_tl", "desktop_tl")``;
    ``AppSettings(path)`` uses an INI file at ``path`` instead.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._ini_path = Path(path) if path is not None else None
        if path is None:
            self._store = QSettings(ORGANIZATION, APPLICATION)
        else:
            self._store = QSettings(str(path), QSettings.Format.IniFormat)

    @property
    def autosave_folder(self) -> Path:
        """Where the unsaved project is autosaved: the app's data folder, or beside the
        INI file for settings kept in one (so tests and portable setups keep it apart)."""
        if self._ini_path is not None:
            return self._ini_path.resolve().parent / "autosave"
        return Path(platformdirs.user_data_dir(ORGANIZATION, appauthor=False)) / "autosave"

    @property
    def file_name(self) -> str:
        """Where the settings are stored (a file path, or a registry key on Windows)."""
        return self._store.fileName()

    def sync(self) -> None:
        """Write pending changes to permanent storage now (Qt also does it on exit)."""
        self._store.sync()

    # ------------------------------------------------------------------ recent projects

    @property
    def recent_projects(self) -> list[str]:
        """Project files, most recent first; files that no longer exist are dropped."""
        stored = self._string_list(_RECENT_PROJECTS)
        existing = [path for path in stored if Path(path).is_file()]
        if existing != stored:
            self._set_string_list(_RECENT_PROJECTS, existing)
        return existing

    def add_recent_project(self, path: str | os.PathLike[str]) -> None:
        """Put ``path`` first in the recent list (moving it if it is already there)."""
        absolute = os.path.abspath(os.fspath(path))
        key = _path_key(absolute)
        others = [p for p in self._string_list(_RECENT_PROJECTS) if _path_key(p) != key]
        self._set_string_list(_RECENT_PROJECTS, [absolute, *others][:MAX_RECENT_PROJECTS])

    def remove_recent_project(self, path: str | os.PathLike[str]) -> None:
        key = _path_key(os.path.abspath(os.fspath(path)))
        kept = [p for p in self._string_list(_RECENT_PROJECTS) if _path_key(p) != key]
        self._set_string_list(_RECENT_PROJECTS, kept)

    def clear_recent_projects(self) -> None:
        self._set_string_list(_RECENT_PROJECTS, [])

    # ------------------------------------------------------------------ last folders

    @property
    def last_data_folder(self) -> str:
        """The folder last chosen as a dataset ("" when none yet)."""
        return self._string(_LAST_DATA_FOLDER)

    @last_data_folder.setter
    def last_data_folder(self, folder: str | os.PathLike[str]) -> None:
        self._store.setValue(_LAST_DATA_FOLDER, os.fspath(folder))

    @property
    def last_image_folder(self) -> str:
        """The folder images were last chosen from for prediction ("" when none yet)."""
        return self._string(_LAST_IMAGE_FOLDER)

    @last_image_folder.setter
    def last_image_folder(self, folder: str | os.PathLike[str]) -> None:
        self._store.setValue(_LAST_IMAGE_FOLDER, os.fspath(folder))

    @property
    def last_run_folder(self) -> str:
        """The run folder last opened or written ("" when none yet)."""
        return self._string(_LAST_RUN_FOLDER)

    @last_run_folder.setter
    def last_run_folder(self, folder: str | os.PathLike[str]) -> None:
        self._store.setValue(_LAST_RUN_FOLDER, os.fspath(folder))

    # ------------------------------------------------------------------ plugins

    @property
    def disabled_plugins(self) -> list[str]:
        """Entry-point or distribution names of plugins not to load at the next start."""
        return self._string_list(_DISABLED_PLUGINS)

    @disabled_plugins.setter
    def disabled_plugins(self, names: list[str]) -> None:
        unique = list(dict.fromkeys(str(name) for name in names if str(name).strip()))
        self._set_string_list(_DISABLED_PLUGINS, unique)

    # ------------------------------------------------------------------ preferences

    def chosen_folder(self, which: str) -> str:
        """The folder chosen in Preferences for ``which`` ("runs", "weights" or "cache");
        "" when none was (the environment or the platform's default applies)."""
        return self._string(_CHOSEN_FOLDERS + which)

    def set_chosen_folder(self, which: str, folder: str | os.PathLike[str]) -> None:
        text = os.fspath(folder).strip()
        if text:
            self._store.setValue(_CHOSEN_FOLDERS + which, text)
        else:
            self._store.remove(_CHOSEN_FOLDERS + which)

    @property
    def theme(self) -> str:
        """One of :data:`THEMES` ("system" when none was chosen, or an unknown one)."""
        value = self._string(_THEME)
        return value if value in THEMES else "system"

    @theme.setter
    def theme(self, theme: str) -> None:
        if theme not in THEMES:
            raise ValueError(f"unknown theme {theme!r}; choose one of {', '.join(THEMES)}")
        self._store.setValue(_THEME, theme)

    @property
    def new_project_cache_budget_mb(self) -> int | None:
        """The memory budget for cached features that new projects start with (None: the
        engine's default)."""
        value = self._store.value(_NEW_PROJECT_CACHE_BUDGET)
        try:
            return None if value is None or value == "" else max(0, int(value))
        except (TypeError, ValueError):
            return None

    @new_project_cache_budget_mb.setter
    def new_project_cache_budget_mb(self, megabytes: int | None) -> None:
        if megabytes is None:
            self._store.remove(_NEW_PROJECT_CACHE_BUDGET)
        else:
            self._store.setValue(_NEW_PROJECT_CACHE_BUDGET, int(megabytes))

    # ------------------------------------------------------------------ window layout

    def save_window(self, window: QWidget) -> None:
        """Remember the window's geometry and, for a main window, its docks and toolbars."""
        self._store.setValue(_WINDOW_GEOMETRY, window.saveGeometry())
        if isinstance(window, QMainWindow):
            self._store.setValue(_WINDOW_STATE, window.saveState())

    def restore_window(self, window: QWidget) -> bool:
        """Put the window back as it was saved; False when nothing was saved (or it was
        unreadable), so the caller can apply a default size."""
        restored = False
        geometry = self._store.value(_WINDOW_GEOMETRY)
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            restored = bool(window.restoreGeometry(geometry))
        state = self._store.value(_WINDOW_STATE)
        if isinstance(window, QMainWindow) and isinstance(state, QByteArray) and not state.isEmpty():
            restored = bool(window.restoreState(state)) or restored
        return restored

    # ------------------------------------------------------------------ generic values

    def value(self, key: str, default: Any = None) -> Any:
        """A value stored under ``key`` by :meth:`set_value` (for one-off preferences)."""
        return self._store.value(key, default)

    def set_value(self, key: str, value: Any) -> None:
        self._store.setValue(key, value)

    # ------------------------------------------------------------------ helpers

    def _string(self, key: str) -> str:
        value = self._store.value(key, "")
        return value if isinstance(value, str) else ""

    def _string_list(self, key: str) -> list[str]:
        # INI files give a one-element list back as a plain string and an empty one as
        # None or "", depending on the backend: normalise to a list of strings.
        value = self._store.value(key)
        if value is None or value == "":
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, (list, tuple)):
            return [str(item) for item in value if isinstance(item, str) and item]
        return []

    def _set_string_list(self, key: str, values: list[str]) -> None:
        if values:
            self._store.setValue(key, list(values))
        else:
            self._store.remove(key)


def _path_key(path: str) -> str:
    """Compare paths the way the file system does (case-insensitive on Windows)."""
    return os.path.normcase(os.path.normpath(path))
