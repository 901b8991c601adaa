"""The engine's training loop on a QThread, its events turned into Qt signals.

The worker never touches a widget: it only emits signals, which Qt queues to the GUI
thread. Commands (pause, cancel, freeze changes) go straight to ``Trainer.send``, which is
thread-safe, because the worker's own thread is busy inside ``Trainer.run`` and cannot
process queued slot calls. Batch events can arrive hundreds of times a second with a
cached-feature head, so they are collected under a lock and announced with one signal
until the GUI has drained them; everything else is emitted as it comes.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from ..core.config import DataConfig, RunConfig
from ..core.events import (
    BatchEnded,
    EpochEnded,
    FreezeApplied,
    LogMessage,
    RunFinished,
    RunStarted,
    StageChanged,
)


class TrainingWorker(QObject):
    """Runs one ``Trainer`` on the thread it has been moved to."""

    stage_changed = Signal(object)  # StageChanged
    run_started = Signal(object)  # RunStarted
    batches_ready = Signal()  # drain with take_batches()
    epoch_ended = Signal(object)  # EpochEnded
    freeze_applied = Signal(object)  # FreezeApplied
    log_message = Signal(object)  # LogMessage
    run_finished = Signal(object)  # RunFinished, exactly once, always last

    def __init__(
        self,
        config: RunConfig,
        host: Any = None,
        resume: bool = False,
        prepared: Any = None,
        prepared_with: DataConfig | None = None,
    ) -> None:
        super().__init__()
        self._config = config
        self._host = host
        self._resume = resume
        # Data the window has checked already, and the settings it was checked with: the
        # engine uses it instead of reading every image again when they are the run's.
        self._prepared = prepared
        self._prepared_with = prepared_with
        self._lock = threading.Lock()
        self._batches: list[BatchEnded] = []
        self._pending_commands: list[Any] = []
        self._trainer: Any = None
        self._finished_event: RunFinished | None = None
        self.events_received = 0

    # ------------------------------------------------------------ GUI thread side

    def send(self, command: Any) -> None:
        """Hand a command to the engine (thread-safe). Commands sent before the engine
        exists are kept and delivered as soon as it does."""
        with self._lock:
            trainer = self._trainer
            if trainer is None:
                self._pending_commands.append(command)
                return
        trainer.send(command)

    def take_batches(self) -> list[BatchEnded]:
        with self._lock:
            batches, self._batches = self._batches, []
        return batches

    # ------------------------------------------------------------ worker thread side

    @Slot()
    def run(self) -> None:
        started = time.monotonic()
        try:
            from ..core.training import Trainer

            trainer = Trainer(
                self._config,
                host=self._host,
                on_event=self._on_event,
                resume=self._resume,
                prepared=self._prepared,
                prepared_with=self._prepared_with,
            )
            with self._lock:
                self._trainer = trainer
                pending, self._pending_commands = self._pending_commands, []
            for command in pending:  # e.g. Stop pressed while the engine was being made
                trainer.send(command)
            result = trainer.run()
        except BaseException as exc:  # a bug or an error before the engine could report
            from ..errors import UserError

            reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, UserError):
                self.log_message.emit(LogMessage("error", traceback.format_exc()))
            # The engine reports how a run ends; this one ended before it could.
            self.log_message.emit(LogMessage("error", f"run failed: {reason}"))
            result = RunFinished(
                "failed", reason or type(exc).__name__, "", {"train_seconds": time.monotonic() - started}
            )
        if self._finished_event is None:
            if not isinstance(result, RunFinished):
                result = RunFinished("failed", "the engine returned no result", "", {})
            self._finished_event = result
            self.run_finished.emit(result)

    def _on_event(self, event: Any) -> None:
        """The engine's callback, on this worker's thread."""
        self.events_received += 1
        if isinstance(event, BatchEnded):
            with self._lock:
                announce = not self._batches
                self._batches.append(event)
            if announce:
                self.batches_ready.emit()
            return
        # Queued signals keep their order, so batches announced earlier are drained
        # before this event reaches the GUI.
        if isinstance(event, EpochEnded):
            self.epoch_ended.emit(event)
        elif isinstance(event, FreezeApplied):
            self.freeze_applied.emit(event)
        elif isinstance(event, StageChanged):
            self.stage_changed.emit(event)
        elif isinstance(event, RunStarted):
            self.run_started.emit(event)
        elif isinstance(event, LogMessage):
            self.log_message.emit(event)
        elif isinstance(event, RunFinished):
            if self._finished_event is None:
                self._finished_event = event
                self.run_finished.emit(event)


class TrainingSession(QObject):
    """One training run: the worker, its QThread and their lifetimes.

    Both objects are held here until the thread has finished (then ``stopped`` is
    emitted), so neither is destroyed while the engine still runs.
    """

    stopped = Signal(object)  # the RunFinished that ended the run

    def __init__(
        self,
        config: RunConfig,
        host: Any = None,
        resume: bool = False,
        parent: QObject | None = None,
        *,
        prepared: Any = None,
        prepared_with: DataConfig | None = None,
    ) -> None:
        super().__init__(parent)
        self.config = config
        self.thread = QThread()
        self.thread.setObjectName("training")
        self.worker = TrainingWorker(config, host, resume, prepared, prepared_with)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        self.worker.run_finished.connect(self._on_run_finished)
        self.thread.finished.connect(self._on_thread_finished)
        self.result: RunFinished | None = None
        self._thread_done = False

    def start(self) -> None:
        self.thread.start()

    def send(self, command: Any) -> None:
        self.worker.send(command)

    def is_running(self) -> bool:
        return not self._thread_done

    def wait(self, timeout_ms: int = 30_000) -> bool:
        return self.thread.wait(timeout_ms)

    def _on_run_finished(self, event: RunFinished) -> None:
        self.result = event
        self.thread.quit()

    def _on_thread_finished(self) -> None:
        self.thread.wait()
        self._thread_done = True
        self.stopped.emit(self.result)
