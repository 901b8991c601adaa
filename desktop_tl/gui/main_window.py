"""The main window: the menus, the tabs (laid out by window_tabs) and the wiring between
the panels.

The window holds no training state of its own. It assembles a
:class:`~desktop_tl.core.config.RunConfig` from its panels and delegates: the flow of a
run (Start, Pause, Stop, the engine's events, the run's results on screen) to
:class:`~desktop_tl.gui.training_controller.TrainingController`, the layer tree's freeze
edits to :class:`~desktop_tl.gui.freeze_editor.FreezeEditor`, the project file to
:class:`~desktop_tl.gui.project_controller.ProjectController`. It is shown before torch is
imported: the panels wait, disabled, until :meth:`MainWindow.set_backend` hands them the
plugin host.

(About 570 lines: the menus and shortcuts, the signals of seven panels, which actions
each run state enables, and closing during a run (ask, cancel, wait) are what a window
is; each is short, and splitting them would only pass the window around further.)
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox, QStatusBar, QWidget

from ..core.config import RunConfig
from .background import cancel_and_wait_all
from .data_panel import DataPanel
from .evaluation_view import EvaluationView
from .export_dialog import open_export_dialog
from .freeze_editor import FreezeEditor
from .help_dialog import install_help_menu
from .layer_tree import LayerTreePanel
from .log_view import LogView
from .model_panel import ModelPanel
from .plots import TrainingPlots
from .prediction_view import PredictionView
from .preferences_dialog import install_preferences
from .project_controller import ProjectController
from .run_elsewhere_dialog import open_run_elsewhere_dialog, run_freeze_changes, run_started_freeze
from .runs_view import RunsView
from .training_controller import TrainingController
from .training_panel import TrainingPanel
from .window_tabs import MainTabs, build_train_page


class MainWindow(QMainWindow):
    """The application window. ``settings`` is an :class:`~desktop_tl.gui.settings.AppSettings`
    (or None in tests that do not care)."""

    backend_ready = Signal()
    ready_to_train = Signal()  # data checked, model built, Start enabled

    def __init__(self, settings: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.host: Any = None
        self.devices: dict[str, Any] = {}
        self.config = RunConfig()
        self.run_dir = ""  # the folder of the latest run
        self.launcher: Any = None  # the app's start-up helper (desktop_tl.gui.app.Launcher)
        self.class_names: list[str] = []
        #: Called instead of the question box when the window is closed during a run;
        #: returns True to stop the run and close (tests set it).
        self.confirm_close: Callable[[], bool] | None = None
        self._close_when_stopped = False
        self._pending_config: RunConfig | None = None
        self._ready_announced = False

        self.setWindowTitle("desktop-tl[*]")
        self.setAcceptDrops(True)
        self.project = ProjectController(self, settings)
        self._build_panels()
        self.training = TrainingController(self)
        self.freeze_editor = FreezeEditor(self)
        self._build_layout()
        self._build_actions()
        self._build_status_bar()
        self._connect_panels()
        self._show_run_state()
        self.training_panel.show_message("info", "Loading PyTorch and the plugins…")
        self.resize(1600, 980)
        if settings is not None:
            settings.restore_window(self)

    # ================================================================= construction

    def _build_panels(self) -> None:
        self.data_panel = DataPanel(self.settings)
        self.model_panel = ModelPanel(self.settings)
        self.layer_panel = LayerTreePanel()
        self.training_panel = TrainingPanel()
        self.plots = TrainingPlots()
        self.evaluation_view = EvaluationView()
        self.prediction_view = PredictionView(settings=self.settings)
        self.log_view = LogView()

    def _build_layout(self) -> None:
        self.train_page, self.splitter = build_train_page(
            self.data_panel, self.model_panel, self.layer_panel, self.training_panel, self.plots
        )
        self.runs_view = RunsView(self.settings)
        self.tabs = MainTabs(
            self.train_page, self.evaluation_view, self.prediction_view, self.runs_view, self.log_view
        )
        self.setCentralWidget(self.tabs)

    def show_tab(self, widget: QWidget) -> None:
        """Bring the tab holding ``widget`` (a view or a page) to the front."""
        self.tabs.show_page(widget)

    def _build_actions(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.new_action = _action(self, "&New project", QKeySequence.StandardKey.New, self.project.new)
        self.open_action = _action(self, "&Open project…", QKeySequence.StandardKey.Open, self.project.choose)
        self.save_action = _action(self, "&Save project", QKeySequence.StandardKey.Save, self.project.save)
        self.save_as_action = _action(
            self, "Save project &as…", QKeySequence("Ctrl+Shift+S"), self.project.save_as
        )
        self.open_data_action = _action(
            self, "Open &dataset…", QKeySequence("Ctrl+Shift+O"), self.data_panel.choose_folder
        )
        self.quit_action = _action(self, "&Quit", QKeySequence.StandardKey.Quit, self.close)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(lambda: self.project.fill_recent_menu(self.recent_menu))
        file_menu.insertAction(self.recent_menu.menuAction(), self.new_action)
        file_menu.insertAction(self.recent_menu.menuAction(), self.open_action)
        file_menu.addAction(self.save_action)
        file_menu.addAction(self.save_as_action)
        file_menu.addSeparator()
        file_menu.addAction(self.open_data_action)
        self.export_action = _action(
            self, "&Export model…", QKeySequence("Ctrl+E"), lambda: open_export_dialog(self, self.run_dir)
        )
        file_menu.addAction(self.export_action)
        self.run_elsewhere_action = _action(self, "Run &elsewhere…", None, self.run_elsewhere)
        file_menu.addAction(self.run_elsewhere_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)

        run_menu = menu.addMenu("&Run")
        self.start_action = _action(self, "&Start training", QKeySequence("Ctrl+R"), self.start_training)
        self.pause_action = _action(self, "&Pause / resume", QKeySequence("Ctrl+P"), self.toggle_pause)
        self.stop_action = _action(self, "S&top", QKeySequence("Ctrl+."), self.stop_training)
        for action in (self.start_action, self.pause_action, self.stop_action):
            run_menu.addAction(action)
        run_menu.setToolTipsVisible(True)  # a disabled Start says why on hover
        # A disabled action ignores its shortcut: while Start cannot be pressed, Ctrl+R
        # goes here instead and says in the status bar what is missing.
        self.start_refused_shortcut = QShortcut(QKeySequence("Ctrl+R"), self)
        self.start_refused_shortcut.activated.connect(self.start_training)
        self.start_refused_shortcut.setEnabled(False)
        run_menu.addSeparator()
        self.runs_action = _action(
            self, "Run &history", QKeySequence("Ctrl+H"), lambda: self.show_tab(self.runs_view)
        )
        run_menu.addAction(self.runs_action)
        # Space pauses too, but only while a run is going, so that it still ticks check
        # boxes and presses buttons the rest of the time.
        self.space_shortcut = QShortcut(QKeySequence(Qt.Key.Key_Space), self)
        self.space_shortcut.setWhatsThis("Pause / resume (while a run is going)")
        self.space_shortcut.activated.connect(self.toggle_pause)
        self.space_shortcut.setEnabled(False)

        tools_menu = menu.addMenu("&Tools")
        self.plugins_action = _action(self, "&Plugins…", None, self.show_plugins)
        tools_menu.addAction(self.plugins_action)
        install_preferences(self, file_menu, before=self.quit_action)
        install_help_menu(self, menu.addMenu("&Help"))

    def _build_status_bar(self) -> None:
        bar = QStatusBar()
        self.setStatusBar(bar)
        self.state_label = QLabel("")
        self.device_label = QLabel("Device: –")
        self.device_label.setToolTip("Where training runs (Automatic picks CUDA, then MPS, then the CPU).")
        bar.addWidget(self.state_label, 1)
        bar.addPermanentWidget(self.device_label)

    def _connect_panels(self) -> None:
        self.runs_view.evaluation_requested.connect(self.show_run_evaluation)
        self.runs_view.prediction_requested.connect(self.predict_with_run)
        # One model across tabs: a run is evaluated with the chosen checkpoint (best or
        # last), and Prediction and the gallery's heat maps use that same checkpoint.
        self.prediction_view.loads_own_checkpoints = False
        self.evaluation_view.model_ready.connect(self._use_evaluated_model)
        self.evaluation_view.model_failed.connect(self.prediction_view.drop_model)
        self.evaluation_view.checkpoint_changed.connect(self.prediction_view.show_checkpoint)
        self.prediction_view.checkpoint_requested.connect(self._evaluate_prediction_checkpoint)
        self.prediction_view.run_loaded.connect(
            lambda folder: self.evaluation_view.show_run(folder, checkpoint=self.prediction_view.checkpoint())
        )
        self.training.run_finished.connect(lambda _event: self.runs_view.refresh())
        self.training.state_changed.connect(self._show_run_state)
        self.data_panel.prepared_changed.connect(self._on_prepared_changed)
        self.data_panel.busy_changed.connect(lambda _busy: self._update_actions())
        self.data_panel.config_changed.connect(self.project.mark_modified)
        self.data_panel.log.connect(self.log)
        self.model_panel.config_changed.connect(self._on_model_config_changed)
        self.model_panel.model_built.connect(self._on_model_built)
        self.model_panel.busy_changed.connect(self._on_model_busy)
        self.model_panel.weights_changed.connect(self._update_actions)
        self.model_panel.log.connect(self.log)
        self.layer_panel.toggled.connect(self.freeze_editor.toggle_layer)
        self.layer_panel.preset_chosen.connect(self.freeze_editor.choose_preset)
        self.training_panel.start_requested.connect(self.start_training)
        self.training_panel.export_requested.connect(self.export_action.trigger)
        self.training_panel.pause_requested.connect(self.toggle_pause)
        self.training_panel.stop_requested.connect(self.stop_training)
        self.training_panel.config_changed.connect(self.project.mark_modified)
        self.training_panel.config_changed.connect(self.training.preview_epoch_axis)
        self.training_panel.advanced.data_changed.connect(
            lambda: self.data_panel.set_test_fraction(self.current_config().data.test_fraction)
        )

    # ================================================================= backend

    def set_backend(self, host: Any, devices: dict[str, Any] | None = None) -> None:
        """torch and the plugins are loaded: fill the panels and apply any waiting project."""
        self.host = host
        self.devices = devices or {}
        self.data_panel.set_host(host)
        self.model_panel.set_host(host)
        available = self.devices.get("available", {})
        auto = self.devices.get("auto", "")
        self.training_panel.set_available_devices(available, auto)
        self.show_device()
        for record in getattr(host, "records", []):
            if record.status in ("failed", "refused"):
                self.log("warning", f"{record.label} {record.status}: {record.summary or ''}")
        for problem in getattr(host, "problems", []):
            self.log("warning", problem)
        self._show_run_state()
        pending = self._pending_config or self.config
        self._pending_config = None
        self.load_config(pending, project_path=self.project.path)
        self.setWindowModified(False)
        self.log(
            "info",
            f"ready: {len(host.backbone_providers())} backbone providers, "
            f"{len(host.dataset_loaders())} dataset loaders, "
            f"{len(host.head_types())} head types",
        )
        self.backend_ready.emit()
        self.project.offer_restore()  # after a crash: the unsaved work, if the user wants it

    def backend_failed(self, message: str) -> None:
        self.training_panel.show_message(
            "error", f"PyTorch or the plugin system could not be loaded: {message}"
        )
        self.state_label.setText("Could not load PyTorch")
        self.log("error", message)

    # ================================================================= configuration

    def run_elsewhere(self) -> None:
        """The project as a run file with launch scripts for torchrun and SLURM, offering
        the last run's live freeze changes as the run file's schedule."""
        last = self.training.last_result
        open_run_elsewhere_dialog(
            self, self.current_config(), run_freeze_changes(last), run_started_freeze(last)
        )

    def current_config(self) -> RunConfig:
        """The run configuration the panels describe right now."""
        config = copy.deepcopy(self.config)
        if self.host is not None:
            self.data_panel.apply_to(config.data)
            self.model_panel.apply_to(config.model)
        self.training_panel.apply_to(config.train)
        self.training_panel.apply_data_to(config.data)
        return config

    def load_config(self, config: RunConfig, project_path: Path | None = None) -> None:
        """Show a configuration in every panel (waits for the backend if need be); the
        previous project's results go."""
        self.project.set_path(project_path)
        self.training.clear_results("another project was opened" if project_path else "a new project")
        self._update_actions()
        self.prediction_view.clear()
        if self.host is None:
            self._pending_config = config
            self.config = copy.deepcopy(config)
            self.training_panel.load_from(config.train)
            self.training_panel.load_data_from(config.data)
            self.training.preview_epoch_axis()
            return
        self.config = copy.deepcopy(config)
        self.training_panel.load_from(config.train)
        self.training_panel.load_data_from(config.data)
        self.training.preview_epoch_axis()
        self.layer_panel.set_preset(config.freeze.preset, config.freeze.overrides)
        self.model_panel.load_from(config.model)
        self.data_panel.load_from(config.data)
        self.model_panel.request_build(len(self.class_names) or None)
        self.setWindowModified(False)
        self._update_actions()

    def open_dataset(self, path: str | os.PathLike[str]) -> None:
        self.data_panel.set_path(path)

    # ================================================================= data and model

    def _on_prepared_changed(self, prepared: Any) -> None:
        had_classes = bool(self.class_names)
        self.class_names = list(prepared.class_names) if prepared is not None else []
        if prepared is None and had_classes:
            self.model_panel.request_build(0)  # no dataset: no class count to show
        self.training.clear_results_if_changed("dataset")
        if prepared is not None:
            self.model_panel.request_build(len(self.class_names))
            if self.settings is not None and Path(prepared.root).exists():
                self.settings.last_data_folder = str(Path(prepared.root).parent)
            self.prediction_view.set_fallback_folder(prepared.root)
        # Checking the project's own dataset changes nothing worth saving; another
        # folder does.
        shown = copy.deepcopy(self.config.data)
        self.data_panel.apply_to(shown)
        if shown != self.config.data:
            self.project.mark_modified()
        self._update_actions()

    def _on_model_config_changed(self) -> None:
        self.project.mark_modified()
        self.training.clear_results_if_changed("model")
        self.model_panel.request_build(len(self.class_names) or None)
        self._update_actions()

    def _on_model_busy(self, busy: bool) -> None:
        if busy and not self.layer_panel.has_tree():
            self.layer_panel.set_tree(None, f"Building {self.model_panel.model_name()}…")
        self._update_actions()

    def _on_model_built(self, built: Any) -> None:
        if built is None:
            self.layer_panel.set_tree(
                None, "The model could not be built; see the message in the Model panel."
            )
        else:
            self.freeze_editor.show_model(built)
        self._update_actions()

    # ================================================================= the Run menu

    def start_training(self) -> bool:
        """Start (the Run menu's Start, Ctrl+R): False, and why on screen, when it cannot."""
        return self.training.start()

    def toggle_pause(self) -> None:
        self.training.toggle_pause()

    def stop_training(self) -> None:
        self.training.stop()

    # ================================================================= other tabs

    def show_run_evaluation(self, record: Any) -> None:
        """Show a finished run's evaluation (a :class:`~desktop_tl.core.run_history.RunRecord`)."""
        summary = record.summary
        try:
            self.evaluation_view.set_results(
                list(record.classes),
                summary["confusion"],
                summary.get("per_class_precision", []),
                summary.get("per_class_recall", []),
                summary.get("misclassified", []),
                caption=f"after the last epoch ({record.epochs_completed}) of the run {record.name}",
            )
        except (KeyError, ValueError, TypeError) as exc:
            self.runs_view.show_message("error", f"The evaluation of {record.name} cannot be shown: {exc}")
            return
        self.evaluation_view.show_run(record.path, name=record.name)  # the chosen checkpoint's
        self.show_tab(self.evaluation_view)

    def predict_with_run(self, record: Any) -> None:
        """Predict with a saved run's chosen checkpoint (best or last)."""
        self.prediction_view.load_run(record.path, label=f"saved run: {record.name}")
        self.show_tab(self.prediction_view)

    def _evaluate_prediction_checkpoint(self, kind: str) -> None:
        """The checkpoint chosen in the Prediction tab: its run is evaluated with it, and
        the evaluated model comes back to predict."""
        folder = self.prediction_view.run_folder
        if folder:
            self.evaluation_view.show_run(folder, checkpoint=kind)
        else:
            self.evaluation_view.set_checkpoint(kind)

    def _use_evaluated_model(self, predictor: Any, label: str) -> None:
        """Predict with the checkpoint the Evaluation tab has just evaluated (unless the
        Prediction tab holds that checkpoint already)."""
        current = self.prediction_view.predictor
        run_dir = self.evaluation_view.run_dir
        if current is None or getattr(current, "source", None) != predictor.source:
            self.prediction_view.set_predictor(predictor, label)
        self.prediction_view.show_checkpoint(predictor.checkpoint, run_dir)

    # ================================================================= state

    @property
    def run_state(self) -> str:
        """loading (until :meth:`set_backend`), then the run's: idle, running, paused or stopping."""
        return "loading" if self.host is None else self.training.state

    def _show_run_state(self, _state: str = "") -> None:
        state = self.run_state
        training = state in ("running", "paused", "stopping")
        self.data_panel.setEnabled(self.host is not None and not training)
        self.model_panel.setEnabled(self.host is not None and not training)
        self.layer_panel.set_training(training)
        self.space_shortcut.setEnabled(state in ("running", "paused"))
        for action in (self.new_action, self.open_action):
            action.setEnabled(not training)
        labels = {
            "loading": "Loading PyTorch…",
            "running": "Training…",
            "paused": "Paused",
            "stopping": "Stopping…",
        }
        if state in labels:
            self.state_label.setText(labels[state])
        self._update_actions()
        if state == "idle" and self._close_when_stopped:
            QTimer.singleShot(0, self.close)

    def _update_actions(self) -> None:
        ok, why = self.training.can_start()
        self.training_panel.set_run_state(
            self.run_state if self.run_state != "loading" else "idle", can_start=ok, why_not=why
        )
        self.start_action.setEnabled(ok)
        self.start_refused_shortcut.setEnabled(not ok)
        tip = "Start training (Ctrl+R)" if ok or not why else f"Start training (Ctrl+R): not now. {why}"
        self.start_action.setToolTip(tip)
        self.start_action.setStatusTip(tip)
        self.pause_action.setEnabled(self.run_state in ("running", "paused"))
        self.stop_action.setEnabled(self.run_state in ("running", "paused"))
        # A reason not to start is shown even after a run (e.g. another backbone chosen
        # that cannot be built); "Ready" only replaces the message of no finished run.
        if self.run_state in ("idle", "loading") and (self.training.last_result is None or not ok):
            if ok:
                self.training_panel.show_message(
                    "info", "Ready. Press Start training (Ctrl+R); the curves appear below."
                )
                self.state_label.setText("Ready")
            elif why:
                self.training_panel.show_message("info", why)
                if self.host is not None:
                    self.state_label.setText("Not ready: " + why[0].lower() + why[1:])
        ready = self.is_ready()
        if ready and not self._ready_announced:
            self._ready_announced = True
            self.ready_to_train.emit()
        elif not ready:
            self._ready_announced = False

    def is_ready(self) -> bool:
        """Start is possible and the model shown in the tree is the one that will train."""
        return (
            self.training.can_start()[0] and not self.model_panel.busy and self.model_panel.built is not None
        )

    # ================================================================= other windows

    def show_plugins(self) -> None:
        if self.host is None:
            return
        from .plugins_dialog import PluginsDialog  # it reads the plugin manager, not needed sooner

        dialog = PluginsDialog(self.host, self.settings, self)
        dialog.exec()

    def show_status(self, text: str) -> None:
        """A short line in the status bar (what just happened)."""
        self.state_label.setText(text)

    def show_device(self, text: str = "") -> None:
        """The device a run trains on, in the status bar; by default the automatic one."""
        self.device_label.setText(f"Device: {text or self.devices.get('auto', '') or 'cpu'}")

    def log(self, level: str, message: str) -> None:
        self.log_view.append(level, message)

    def show_error(self, title: str, message: str) -> None:
        self.log("warning", f"{title}: {message}")
        self.state_label.setText(title)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()

    def refuse_while_training(self, what: str) -> bool:
        if self.training.is_active():
            self.training_panel.show_message("warning", f"Stop the run before you {what}.")
            return True
        return False

    # ================================================================= drag and drop

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        path = _dropped_path(event)
        if (
            path
            and self.host is not None
            and not self.training.is_active()
            and self.data_panel.accepts_drop(path)
        ):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        path = _dropped_path(event)
        if path and self.data_panel.accepts_drop(path):
            event.acceptProposedAction()
            self.open_dataset(path)

    # ================================================================= closing

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        if self.isWindowModified() and not self._close_when_stopped:
            # Ask first (the box is window-modal, not blocking): Save or Discard closes
            # again, Cancel keeps the window and the run as they are.
            event.ignore()
            self.project.resolve_unsaved("close the window", self.close)
            return
        if self.training.is_active():
            event.ignore()
            if self._close_when_stopped:
                return
            if not self._ask_stop_and_close():
                return
            self._close_when_stopped = True
            self.training.stop()
            self.training_panel.show_message(
                "warning", "Stopping the run; the window closes when it has stopped."
            )
            return
        self.data_panel.cancel(quiet=True)
        self.model_panel.cancel()
        cancel_and_wait_all(10_000)
        if self.settings is not None:
            self.settings.save_window(self)
            self.settings.sync()
        self.project.end_autosave()
        event.accept()

    def event(self, event: QEvent) -> bool:
        # Deleted without a close that went through (one still asking to save, say): stop
        # the panels' background work first, so that no result arrives for a deleted panel.
        if event.type() == QEvent.Type.DeferredDelete:
            self.data_panel.cancel(quiet=True)
            self.model_panel.cancel()
        return super().event(event)

    def _ask_stop_and_close(self) -> bool:
        if self.confirm_close is not None:
            return bool(self.confirm_close())
        answer = QMessageBox.question(
            self,
            "Stop training?",
            "A run is in progress. Stop it and close the window?\n\n"
            "The last checkpoint is kept in the run folder.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(1600, 980)


def _action(parent: QWidget, text: str, shortcut: Any, slot: Callable[[], Any]) -> QAction:
    action = QAction(text, parent)
    if shortcut is not None:
        action.setShortcut(shortcut)
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    action.triggered.connect(lambda _checked=False: slot())
    parent.addAction(action)
    return action


def _dropped_path(event: QDragEnterEvent | QDropEvent) -> str | None:
    mime = event.mimeData()
    if not mime.hasUrls():
        return None
    urls = [url for url in mime.urls() if url.isLocalFile()]
    return urls[0].toLocalFile() if len(urls) == 1 else None
