"""The window's project: which file it is, whether it has unsaved changes, and the File
menu's operations on it (new, open, save, save as, recent projects).

A project is a RunConfig saved as TOML, the same file ``desktop-tl train`` runs. The
controller reads and writes it and keeps the recent list; the window shows a configuration
in its panels (:meth:`MainWindow.load_config`) and assembles one from them
(:meth:`MainWindow.current_config`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QMenu

from ..core.config import RunConfig
from ..errors import UserError

PROJECT_FILTER = "desktop-tl projects (*.toml);;All files (*)"


class ProjectController(QObject):
    """File-menu operations for ``window`` (a :class:`~desktop_tl.gui.main_window.MainWindow`)."""

    def __init__(self, window: Any, settings: Any) -> None:
        super().__init__(window)
        self._window = window
        self._settings = settings
        self.path: Path | None = None  # the project file, None while untitled
        self.read_error = ""  # why the last project could not be read

    # ------------------------------------------------------------------ state

    def set_path(self, path: Path | None) -> None:
        self.path = path
        name = path.name if path else "untitled project"
        self._window.setWindowTitle(f"{name}[*] — desktop-tl")

    def mark_modified(self) -> None:
        if self._window.host is not None:
            self._window.setWindowModified(True)

    # ------------------------------------------------------------------ operations

    def new(self) -> None:
        window = self._window
        if window.refuse_while_training("start a new project"):
            return
        window.load_config(RunConfig(), project_path=None)
        window.clear_curves()

    def choose(self) -> None:
        start = ""
        if self._settings is not None and self._settings.recent_projects:
            start = str(Path(self._settings.recent_projects[0]).parent)
        path, _ = QFileDialog.getOpenFileName(self._window, "Open project", start, PROJECT_FILTER)
        if path:
            self.open(path)

    def open(self, path: str | os.PathLike[str]) -> bool:
        """Load a project (RunConfig TOML); a bad file is explained, not raised."""
        window = self._window
        if window.refuse_while_training("open a project"):
            return False
        config = self.read(path)
        if config is None:
            return False
        window.load_config(config, project_path=Path(path).resolve())
        window.log("info", f"opened project {path}")
        return True

    def read(self, path: str | os.PathLike[str]) -> RunConfig | None:
        """The project at ``path``, added to the recent list; None (and the reason shown)
        when it cannot be read."""
        path = Path(path)
        self.read_error = ""
        try:
            config = RunConfig.load(path)
        except UserError as exc:
            self.read_error = str(exc)
            self._window.show_error("The project could not be opened", str(exc))
            if self._settings is not None and not path.exists():
                self._settings.remove_recent_project(path)
            return None
        if self._settings is not None:
            self._settings.add_recent_project(path)
        return config

    def save(self) -> bool:
        if self.path is None:
            return self.save_as()
        return self.save_to(self.path)

    def save_as(self) -> bool:
        start = str(self.path or Path.home() / "project.toml")
        path, _ = QFileDialog.getSaveFileName(self._window, "Save project", start, PROJECT_FILTER)
        if not path:
            return False
        if not path.lower().endswith(".toml"):
            path += ".toml"
        return self.save_to(path)

    def save_to(self, path: str | os.PathLike[str]) -> bool:
        window = self._window
        path = Path(path)
        config = window.current_config()
        try:
            config.validate()
            config.save(path)
        except (UserError, OSError) as exc:
            window.show_error("The project could not be saved", str(exc))
            return False
        window.config = config
        self.set_path(path.resolve())
        window.setWindowModified(False)
        if self._settings is not None:
            self._settings.add_recent_project(path)
        window.log("info", f"saved project {path}")
        window.show_status(f"Saved {path.name}")
        return True

    def fill_recent_menu(self, menu: QMenu) -> None:
        menu.clear()
        recent = self._settings.recent_projects if self._settings is not None else []
        if not recent:
            action = menu.addAction("No recent projects")
            action.setEnabled(False)
            return
        for path in recent:
            action = menu.addAction(Path(path).name)
            action.setToolTip(path)
            action.setStatusTip(path)
            action.triggered.connect(lambda _checked=False, p=path: self.open(p))
        menu.addSeparator()
        menu.addAction("Clear list", self._settings.clear_recent_projects)
