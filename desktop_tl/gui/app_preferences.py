"""The folders the engine reads, as the preferences choose them for this process.

The engine finds its folders through environment variables (``DTL_RUNS_DIR``,
``DTL_WEIGHTS_DIR``, ``DTL_CACHE_DIR``; see :mod:`desktop_tl.core.run_folder` and
:mod:`desktop_tl.plugin.weights`), read each time it needs one. A folder chosen in the
preferences is therefore honoured by setting that variable in the window's own process:
once at start-up, before any run, and again whenever the choice changes. A folder chosen
there wins over the same variable set when the app was launched; clearing the choice
brings the launch value (or the platform's default) back. Runs started from the window,
the run history and weight look-ups all see the same folders as ``desktop-tl`` on the
command line would with those variables set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject

from ..core.config import RunConfig
from ..core.run_folder import cache_dir, runs_dir
from ..plugin.weights import WEIGHTS_DIR_ENV, weights_dir


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
