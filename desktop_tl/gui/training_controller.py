"""The flow of a run in the window: Start, Pause and Stop, the engine's events, the freeze
changes sent while it trains, and the run's results on screen.

The controller owns the :class:`~desktop_tl.gui.training_worker.TrainingSession` of the
run going and its state (idle, running, paused, stopping). It shows what the engine
reports in the window's panels and sends the engine commands. Of its own it keeps only
what the engine cannot tell: the freeze changes sent and not yet taken (so that one that
came after the last batch can be undone) and which dataset and model the results on
screen came from (so that choosing another clears them). The window reacts to
``state_changed`` (which panels are locked, which actions are enabled); the layer tree's
edits reach the run through :class:`~desktop_tl.gui.freeze_editor.FreezeEditor`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Signal
from PySide6.QtWidgets import QWidget

from ..core.events import Cancel, Pause, Resume, SetFreeze
from ..errors import UserError
from .plots import freeze_change_text
from .training_worker import TrainingSession

#: States in which a run is going (the engine may still report).
RUN_GOING = ("running", "paused", "stopping")


class TrainingController(QObject):
    """Runs for ``window`` (a :class:`~desktop_tl.gui.main_window.MainWindow`)."""

    state_changed = Signal(str)  # idle, running, paused, stopping
    run_finished = Signal(object)  # RunFinished, after the window has shown it

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self._window = window
        self.state = "idle"
        self.session: TrainingSession | None = None
        self.last_result: Any = None  # the RunFinished of the run on screen
        self._epochs = 0
        self._run_class_names: list[str] = []  # of the run going, as the engine sent them
        # Freeze changes during a run: those sent and not yet taken by the engine (with
        # the freeze settings from before each), how many it has taken, and the state
        # it last reported (None until it reports one).
        self._freeze_unapplied: list[tuple[dict[str, bool], Any]] = []
        self._freeze_taken = 0
        self._engine_freeze: dict[str, bool] | None = None
        # The dataset (path, loader) and model settings the results on screen came from:
        # another dataset or model clears them (None while no run has shown any).
        self._results_of: tuple[tuple[str, str], Any] | None = None

    def is_active(self) -> bool:
        """A run is going: it has started and its thread has not finished."""
        return self.session is not None and self.state in RUN_GOING

    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_changed.emit(state)

    # ================================================================= commands

    def can_start(self) -> tuple[bool, str]:
        """Whether Start may be pressed, and what to do first when not."""
        window = self._window
        if window.host is None:
            return False, "Loading PyTorch and the plugins…"
        if self.is_active():
            return False, "A run is going: stop it (Ctrl+.) before starting another."
        data, model = window.data_panel, window.model_panel
        if data.busy:
            return False, "Checking the images…"
        if data.prepared is None:
            return False, "Choose a dataset folder (1 · Data) to begin: one subfolder per class."
        if not model.model_name():
            return False, "Choose a backbone (2 · Model)."
        if not model.busy and model.build_error:
            return False, (
                f"The model could not be built: {model.build_error.rstrip('.')}. "
                "Choose another backbone (2 · Model)."
            )
        ok, why = model.weights_ok()
        if not ok:
            return False, why[0].upper() + why[1:] + "."
        return True, ""

    def start(self) -> bool:
        """Start a run with the settings the panels show; False (and why, on screen) when
        it cannot start."""
        window = self._window
        panel = window.training_panel
        ok, why = self.can_start()
        if not ok:
            if why:
                if not self.is_active():
                    panel.show_message("warning", why)
                window.show_status("Cannot start training: " + why[0].lower() + why[1:])
            return False
        config = window.current_config()
        config.out = ""  # every Start makes a new run folder
        try:
            config.validate()
        except UserError as exc:
            panel.show_message("error", str(exc))
            return False
        window.config.freeze = copy.deepcopy(config.freeze)
        self._epochs = config.train.epochs
        self.last_result = None
        self._results_of = ((config.data.path, config.data.loader), copy.deepcopy(config.model))
        # The old curves go now; the axes are fitted to the run once it has started, not
        # while the engine is checking the images.
        window.plots.reset()
        window.plots.set_message("Preparing the run…")
        window.show_tab(window.train_page)
        panel.show_message("info", "Starting: checking images and building the model…")
        window.layer_panel.clear_pending()
        self._freeze_unapplied = []
        self._freeze_taken = 0
        self._engine_freeze = None
        # The data panel has checked and split the images already: the engine reuses
        # that unless the data settings differ from the ones it checked with.
        session = TrainingSession(
            config,
            window.host,
            parent=self,
            prepared=window.data_panel.prepared,
            prepared_with=window.data_panel.prepared_with,
        )
        worker = session.worker
        worker.stage_changed.connect(self._on_stage)
        worker.run_started.connect(self._on_run_started)
        worker.batches_ready.connect(self._on_batches_ready)
        worker.epoch_ended.connect(self._on_epoch_ended)
        worker.freeze_applied.connect(self._on_freeze_applied)
        worker.log_message.connect(self._on_log_message)
        worker.run_finished.connect(self._on_run_finished)
        session.stopped.connect(self._on_session_stopped)
        self.session = session
        self._set_state("running")
        window.log(
            "info",
            f"starting a run: {config.model.backbone}, "
            f"{config.train.epochs} epochs, freeze {config.freeze.preset}",
        )
        # Paint the new state (panels locked, Stop enabled) now, while the GUI thread has
        # the CPUs to itself: the engine starts by decoding every image on a pool of
        # threads, and a repaint competing with them takes several times as long.
        flush_pending_paint(window)
        session.start()
        return True

    def toggle_pause(self) -> None:
        if self.session is None:
            return
        panel = self._window.training_panel
        if self.state == "running":
            self.session.send(Pause())
            self._set_state("paused")
            panel.show_message("info", "Paused. Resume with Space or Ctrl+P; layers can still be ticked.")
        elif self.state == "paused":
            self.session.send(Resume())
            self._set_state("running")
            panel.show_message("info", "Training…")

    def stop(self) -> None:
        """Cancel the run after the current batch (its last checkpoint is kept)."""
        if self.session is None or self.state not in ("running", "paused"):
            return
        self.session.send(Cancel())
        self._set_state("stopping")
        self._window.training_panel.show_message("warning", "Stopping after the current batch…")

    # ================================================================= freeze changes

    def send_freeze(self, changes: dict[str, bool], freeze_before: Any) -> None:
        """Send the run a change the tree already shows; until the engine reports it
        applied, it is kept with the freeze settings from before it, to undo it if it
        never is."""
        assert self.session is not None
        self.session.send(SetFreeze(dict(changes)))
        self._freeze_unapplied.append((dict(changes), freeze_before))
        self._window.layer_panel.set_pending(changes)
        described = ", ".join(f"{n} {'trainable' if v else 'frozen'}" for n, v in changes.items())
        self._window.log("info", f"freeze change sent: {described} (applies at the next batch)")

    def _drop_unapplied_freeze(self) -> None:
        """At the end of a run, undo the changes the engine never took (sent after its
        last batch): the tree and the settings then show what the run trained."""
        if not self._freeze_unapplied:
            return
        window = self._window
        count = len(self._freeze_unapplied)
        window.config.freeze = self._freeze_unapplied[0][1]
        self._freeze_unapplied = []
        window.freeze_editor.show_trained(window.config.freeze, self._engine_freeze)
        window.log(
            "warning",
            f"{count} freeze change{'s' if count != 1 else ''} came after the "
            "last batch and {} not applied; the layer tree shows what the run "
            "trained".format("were" if count != 1 else "was"),
        )

    # ================================================================= engine events

    def _on_stage(self, event: Any) -> None:
        if self.state in ("running", "paused"):
            self._window.training_panel.show_stage(event.message, event.done, event.total)
            self._window.show_status(event.message)

    def _on_run_started(self, event: Any) -> None:
        window = self._window
        self._epochs = event.epochs
        window.plots.set_batches_per_epoch(event.batches_per_epoch)
        window.plots.set_planned_epochs(event.epochs)
        window.plots.set_message(
            f"Training {event.num_train:,} images, validating on "
            f"{event.num_val:,}; the first epoch's points appear after it."
        )
        window.show_device(f"{event.device} ({event.precision})")
        self._run_class_names = list(event.class_names)  # the panel may re-check data meanwhile
        if self.state == "running":
            window.training_panel.show_message("info", f"Training in {event.run_dir}")
        window.run_dir = event.run_dir

    def _on_batches_ready(self) -> None:
        if self.session is None:
            return
        batches = self.session.worker.take_batches()
        if not batches:
            return
        window = self._window
        for batch in batches:
            window.plots.add_batch(batch.step, batch.loss, batch.batches_per_epoch)
        last = batches[-1]
        window.training_panel.show_batch(last, self._epochs, paused=self.state == "paused")
        if self.state == "running":
            window.show_status(f"Training · epoch {last.epoch + 1}/{self._epochs}")

    def _on_epoch_ended(self, event: Any) -> None:
        metrics = event.metrics
        self._window.plots.add_epoch(event.epoch, metrics)
        confusion = metrics.get("confusion")
        if confusion:
            self._window.evaluation_view.set_results(
                self._run_class_names,
                confusion,
                metrics.get("per_class_precision", []),
                metrics.get("per_class_recall", []),
                [],
                caption=f"after epoch {event.epoch + 1} of {self._epochs}; the misclassified "
                "images are listed when the run ends",
            )

    def _on_freeze_applied(self, event: Any) -> None:
        # The engine counts the commands it took: those are no longer pending.
        taken = max(0, event.commands - self._freeze_taken)
        self._freeze_taken = event.commands
        del self._freeze_unapplied[:taken]
        self._engine_freeze = dict(event.state)
        self._window.freeze_editor.show_applied(
            self._engine_freeze, [changes for changes, _freeze_before in self._freeze_unapplied]
        )
        if not event.changes:  # every change was refused; the engine logged why
            return
        changed = freeze_change_text(event.changes)
        self._window.plots.add_freeze_marker(event.step, changed)
        cache = f"; feature cache {event.feature_cache}" if event.feature_cache else ""
        self._window.log(
            "info",
            f"freeze change applied at step {event.step} "
            f"(epoch {event.epoch + 1}): {changed}; {event.trainable_params:,} of "
            f"{event.total_params:,} parameters trainable{cache}",
        )

    def _on_log_message(self, event: Any) -> None:
        self._window.log(event.level, event.message)

    def _on_run_finished(self, event: Any) -> None:
        window = self._window
        panel = window.training_panel
        self._on_batches_ready()  # anything still queued
        window.plots.redraw_if_dirty()
        self.last_result = event
        summary = event.summary or {}
        status = event.status
        if status in ("completed", "early-stopped"):
            acc = summary.get("val_acc")
            best = summary.get("best_val_acc")
            epochs = summary.get("epochs_completed", "?")
            text = (
                f"Finished {epochs} epoch{'' if epochs == 1 else 's'}"
                + (f": validation accuracy {acc:.1%}" if acc is not None else "")
                + (f" (best {best:.1%})" if best is not None else "")
                + (f". {event.reason}" if event.reason else "")
                + f". Saved in {event.run_dir}"
            )
            panel.show_message("good", text)
            window.show_status("Finished")
        elif status == "cancelled":
            done = summary.get("epochs_completed") or 0
            if done:
                text = f"Stopped after {done} epoch{'' if done == 1 else 's'}; the last checkpoint was kept."
            else:
                text = "Stopped before the first epoch ended, so there is no checkpoint."
            panel.show_message("warning", text)
            window.show_status("Stopped")
        else:
            panel.show_message("error", f"Training failed: {event.reason}")
            window.show_status("Training failed")
        panel.show_finished(
            status,
            summary.get("epochs_completed") or 0,
            summary.get("train_seconds"),
            has_model=bool(event.run_dir) and (Path(event.run_dir) / "checkpoints" / "best").is_dir(),
        )
        if summary.get("confusion"):
            window.evaluation_view.set_results(
                list(summary.get("classes") or self._run_class_names),
                summary["confusion"],
                summary.get("per_class_precision", []),
                summary.get("per_class_recall", []),
                summary.get("misclassified", []),
                caption=f"after the last epoch ({summary.get('epochs_completed')}) of the run "
                f"in {Path(event.run_dir).name}",
            )
            window.tabs.mark_new_results()
        if event.run_dir and summary.get("epochs_completed"):
            window.evaluation_view.show_run(event.run_dir, name=f"just trained · {Path(event.run_dir).name}")
        # The end of the run is in the log already: the engine (or, for a run that failed
        # before the engine could report, the worker) wrote it.

    def _on_session_stopped(self, event: Any) -> None:
        session = self.session
        self.session = None
        if session is not None:
            session.setParent(None)
            session.deleteLater()
        self._set_state("idle")
        self._drop_unapplied_freeze()
        self._window.layer_panel.clear_pending()
        if event is not None:
            self.run_finished.emit(event)

    # ================================================================= results on screen

    def _has_results(self) -> bool:
        """Whether a run's status, curves or evaluation are on screen."""
        window = self._window
        return (
            self.last_result is not None
            or not window.plots.is_empty()
            or window.evaluation_view.has_results()
        )

    def clear_results(self, why: str) -> None:
        """Take the last run's status line, progress, curves and evaluation off the
        screen: they belong to another project, dataset or model. The run itself stays
        in the Runs tab. ``why`` says what changed (for the log)."""
        if self.is_active():
            return
        window = self._window
        had_results = self._has_results()
        self._results_of = None
        self.last_result = None
        window.training_panel.reset_progress()
        window.plots.reset()
        window.plots.set_message("Curves appear here once training starts.")
        self.preview_epoch_axis()
        window.evaluation_view.clear()
        window.tabs.forget_new_results()
        if window.host is not None:  # the run's device and precision: not this project's
            window.show_device()
        if had_results:
            window.log(
                "info",
                f"cleared the last run's results from the window ({why}); the Runs tab still has that run",
            )

    def clear_results_if_changed(self, what: str) -> None:
        """Clear the results on screen when the ``what`` ("dataset" or "model") the
        panels show now is not the one they came from."""
        if self._results_of is None or self.is_active():
            return
        config = self._window.current_config()
        if what == "dataset" and (config.data.path, config.data.loader) != self._results_of[0]:
            self.clear_results("the dataset changed")
        elif what == "model" and config.model != self._results_of[1]:
            self.clear_results("the model changed")

    def preview_epoch_axis(self) -> None:
        """Before the first run, the empty plots already span the epochs it will train."""
        plots = self._window.plots
        if not self.is_active() and plots.is_empty():
            plots.set_planned_epochs(self._window.training_panel.epochs())


def flush_pending_paint(window: QWidget) -> None:
    """Lay out and paint what has changed in ``window`` now, instead of on a later turn
    of the event loop (only the changed regions, unlike ``repaint()``)."""
    QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
    QCoreApplication.sendPostedEvents(window, QEvent.Type.UpdateRequest)
