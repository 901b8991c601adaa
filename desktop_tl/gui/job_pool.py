"""Run blocking calls (reading images, predicting) off the GUI thread.

Jobs run on a private QThreadPool. Their results are not sent back with signals emitted
from the worker thread; they are put on a queue that a timer on the GUI thread drains, so
a job can never touch a widget, and a widget deleted while a job runs is simply never
called back.
"""

from __future__ import annotations

import itertools
import queue
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer

#: How often finished jobs are collected on the GUI thread (ms) while any are pending.
POLL_INTERVAL_MS = 20


@dataclass
class JobFailure:
    """Why a job raised: the exception and its formatted traceback."""

    exception: BaseException
    traceback: str

    def __str__(self) -> str:
        return str(self.exception) or type(self.exception).__name__


@dataclass
class Job:
    id: int
    on_result: Callable[[Any], None] | None
    on_error: Callable[[JobFailure], None] | None
    cancelled: bool = field(default=False)


class _Runnable(QRunnable):
    def __init__(self, job: Job, fn: Callable[..., Any], args: tuple, results: queue.SimpleQueue):
        super().__init__()
        self._job = job
        self._fn = fn
        self._args = args
        self._results = results
        self.setAutoDelete(True)

    def run(self) -> None:  # worker thread: no Qt widgets, no signals, just the queue
        if self._job.cancelled:
            return
        try:
            value = self._fn(*self._args)
        except BaseException as exc:  # noqa: BLE001 - handed to the GUI thread as a failure
            self._results.put((self._job, False, JobFailure(exc, traceback.format_exc())))
        else:
            self._results.put((self._job, True, value))


class JobPool(QObject):
    """A small pool of worker threads whose results arrive on the GUI thread.

    ``submit(fn, *args, on_result=..., on_error=...)`` runs ``fn(*args)`` on a worker; the
    callbacks run later on the GUI thread. With ``max_threads=1`` jobs run one at a time in
    the order submitted.
    """

    def __init__(self, parent: QObject | None = None, *, max_threads: int = 1) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max(1, max_threads))
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.timeout.connect(self._deliver)

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_result: Callable[[Any], None] | None = None,
        on_error: Callable[[JobFailure], None] | None = None,
    ) -> Job:
        job = Job(next(self._ids), on_result, on_error)
        self._pending[job.id] = job
        self._pool.start(_Runnable(job, fn, args, self._results))
        if not self._timer.isActive():
            self._timer.start()
        return job

    def cancel_pending(self) -> None:
        """Forget every job not yet delivered: queued ones never start, a running one
        finishes but its result is dropped."""
        for job in self._pending.values():
            job.cancelled = True
        self._pending.clear()
        self._pool.clear()

    @property
    def busy(self) -> bool:
        """True while a submitted job has not been delivered or cancelled."""
        return bool(self._pending)

    def wait(self, msecs: int = -1) -> bool:
        """Block until the worker threads are idle (for shutdown and tests)."""
        return self._pool.waitForDone(msecs)

    def _deliver(self) -> None:
        while True:
            try:
                job, ok, value = self._results.get_nowait()
            except queue.Empty:
                break
            if job.cancelled or self._pending.pop(job.id, None) is None:
                continue
            callback = job.on_result if ok else job.on_error
            if callback is not None:
                callback(value)
        if not self._pending:
            self._timer.stop()
