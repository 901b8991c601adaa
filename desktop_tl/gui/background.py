"""Run one long function off the GUI thread and hear about its progress, result or error.

Preparing data, building a model and importing torch all take long enough to freeze the
window, so they run here. The function gets the task itself as its only argument and may
call ``task.report_progress(...)`` and ``task.should_stop()``; the task reports back
through Qt signals delivered on the GUI thread. A task stays alive (held in a
module-level set) until its thread has finished, whoever else forgets it, and the window
can cancel and wait for every running task when it closes.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any, Callable

from PySide6.QtCore import QThread, Signal

_running: set["BackgroundTask"] = set()


class BackgroundTask(QThread):
    """``fn(task)`` on its own thread.

    Signals, in order: any number of ``progress(done, total, message)``, then exactly one
    of ``succeeded(result)`` or ``failed(exception, traceback_text)``, then the thread's
    own ``finished``. A cancelled task whose function returns normally still succeeds; the
    function decides whether to raise or return early when ``should_stop()`` is true.
    """

    progress = Signal(int, int, str)
    succeeded = Signal(object)
    failed = Signal(object, str)

    def __init__(self, fn: Callable[["BackgroundTask"], Any], name: str = "") -> None:
        super().__init__()
        self.setObjectName(name or getattr(fn, "__name__", "task"))
        self._fn = fn
        self._stop = threading.Event()
        self.finished.connect(self._forget)

    # ------------------------------------------------------------ used by the function

    def report_progress(self, *args: Any, **kwargs: Any) -> None:
        """Accept the usual progress-callback shapes: ``(done, total)``,
        ``(done, total, message)``, ``(message, done, total)`` or keywords."""
        done = kwargs.get("done", 0)
        total = kwargs.get("total", 0)
        message = kwargs.get("message", "")
        numbers = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        texts = [a for a in args if isinstance(a, str)]
        if numbers:
            done = numbers[0]
        if len(numbers) > 1:
            total = numbers[1]
        if texts:
            message = texts[0]
        self.progress.emit(int(done or 0), int(total or 0), str(message or ""))

    def should_stop(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------ used by the GUI

    def start(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102 - QThread.start
        _running.add(self)
        super().start(*args, **kwargs)

    def cancel(self) -> None:
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:  # on the task's thread
        try:
            result = self._fn(self)
        except BaseException as exc:  # reported, never lost on a thread nobody watches
            self.failed.emit(exc, traceback.format_exc())
        else:
            self.succeeded.emit(result)

    def _forget(self) -> None:
        self.wait()  # ``finished`` is emitted just before the thread really ends
        _running.discard(self)


def run_in_background(
    fn: Callable[[BackgroundTask], Any],
    *,
    on_result: Callable[[Any], None] | None = None,
    on_error: Callable[[BaseException, str], None] | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
    name: str = "",
) -> BackgroundTask:
    """Start ``fn(task)`` on a thread. The task object lives on the GUI thread, so Qt
    queues the callbacks there."""
    task = BackgroundTask(fn, name=name)
    if on_progress is not None:
        task.progress.connect(on_progress)
    if on_result is not None:
        task.succeeded.connect(on_result)
    if on_error is not None:
        task.failed.connect(on_error)
    task.start()
    return task


def running_tasks() -> list[BackgroundTask]:
    return list(_running)


def cancel_and_wait_all(timeout_ms: int = 10_000) -> bool:
    """Ask every running task to stop and wait for them; True when all have finished."""
    tasks = list(_running)
    for task in tasks:
        task.cancel()
    finished = True
    for task in tasks:
        finished = task.wait(timeout_ms) and finished
    return finished
