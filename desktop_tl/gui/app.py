"""Start the desktop application.

The window is shown first, before torch is imported: importing torch and loading every
plugin takes seconds, so it happens on a background thread while the window says that
it is loading. Nothing imported from here at module level pulls in torch.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from ..core.config import RunConfig
from ..resources import demo_config
from .background import BackgroundTask, run_in_background

APP_NAME = "desktop-tl"


def process_age_s() -> float:
    """Seconds since this process started (from the OS where it says; else since this
    module was imported, which is later than the real start)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5), counted after "(comm)"
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED_AT


_IMPORTED_AT = time.perf_counter()


def load_backend(disabled: list[str]) -> dict[str, Any]:
    """Import torch and load the plugins (runs on a background thread)."""
    import torch

    from ..core.device import mps_available
    from ..plugin.manager import get_host

    host = get_host(disabled=disabled)
    for provider_id in host.backbone_providers():  # list models now, not on the GUI thread
        host.provider_models(provider_id)
    import desktop_tl.core.data  # noqa: F401 - warm the imports the panels use next
    import desktop_tl.core.layers  # noqa: F401
    import desktop_tl.core.model  # noqa: F401
    import desktop_tl.core.training  # noqa: F401

    available = {"auto": True, "cpu": True, "cuda": torch.cuda.is_available(), "mps": mps_available()}
    auto = "cuda" if available["cuda"] else "mps" if available["mps"] else "cpu"
    from ..first_start import data_folder_problems

    return {
        "host": host,
        "devices": {"available": available, "auto": auto},
        "first_start_problems": data_folder_problems(),
    }


def make_application(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setOrganizationName("desktop_tl")
    return app  # type: ignore[return-value]


class Launcher:
    """Shows the window, loads the backend, then opens the project or the demo."""

    def __init__(
        self,
        window: Any,
        *,
        project: str | None = None,
        demo: bool = False,
        epochs: int | None = None,
        settings: Any = None,
    ) -> None:
        self.window = window
        self.project = project
        self.demo = demo
        self.epochs = epochs
        self.settings = settings
        self.task: BackgroundTask | None = None
        self.backend_ready_s: float | None = None
        self.error: str | None = None

    def start(self) -> None:
        disabled = list(self.settings.disabled_plugins) if self.settings is not None else []
        config = self._initial_config()
        if config is not None:
            self.window.load_config(config, project_path=self._project_path())
        self.task = run_in_background(
            lambda task: load_backend(disabled),
            on_result=self._on_loaded,
            on_error=self._on_failed,
            name="load-backend",
        )

    def _project_path(self) -> Path | None:
        return Path(self.project).resolve() if self.project else None

    def _initial_config(self) -> RunConfig | None:
        config: RunConfig | None = None
        if self.project:
            config = self.window.project.read(self.project)
            if config is None:
                self.error = self.window.project.read_error
                return None
        elif self.demo:
            config = demo_config()  # desktop_tl.resources: the CLI demo is the same run
            if not Path(config.data.path).is_dir():
                self.error = f"the sample dataset is missing ({config.data.path})"
                self.window.training_panel.show_message("error", f"The demo cannot start: {self.error}.")
                return None
        if config is not None and self.epochs:
            config.train.epochs = self.epochs
        return config

    def _on_loaded(self, result: dict[str, Any]) -> None:
        self.backend_ready_s = process_age_s()
        self.window.set_backend(result["host"], result["devices"])
        problems = result.get("first_start_problems") or []
        for problem in problems:  # a locked-down profile: say what to do before a run fails
            self.window.log("warning", problem)
        if problems:
            self.window.training_panel.show_message(
                "warning",
                problems[0]
                + ("" if len(problems) == 1 else f" (and {len(problems) - 1} more in the Log tab)")
                + "; File > Preferences… can choose other folders.",
            )

    def _on_failed(self, exc: BaseException, tb: str) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        self.window.backend_failed(f"{self.error}\n{tb}")


def run_gui(
    project: str | None = None,
    *,
    demo: bool = False,
    start_run: bool = False,
    exit_when_done: bool = False,
    screenshot: str | None = None,
    report: str | None = None,
    epochs: int | None = None,
    settings_path: str | None = None,
    size: tuple[int, int] | None = None,
) -> int:
    """Open the window and run the event loop; returns the exit status."""
    app = make_application()
    from .main_window import MainWindow
    from .settings import AppSettings

    settings = AppSettings(settings_path) if settings_path else AppSettings()
    window = MainWindow(settings)
    smoke = None
    if start_run or exit_when_done or screenshot or report or size:
        from .smoke import SmokeRun

        smoke = SmokeRun(
            window,
            start_run=start_run,
            exit_when_done=exit_when_done,
            screenshot=screenshot,
            report=report,
            size=size,
        )
    window.show()
    launcher = Launcher(window, project=project, demo=demo, epochs=epochs, settings=settings)
    window.launcher = launcher

    def after_first_paint() -> None:
        window.repaint()  # make sure it has been painted before calling it shown
        shown = process_age_s()
        if smoke is not None:
            smoke.window_shown(shown)
        launcher.start()
        if smoke is not None and launcher.error:
            smoke.fail(launcher.error)

    QTimer.singleShot(0, after_first_paint)
    status = app.exec()
    release_window(window)
    if smoke is not None:
        return smoke.exit_status
    return status


def release_window(window: Any) -> None:
    """Destroy the window's C++ side now, while Python is still whole.

    Left to interpreter shutdown, Qt would tear down the plot widgets while Python is
    finalising and call their Python overrides into a half-destroyed interpreter.
    """
    import shiboken6

    window.close()
    if shiboken6.isValid(window):
        shiboken6.delete(window)
