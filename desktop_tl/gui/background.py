"""Work off the GUI thread, on superqt's thread workers, with results on the GUI thread.

Three shapes of background work, all on superqt workers (QRunnables on the global
QThreadPool whose signals are queued to the GUI thread):

- :func:`run_in_background`: one long function (prepare data, build a model, import torch,
  export) that gets its :class:`BackgroundTask` to report progress and check for cancel;
- :class:`JobQueue`: short jobs (read a thumbnail, predict a chunk) run one at a time in
  the order submitted, whose pending ones can be dropped at once;
- :class:`LatestRequest`: when a newer request replaces an older one (a new folder to
  check, a new model to build), the older one's late answers are ignored.

A warning raised on a worker goes through the warnings module as on any thread: the
workers here leave out superqt's capture of warnings (see :class:`_WithoutWarningCapture`).
"""

from __future__ import annotations

import threading
import traceback
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QObject, QThreadPool, Signal
from superqt.utils import FunctionWorker, WorkerBase

#: Background tasks run side by side (a model build need not wait for the data check),
#: so the global pool gets at least this many threads, not one per core.
MIN_POOL_THREADS = 16

_running: set["BackgroundTask"] = set()


def _ensure_threads() -> None:
    pool = QThreadPool.globalInstance()
    if pool.maxThreadCount() < MIN_POOL_THREADS:
        pool.setMaxThreadCount(MIN_POOL_THREADS)


#: Workers started and not yet finished: held here so that nothing collects them mid-run.
_alive: set[WorkerBase] = set()


def _start_now(worker: WorkerBase) -> None:
    """Start ``worker`` on the global pool at once. superqt's ``start()`` waits for the
    next turn of a running event loop (so that callers may connect after starting); ours
    connect first, and a cancel-and-wait right after must find the work already queued."""
    _ensure_threads()
    _alive.add(worker)
    worker.finished.connect(lambda: _alive.discard(worker))  # on the GUI thread
    worker.setAutoDelete(False)  # Python owns it; _alive keeps it until it has finished
    QThreadPool.globalInstance().start(worker)


class _WithoutWarningCapture:
    """superqt's ``run()`` without its ``warnings.catch_warnings()``: that swaps the
    process-wide ``warnings.showwarning``, so two workers whose runs overlap (a data check
    and a model build) would leave one's handler installed for good, and every later
    warning would go to a finished worker."""

    def run(self) -> None:  # on the worker thread
        self.started.emit()
        try:
            result = self.work()
            if not self.abort_requested:
                self.returned.emit(result)
        except Exception as exc:  # reported on the GUI thread, never lost
            self.errored.emit(exc)
        self.finished.emit()


def _traceback_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


# --------------------------------------------------------------------------- long tasks


class _ProgressSignal(QObject):
    """Made on the GUI thread, so what it emits on the worker is queued there."""

    progress = Signal(int, int, str)  # done, total, message


class BackgroundTask(_WithoutWarningCapture, WorkerBase):
    """``fn(task)`` on a worker thread.

    Signals: any number of ``progress(done, total, message)``, then ``returned(result)``
    (left out once cancelled) or ``errored(exception)``, then ``finished``. The function
    decides whether to raise or return early when :meth:`should_stop` is true.
    """

    def __init__(self, fn: Callable[["BackgroundTask"], Any], name: str = "") -> None:
        super().__init__()
        self._progress = _ProgressSignal()
        self.progress = self._progress.progress
        self.name = name or getattr(fn, "__name__", "task")
        self._fn = fn
        self._done = threading.Event()

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
        return self.abort_requested

    # ------------------------------------------------------------ used by the GUI

    def start(self) -> None:
        _running.add(self)
        _start_now(self)

    def cancel(self) -> None:
        self.quit()

    @property
    def cancelled(self) -> bool:
        return self.abort_requested

    def wait(self, msecs: int = -1) -> bool:
        """Block until the function has returned; True when it has."""
        return self._done.wait(None if msecs < 0 else msecs / 1000)

    def work(self) -> Any:  # on the worker thread
        if self.abort_requested:  # cancelled before a thread was free
            return None
        return self._fn(self)

    def run(self) -> None:  # on the worker thread
        try:
            super().run()
        finally:
            _running.discard(self)
            self._done.set()


def run_in_background(
    fn: Callable[[BackgroundTask], Any],
    *,
    on_result: Callable[[Any], None] | None = None,
    on_error: Callable[[BaseException, str], None] | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
    name: str = "",
) -> BackgroundTask:
    """Start ``fn(task)`` on a worker; the callbacks run on the GUI thread. ``on_error``
    gets the exception and its traceback text."""
    task = BackgroundTask(fn, name=name)
    if on_progress is not None:
        task.progress.connect(on_progress)
    if on_result is not None:
        task.returned.connect(on_result)
    if on_error is not None:
        task.errored.connect(lambda exc: on_error(exc, _traceback_text(exc)))
    task.start()
    return task


def cancel_and_wait_all(timeout_ms: int = 10_000) -> bool:
    """Ask every running task to stop, drop every queue's waiting jobs, and wait for
    what is still running (a job's answer emitted after the application's objects are
    gone would fail on its worker); True when all have finished."""
    tasks, queues = list(_running), list(_queues)
    for task in tasks:
        task.cancel()
    for queue in queues:
        queue.cancel_pending()
    finished = True
    for task in tasks:
        finished = task.wait(timeout_ms) and finished
    for queue in queues:
        finished = queue.wait(timeout_ms) and finished
    return finished


# --------------------------------------------------------------------------- short jobs


@dataclass
class JobFailure:
    """Why a job raised: the exception and its formatted traceback."""

    exception: BaseException
    traceback: str

    def __str__(self) -> str:
        return str(self.exception) or type(self.exception).__name__


@dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple
    on_result: Callable[[Any], None] | None
    on_error: Callable[[JobFailure], None] | None
    ticket: RequestTicket


class _Delivery(QObject):
    """Carries a finished job back to the GUI thread (made there, emitted on the worker)."""

    delivered = Signal(object, bool, object)  # job, succeeded, value or JobFailure


class _QueueWorker(_WithoutWarningCapture, FunctionWorker):
    pass


#: Every queue alive, for :func:`cancel_and_wait_all`.
_queues: "weakref.WeakSet[JobQueue]" = weakref.WeakSet()


class JobQueue(QObject):
    """Jobs run one at a time, in the order submitted; results come back on the GUI
    thread.

    One superqt worker drains the queue while it has jobs, so reading many thumbnails
    costs no round trip through the GUI thread between them. The queue is a QObject:
    once it is deleted (with the widget that owns it) its slot is disconnected, so a job
    never calls back into a deleted widget.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._waiting: deque[_Job] = deque()  # shared with the worker, under the lock
        self._draining = False  # a worker is taking jobs (under the lock)
        self._latest = LatestRequest()  # cancel_pending() begins a new request
        self._ticket = self._latest.begin()
        self._undelivered = 0
        self._idle = threading.Event()
        self._idle.set()
        self._delivery = _Delivery()
        self._delivery.delivered.connect(self._deliver)
        _queues.add(self)

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_result: Callable[[Any], None] | None = None,
        on_error: Callable[[JobFailure], None] | None = None,
    ) -> None:
        job = _Job(fn, args, on_result, on_error, self._ticket)
        self._undelivered += 1
        with self._lock:
            self._waiting.append(job)
            if self._draining:
                return
            self._draining = True
            self._idle.clear()
        worker = _QueueWorker(self._drain, self._delivery)
        _start_now(worker)

    def cancel_pending(self) -> None:
        """Forget every job not yet delivered: waiting ones never start, a running one
        finishes but its result is dropped."""
        with self._lock:
            self._waiting.clear()
        self._ticket = self._latest.begin()
        self._undelivered = 0

    @property
    def busy(self) -> bool:
        """True while a submitted job has not been delivered or cancelled."""
        return self._undelivered > 0

    def wait(self, msecs: int = -1) -> bool:
        """Block until no job is running on a worker (for shutdown and tests)."""
        return self._idle.wait(None if msecs < 0 else msecs / 1000)

    def _drain(self, delivery: _Delivery) -> None:  # on the worker thread
        while True:
            with self._lock:
                if not self._waiting:
                    self._draining = False
                    self._idle.set()
                    return
                job = self._waiting.popleft()
            try:
                value = job.fn(*job.args)
            except Exception as exc:  # handed to the GUI thread as a failure
                delivery.delivered.emit(job, False, JobFailure(exc, _traceback_text(exc)))
            else:
                delivery.delivered.emit(job, True, value)

    def _deliver(self, job: _Job, succeeded: bool, value: Any) -> None:
        if not job.ticket.current:
            return
        self._undelivered -= 1
        callback = job.on_result if succeeded else job.on_error
        if callback is not None:
            callback(value)


# --------------------------------------------------------------------------- latest wins


class LatestRequest:
    """Numbers requests so that only the newest one's answers are used.

    ``ticket = latest.begin()`` for each new request, then connect
    ``ticket.only_current(callback)``: the callback is skipped once a newer request has
    begun or :meth:`drop` was called.
    """

    def __init__(self) -> None:
        self._current = 0

    def begin(self) -> "RequestTicket":
        self._current += 1
        return RequestTicket(self, self._current)

    def drop(self) -> None:
        """Whatever the outstanding request still reports is stale."""
        self._current += 1

    def is_current(self, number: int) -> bool:
        return number == self._current


@dataclass(frozen=True)
class RequestTicket:
    latest: LatestRequest
    number: int

    @property
    def current(self) -> bool:
        return self.latest.is_current(self.number)

    def only_current(self, callback: Callable[..., Any]) -> Callable[..., None]:
        def call_if_current(*args: Any) -> None:
            if self.current:
                callback(*args)

        return call_if_current
