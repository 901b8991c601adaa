"""What the training loop may do to the outside world, and nothing more.

The loop reports events, writes log lines, announces long stages, asks whether it should
stop and takes the next command; it never sees the :class:`~desktop_tl.core.training.Trainer`.
Every log line also goes to the standard :mod:`logging` module (logger
``desktop_tl.engine``), so a script that trains without any callback still sees warnings.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from . import events as ev
from .cancelled import Cancelled
from .run_folder import RunLog

EventCallback = Callable[[object], None]

logger = logging.getLogger("desktop_tl.engine")

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class RunContext:
    """The run's event subscribers, log, command queue and stop flag.

    ``subscribe``, ``send`` and ``attach_log`` are the owner's side; the loop uses
    ``emit``, ``log``, ``stage``, ``should_stop``/``check_stop`` and ``next_command``.
    """

    def __init__(self) -> None:
        self._subscribers: tuple[EventCallback, ...] = ()
        self._lock = threading.Lock()
        self._commands: queue.Queue[object] = queue.Queue()
        self._cancel = threading.Event()
        self._run_log: RunLog | None = None
        self._early_log: list[tuple[str, str]] = []  # written to run.log once it exists

    # ---- the owner's side

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` for every event from now on (on the training thread).
        Returns a function that unsubscribes it."""
        with self._lock:
            self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not callback)

        return unsubscribe

    def send(self, command: object) -> None:
        """Queue a command; a Cancel also raises the stop flag at once (safe from any thread)."""
        if isinstance(command, ev.Cancel):
            self._cancel.set()
        self._commands.put(command)

    def attach_log(self, run_log: RunLog) -> None:
        """Write log lines to ``run_log`` from now on, starting with those sent before it existed."""
        self._run_log = run_log
        early, self._early_log = self._early_log, []
        for level, message in early:
            try:
                run_log.write(level, message)
            except OSError:
                break  # a full disk: the run itself will say so, with what to do

    # ---- the loop's side

    def emit(self, event: object) -> None:
        for callback in self._subscribers:
            callback(event)

    def log(self, level: str, message: str, *, to_run_log: bool = True) -> None:
        """A log line for the run log, the subscribers and :mod:`logging`. ``to_run_log``
        false: the run folder is not this run's to write (a refused resume)."""
        if to_run_log:
            if self._run_log is not None:
                try:
                    self._run_log.write(level, message)
                except OSError:
                    pass
            else:
                self._early_log.append((level, message))
        logger.log(_LEVELS.get(level, logging.INFO), "%s", message)
        self.emit(ev.LogMessage(level, message))

    def stage(self, stage: str, message: str, done: int = 0, total: int = 0) -> None:
        self.emit(ev.StageChanged(stage, message, done, total))

    def should_stop(self) -> bool:
        return self._cancel.is_set()

    def check_stop(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()

    def next_command(self, wait: bool = False) -> object | None:
        """The next queued command, or None; ``wait`` blocks up to a tenth of a second
        (a paused run waits here, checking for a stop in between)."""
        try:
            return self._commands.get(block=wait, timeout=0.1 if wait else None)
        except queue.Empty:
            return None
