"""Scripted runs of the real window, for automation and documentation screenshots.

``desktop-tl gui --demo --run --exit-when-done --screenshot FILE.png --report FILE.json``
waits until the window is ready, presses Start, lets the run finish through the real
worker thread, saves a screenshot and a JSON report, and exits 0 when the run completed.

With ``--size WxH`` the window is opened at that size; the report's ``layout_problems``
lists what :mod:`~desktop_tl.gui.layout_check` finds on every tab (clipped, squeezed or
overlapping widgets, a window that cannot shrink that far), empty when the layout is sound.

The report's ``max_ui_stall_ms`` comes from :class:`UiStallProbe`: a timer on the GUI
thread that should fire every 10 ms; the longest lateness while training is the longest
the window could not respond.
"""

from __future__ import annotations

import faulthandler
import json
import sys
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication

PROBE_INTERVAL_MS = 10
READY_TIMEOUT_S = 300.0
DEFAULT_SIZE = (1600, 980)


class UiStallProbe(QObject):
    """Measures how late a 10 ms timer on the GUI thread fires (ms beyond the interval)."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = PROBE_INTERVAL_MS) -> None:
        super().__init__(parent)
        self.interval_ms = interval_ms
        self.max_stall_ms = 0.0
        self.ticks = 0
        self._last: float | None = None
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self.max_stall_ms = 0.0
        self.ticks = 0
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        self._last = None

    @property
    def running(self) -> bool:
        return self._timer.isActive()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            late = (now - self._last) * 1000.0 - self.interval_ms
            if late > self.max_stall_ms:
                self.max_stall_ms = late
        self._last = now
        self.ticks += 1


class SmokeRun(QObject):
    """Drives a :class:`~desktop_tl.gui.main_window.MainWindow` through one run."""

    def __init__(
        self,
        window: Any,
        *,
        start_run: bool = True,
        exit_when_done: bool = True,
        screenshot: str | None = None,
        report: str | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(window)
        self.window = window
        # Screenshots the same size whatever was saved before; the layout check compares
        # the size the window took with this one.
        self.size = size or DEFAULT_SIZE
        window.resize(*self.size)
        self.start_run = start_run
        self.exit_when_done = exit_when_done
        self.screenshot = Path(screenshot) if screenshot else None
        self.report_path = Path(report) if report else None
        self.exit_status = 1
        self.result: dict[str, Any] = {"status": "not-started"}
        self.window_shown_s: float | None = None
        self._started_at: float | None = None
        self._t0 = time.perf_counter()
        self._done = False
        self.training_probe = UiStallProbe(self)
        self.startup_probe = UiStallProbe(self)
        self.startup_probe.start()
        window.ready_to_train.connect(self._on_ready)
        window.training.run_finished.connect(self._on_finished)
        self._deadline = QTimer(self)
        self._deadline.setSingleShot(True)
        self._deadline.timeout.connect(self._on_deadline)
        self._deadline.start(int(READY_TIMEOUT_S * 1000))
        self._problem_watch = QTimer(self)
        self._problem_watch.setInterval(250)
        self._problem_watch.timeout.connect(self._check_problems)
        self._problem_watch.start()

    def window_shown(self, seconds: float) -> None:
        self.window_shown_s = seconds

    # ------------------------------------------------------------ driving

    def _on_ready(self) -> None:
        if self._started_at is not None or self._done:
            return
        if not self.start_run:  # a picture of the ready window, e.g. for documentation
            self.startup_probe.stop()
            self.result = {
                "status": "ready",
                "reason": "",
                "epochs_completed": 0,
                "val_acc": None,
                "plot_redraws": self.window.plots.redraw_count,
                "max_ui_stall_ms": None,
                "max_ui_stall_startup_ms": round(self.startup_probe.max_stall_ms, 1),
            }
            QTimer.singleShot(300, lambda: self._finish(0))
            return
        # Let the layer tree and counts settle on screen first (one event-loop turn).
        QTimer.singleShot(50, self._start)

    def _start(self) -> None:
        if self._started_at is not None or self._done:
            return
        if not self.window.is_ready():
            # A rebuild began after the window said it was ready; look again shortly
            # rather than wait for the signal, which is only sent on a change to ready.
            QTimer.singleShot(250, self._start)
            return
        self._deadline.stop()
        self._problem_watch.stop()
        self.startup_probe.stop()
        self._started_at = time.perf_counter()
        self.training_probe.start()
        if not self.window.start_training():
            self.fail(
                "the window refused to start training: "
                + (self.window.training.can_start()[1] or "unknown reason")
            )

    def _check_problems(self) -> None:
        """Fail early when the data or model panel reports an error before the start."""
        window = self.window
        for notice in (window.data_panel.notice, window.model_panel.notice):
            if notice.isVisible() and notice.level == "error":
                self.fail(notice.text())
                return
        launcher = getattr(window, "launcher", None)
        if launcher is not None and launcher.error:
            self.fail(launcher.error)

    def _on_deadline(self) -> None:
        window = self.window
        why = window.training.can_start()[1]
        if not why:
            panel = window.model_panel
            why = "the model is still being built" if panel.busy or panel.built is None else "unknown reason"
        # What every thread was doing, for a report of a window that never got ready.
        faulthandler.dump_traceback(sys.stderr, all_threads=True)
        self.fail(f"the window was not ready to train within {READY_TIMEOUT_S:.0f} s: {why}")

    def _on_finished(self, event: Any) -> None:
        if self._done:
            return
        self.training_probe.stop()
        summary = event.summary or {}
        wall = time.perf_counter() - self._started_at if self._started_at else None
        plots = self.window.plots
        self.result = {
            "status": event.status,
            "reason": event.reason,
            "epochs_completed": summary.get("epochs_completed", 0),
            "val_acc": summary.get("val_acc"),
            "best_val_acc": summary.get("best_val_acc"),
            "train_seconds": summary.get("train_seconds"),
            "run_wall_seconds": round(wall, 3) if wall is not None else None,
            "plot_redraws": plots.redraw_count,
            "batches_plotted": plots.batches_received,
            "max_ui_stall_ms": round(self.training_probe.max_stall_ms, 1),
            "ui_probe_ticks": self.training_probe.ticks,
            "max_ui_stall_startup_ms": round(self.startup_probe.max_stall_ms, 1),
            "run_dir": event.run_dir,
            "device": summary.get("device"),
            "precision": summary.get("precision"),
            "backbone": summary.get("backbone"),
            "weights": summary.get("weights"),
            "feature_cache": summary.get("feature_cache"),
        }
        ok = event.status in ("completed", "early-stopped")
        self._finish(0 if ok else 1)

    def fail(self, reason: str) -> None:
        if self._done:
            return
        self.training_probe.stop()
        self.startup_probe.stop()
        self.result = {
            "status": "failed",
            "reason": reason,
            "epochs_completed": 0,
            "val_acc": None,
            "plot_redraws": self.window.plots.redraw_count,
            "max_ui_stall_ms": round(self.training_probe.max_stall_ms, 1),
        }
        self._finish(1)

    # ------------------------------------------------------------ output

    def _finish(self, status: int) -> None:
        self._done = True
        self._deadline.stop()
        self._problem_watch.stop()
        self.exit_status = status
        # Give the last redraw and the evaluation tab a moment to paint, then record.
        QTimer.singleShot(300, self._write_outputs)

    def _write_outputs(self) -> None:
        window = self.window
        window.plots.redraw_if_dirty()
        self.result["window_shown_s"] = (
            round(self.window_shown_s, 3) if self.window_shown_s is not None else None
        )
        launcher = getattr(window, "launcher", None)
        if launcher is not None and launcher.backend_ready_s is not None:
            self.result["backend_ready_s"] = round(launcher.backend_ready_s, 3)
        self.result["plot_redraws"] = window.plots.redraw_count
        from .layout_check import layout_problems

        self.result["size"] = f"{self.size[0]}x{self.size[1]}"
        self.result["layout_problems"] = layout_problems(window, self.size)
        if self.screenshot is not None:
            self.screenshot.parent.mkdir(parents=True, exist_ok=True)
            saved = window.grab().save(str(self.screenshot))
            self.result["screenshot"] = str(self.screenshot) if saved else None
            if not saved:
                self.exit_status = 1
                self.result["screenshot_error"] = f"could not write {self.screenshot}"
        if self.report_path is not None:
            self.report_path.parent.mkdir(parents=True, exist_ok=True)
            self.report_path.write_text(
                json.dumps(self.result, indent=2, default=str) + "\n", encoding="utf-8"
            )
        if self.exit_when_done:
            window.confirm_close = lambda: True
            window.setWindowModified(False)  # a scripted run has no one to answer "save?"
            window.close()
            QApplication.instance().exit(self.exit_status)
