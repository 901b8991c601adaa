"""The window's project: which file it is, whether it has unsaved changes, and the File
menu's operations on it (new, open, save, save as, recent projects).

A project is a RunConfig saved as TOML, the same file ``desktop-tl train`` runs. The
controller reads and writes it and keeps the recent list; the window shows a configuration
in its panels (:meth:`MainWindow.load_config`) and assembles one from them
(:meth:`MainWindow.current_config`).

No operation drops unsaved changes without asking: New, Open and closing the window first
ask Save / Discard / Cancel (:meth:`ProjectController.resolve_unsaved`). While the project
has unsaved changes it is autosaved every 30 seconds into the app's data folder; a clean
exit or a save removes that copy, so one found at the next start is from a crash and is
offered back (:meth:`ProjectController.offer_restore`). A lock file keeps a second window
from autosaving over (or offering back) the first one's copy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QLockFile, QObject, Qt, QTimer
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox

from ..core.config import RunConfig
from ..errors import UserError
from .preferences_dialog import new_project_config

PROJECT_FILTER = "desktop-tl projects (*.toml);;All files (*)"

#: How often a project with unsaved changes is autosaved.
AUTOSAVE_INTERVAL_MS = 30_000
AUTOSAVE_FILE = "unsaved-project.toml"
_AUTOSAVE_HEADER = "# desktop-tl autosave of: "


class ProjectController(QObject):
    """File-menu operations for ``window`` (a :class:`~desktop_tl.gui.main_window.MainWindow`)."""

    def __init__(self, window: Any, settings: Any) -> None:
        super().__init__(window)
        self._window = window
        self._settings = settings
        self.path: Path | None = None  # the project file, None while untitled
        self.read_error = ""  # why the last project could not be read
        #: The open Save / Discard / Cancel (or Restore / Discard) question, if any.
        self.question: QMessageBox | None = None
        self._autosave_lock: QLockFile | None = None
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(AUTOSAVE_INTERVAL_MS)
        self.autosave_timer.timeout.connect(self.autosave_now)

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
        self.resolve_unsaved("start a new project", self._new_now)

    def _new_now(self) -> None:
        self._window.load_config(new_project_config(self._window), project_path=None)
        self._window.show_status("New project")

    def choose(self) -> None:
        start = ""
        if self._settings is not None and self._settings.recent_projects:
            start = str(Path(self._settings.recent_projects[0]).parent)
        path, _ = QFileDialog.getOpenFileName(self._window, "Open project", start, PROJECT_FILTER)
        if path:
            self.open(path)

    def open(self, path: str | os.PathLike[str]) -> bool:
        """Load a project (RunConfig TOML); a bad file is explained, not raised. True when
        it was opened now; False when it could not be read, or when the save question for
        the current project is waiting for an answer (it opens after Save or Discard)."""
        window = self._window
        if window.refuse_while_training("open a project"):
            return False
        config = self.read(path)
        if config is None:
            return False

        def load() -> None:
            window.load_config(config, project_path=Path(path).resolve())
            window.log("info", f"opened project {path}")

        return self.resolve_unsaved(f"open {Path(path).name}", load)

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
        self.remove_autosave()
        if self._settings is not None:
            self._settings.add_recent_project(path)
        window.log("info", f"saved project {path}")
        window.show_status(f"Saved {path.name}")
        return True

    # ------------------------------------------------------------------ unsaved changes

    def resolve_unsaved(self, what: str, proceed: Callable[[], Any]) -> bool:
        """Run ``proceed`` once the current project's changes are safe.

        Unmodified: at once (returns True). Modified: asks Save / Discard / Cancel in a
        window-modal box and returns False; ``proceed`` runs after Discard, or after Save
        once the project was written (a Save As the user cancels cancels it too). Cancel
        keeps everything as it was. ``what`` completes "Save them before you …?".
        """
        window = self._window
        if not window.isWindowModified():
            proceed()
            return True
        if self.question is not None:  # already asking about another action
            return False
        name = self.path.name if self.path else "The untitled project"
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Save changes?",
            f"{name} has changes that are not saved.\n\nSave them before you {what}?",
            QMessageBox.StandardButton.Save
            | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel,
            window,
        )
        box.setObjectName("unsavedQuestion")
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        box.setEscapeButton(QMessageBox.StandardButton.Cancel)
        box.setWindowModality(Qt.WindowModality.WindowModal)

        def answered(_result: int) -> None:
            button = (
                box.standardButton(box.clickedButton())
                if box.clickedButton()
                else QMessageBox.StandardButton.Cancel
            )
            self.question = None
            box.deleteLater()
            if button == QMessageBox.StandardButton.Save:
                if self.save():
                    proceed()
                else:
                    window.show_status(f"Not saved, so did not {what}")
            elif button == QMessageBox.StandardButton.Discard:
                window.setWindowModified(False)
                proceed()
            else:
                window.show_status(f"Cancelled: did not {what}")

        box.finished.connect(answered)
        self.question = box
        box.open()
        return False

    # ------------------------------------------------------------------ autosave

    @property
    def autosave_path(self) -> Path | None:
        """The autosave file, None without settings (the window in some tests)."""
        if self._settings is None:
            return None
        return self._settings.autosave_folder / AUTOSAVE_FILE

    def start_autosave(self) -> bool:
        """Take the autosave lock and start the timer; False when another window of the
        app holds it (that window autosaves; this one does not)."""
        if self.autosave_path is None or self._autosave_lock is not None:
            return self._autosave_lock is not None
        folder = self.autosave_path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._window.log("warning", f"no autosave: the folder {folder} cannot be made ({exc})")
            return False
        lock = QLockFile(str(folder / "autosave.lock"))
        lock.setStaleLockTime(0)  # only a running process holds it; a crashed one's is stale
        if not lock.tryLock(0):
            self._window.log(
                "info", "another desktop-tl window is open: it keeps the autosave, this one does not"
            )
            return False
        self._autosave_lock = lock
        self.autosave_timer.start()
        return True

    def autosave_now(self) -> bool:
        """Write the unsaved project to the autosave file (nothing when unmodified)."""
        window = self._window
        path = self.autosave_path
        if path is None or self._autosave_lock is None or not window.isWindowModified():
            return False
        from ..core.atomic import atomic_write_text

        origin = json.dumps(str(self.path) if self.path else "")
        try:
            atomic_write_text(path, f"{_AUTOSAVE_HEADER}{origin}\n" + window.current_config().to_toml())
        except OSError as exc:
            window.log("warning", f"the autosave to {path} failed: {exc}")
            return False
        return True

    def remove_autosave(self) -> None:
        path = self.autosave_path
        if path is None or self._autosave_lock is None:
            return
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            self._window.log("warning", f"the autosave {path} could not be removed: {exc}")

    def end_autosave(self) -> None:
        """A clean exit: the autosave goes, and the lock with it."""
        self.autosave_timer.stop()
        self.remove_autosave()
        if self._autosave_lock is not None:
            self._autosave_lock.unlock()
            self._autosave_lock = None

    def offer_restore(self) -> bool:
        """After a crash: ask Restore / Discard for the autosave the last session left.
        True when the question was asked (the answer arrives later)."""
        if not self.start_autosave():
            return False
        path = self.autosave_path
        assert path is not None
        if not path.is_file():
            return False
        origin = _autosave_origin(path)
        what = (
            f"your unsaved changes to {Path(origin).name}"
            if origin
            else "an untitled project that was never saved"
        )
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Restore unsaved work?",
            f"desktop-tl did not close normally last time. It kept {what}.\n\n"
            "Restore them? Discard deletes that copy.",
            QMessageBox.StandardButton.NoButton,
            self._window,
        )
        box.setObjectName("restoreQuestion")
        restore = box.addButton("Restore", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(restore)
        box.setWindowModality(Qt.WindowModality.WindowModal)

        def answered(_result: int) -> None:
            self.question = None
            box.deleteLater()
            if box.clickedButton() is restore:
                self.restore(path, origin)
            else:
                self.remove_autosave()
                self._window.log("info", f"discarded the autosave {path}")

        box.finished.connect(answered)
        self.question = box
        box.open()
        return True

    def restore(self, path: Path, origin: str) -> bool:
        """Show the autosaved project, as unsaved changes to the file it came from."""
        window = self._window
        try:
            config = RunConfig.load(path)
        except UserError as exc:
            window.show_error("The autosave could not be restored", str(exc))
            return False
        window.load_config(config, project_path=Path(origin) if origin else None)
        window.setWindowModified(True)
        window.log("info", f"restored unsaved changes from {path}")
        window.show_status("Restored the unsaved changes; save them to keep them")
        return True

    # ------------------------------------------------------------------ recent projects

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


def _autosave_origin(path: Path) -> str:
    """The project file an autosave belongs to ("" for an untitled project)."""
    try:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        return str(json.loads(first[len(_AUTOSAVE_HEADER) :])) if first.startswith(_AUTOSAVE_HEADER) else ""
    except (OSError, UnicodeDecodeError, IndexError, ValueError):
        return ""
