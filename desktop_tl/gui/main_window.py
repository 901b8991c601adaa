"""The main window: the tabs (window_tabs), the menus, and the flow of a run.

(About 800 lines: starting, pausing and stopping a run, the engine's events and freeze
changes during a run still live here, until they move into a training controller; the
project file is handled by project_controller, the layout by window_tabs.)

The window holds no training state of its own. It assembles a
:class:`~desktop_tl.core.config.RunConfig` from its panels, starts a
:class:`~desktop_tl.gui.training_worker.TrainingSession`, shows the events the engine
reports and sends it commands (pause, stop, freeze changes). It is shown before torch is
imported: the panels wait, disabled, until :meth:`set_backend` hands them the plugin host.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QCoreApplication, QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox, QStatusBar, QWidget

from ..core.config import RunConfig
from ..core.events import Cancel, Pause, Resume, SetFreeze
from ..errors import UserError
from .background import cancel_and_wait_all
from .data_panel import DataPanel
from .evaluation_view import EvaluationView
from .export_dialog import open_export_dialog
from .help_dialog import install_help_menu
from .layer_tree import LayerTreePanel, freeze_changes
from .log_view import LogView
from .model_panel import ModelPanel
from .plots import TrainingPlots, freeze_change_text
from .prediction_view import PredictionView
from .preferences_dialog import install_preferences
from .project_controller import ProjectController
from .runs_view import RunsView
from .training_panel import TrainingPanel
from .training_worker import TrainingSession
from .window_tabs import MainTabs, build_train_page


class MainWindow(QMainWindow):
    """The application window. ``settings`` is an :class:`~desktop_tl.gui.settings.AppSettings`
    (or None in tests that do not care)."""

    backend_ready = Signal()
    ready_to_train = Signal()  # data checked, model built, Start enabled
    run_finished = Signal(object)  # RunFinished, after the window has shown it

    def __init__(self, settings: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.host: Any = None
        self.devices: dict[str, Any] = {}
        self.config = RunConfig()
        self.session: TrainingSession | None = None
        self.last_result: Any = None
        self.run_dir = ""  # the folder of the latest run
        self.launcher: Any = None  # the app's start-up helper (desktop_tl.gui.app.Launcher)
        self.class_names: list[str] = []
        self._run_class_names: list[str] = []  # of the run going, as the engine sent them
        self.run_state = "loading"  # loading, idle, running, paused, stopping
        #: Called instead of the question box when the window is closed during a run;
        #: returns True to stop the run and close (tests set it).
        self.confirm_close: Callable[[], bool] | None = None
        self._close_when_stopped = False
        self._pending_config: RunConfig | None = None
        self._epochs = 0
        self._ready_announced = False
        # Freeze changes during a run: those sent and not yet taken by the engine (with
        # the freeze settings from before each), how many it has taken, and the state
        # it last reported (None until it reports one).
        self._freeze_unapplied: list[tuple[dict[str, bool], Any]] = []
        self._freeze_taken = 0
        self._engine_freeze: dict[str, bool] | None = None
        # The dataset (path, loader) and model settings the results on screen came from:
        # another dataset or model clears them (None while no run has shown any).
        self._results_of: tuple[tuple[str, str], Any] | None = None

        self.setWindowTitle("desktop-tl[*]")
        self.setAcceptDrops(True)
        self.project = ProjectController(self, settings)
        self._build_panels()
        self._build_layout()
        self._build_actions()
        self._build_status_bar()
        self._connect_panels()
        self._set_state("loading")
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
        self.run_finished.connect(lambda _event: self.runs_view.refresh())
        self.data_panel.prepared_changed.connect(self._on_prepared_changed)
        self.data_panel.busy_changed.connect(lambda _busy: self._update_actions())
        self.data_panel.config_changed.connect(self.project.mark_modified)
        self.data_panel.log.connect(self.log)
        self.model_panel.config_changed.connect(self._on_model_config_changed)
        self.model_panel.model_built.connect(self._on_model_built)
        self.model_panel.busy_changed.connect(self._on_model_busy)
        self.model_panel.weights_changed.connect(self._update_actions)
        self.model_panel.log.connect(self.log)
        self.layer_panel.toggled.connect(self._on_layer_toggled)
        self.layer_panel.preset_chosen.connect(self._on_preset_chosen)
        self.training_panel.start_requested.connect(self.start_training)
        self.training_panel.export_requested.connect(self.export_action.trigger)
        self.training_panel.pause_requested.connect(self.toggle_pause)
        self.training_panel.stop_requested.connect(self.stop_training)
        self.training_panel.config_changed.connect(self.project.mark_modified)
        self.training_panel.config_changed.connect(self._preview_epoch_axis)

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
        self.device_label.setText(f"Device: {auto or 'cpu'}")
        for record in getattr(host, "records", []):
            if record.status in ("failed", "refused"):
                self.log("warning", f"{record.label} {record.status}: {record.summary or ''}")
        for problem in getattr(host, "problems", []):
            self.log("warning", problem)
        self._set_state("idle")
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

    def current_config(self) -> RunConfig:
        """The run configuration the panels describe right now."""
        config = copy.deepcopy(self.config)
        if self.host is not None:
            self.data_panel.apply_to(config.data)
            self.model_panel.apply_to(config.model)
        self.training_panel.apply_to(config.train)
        return config

    def load_config(self, config: RunConfig, project_path: Path | None = None) -> None:
        """Show a configuration in every panel (waits for the backend if need be); the
        previous project's results go."""
        self.project.set_path(project_path)
        self.clear_results("another project was opened" if project_path else "a new project")
        self.prediction_view.clear()
        if self.host is None:
            self._pending_config = config
            self.config = copy.deepcopy(config)
            self.training_panel.load_from(config.train)
            self._preview_epoch_axis()
            return
        self.config = copy.deepcopy(config)
        self.training_panel.load_from(config.train)
        self._preview_epoch_axis()
        self.layer_panel.set_preset(config.freeze.preset, config.freeze.overrides)
        self.model_panel.load_from(config.model)
        self.data_panel.load_from(config.data)
        self.model_panel.request_build(len(self.class_names) or None)
        self.setWindowModified(False)
        self._update_actions()

    def _preview_epoch_axis(self) -> None:
        """Before the first run, the empty plots already span the epochs it will train."""
        if not self._training_active() and self.plots.is_empty():
            self.plots.set_planned_epochs(self.training_panel.epochs())

    def open_dataset(self, path: str | os.PathLike[str]) -> None:
        self.data_panel.set_path(path)

    def clear_curves(self) -> None:
        """Empty plots for a new project, already spanning the epochs it will train."""
        self.plots.reset()
        self.plots.set_message("Curves appear here once training starts.")
        self._preview_epoch_axis()

    def has_results(self) -> bool:
        """Whether a run's status, curves or evaluation are on screen."""
        return self.last_result is not None or not self.plots.is_empty() or self.evaluation_view.has_results()

    def clear_results(self, why: str) -> None:
        """Take the last run's status line, progress, curves and evaluation off the
        screen: they belong to another project, dataset or model. The run itself stays
        in the Runs tab. ``why`` says what changed (for the log)."""
        if self._training_active():
            return
        had_results = self.has_results()
        self._results_of = None
        self.last_result = None
        self.training_panel.reset_progress()
        self.clear_curves()
        self.evaluation_view.clear()
        self.tabs.forget_new_results()
        if self.host is not None:  # the run's device and precision: not this project's
            self.device_label.setText(f"Device: {self.devices.get('auto', '') or 'cpu'}")
        if had_results:
            self.log(
                "info",
                f"cleared the last run's results from the window ({why}); the Runs tab still has that run",
            )
        self._update_actions()

    def _results_source(self) -> tuple[tuple[str, str], Any]:
        """What results shown now would have to come from: the dataset and the model."""
        config = self.current_config()
        return (config.data.path, config.data.loader), config.model

    def _clear_results_if_changed(self, what: str) -> None:
        if self._results_of is None or self._training_active():
            return
        data, model = self._results_source()
        if what == "dataset" and data != self._results_of[0]:
            self.clear_results("the dataset changed")
        elif what == "model" and model != self._results_of[1]:
            self.clear_results("the model changed")

    # ================================================================= data and model

    def _on_prepared_changed(self, prepared: Any) -> None:
        had_classes = bool(self.class_names)
        self.class_names = list(prepared.class_names) if prepared is not None else []
        if prepared is None and had_classes:
            self.model_panel.request_build(0)  # no dataset: no class count to show
        self._clear_results_if_changed("dataset")
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
        self._clear_results_if_changed("model")
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
            self._update_actions()
            return
        from ..core.layers import apply_freeze, backbone_stage_names, layer_tree

        freeze = self.config.freeze
        try:
            apply_freeze(built.model, freeze.preset, freeze.overrides)
        except UserError as exc:
            # Layers named for another backbone: keep the preset, drop the hand edits.
            self.log("warning", f"freeze overrides dropped: {exc}")
            freeze.overrides = {}
            apply_freeze(built.model, freeze.preset, {})
        self.layer_panel.set_stage_names(backbone_stage_names(built.model))
        self.layer_panel.set_tree(layer_tree(built.model))
        self.layer_panel.set_preset(freeze.preset, freeze.overrides)
        self._update_actions()

    # ----------------------------------------------------------------- freezing

    def _display_model(self) -> Any:
        built = self.model_panel.built
        return built.model if built is not None else None

    def _on_layer_toggled(self, name: str, trainable: bool) -> None:
        model = self._display_model()
        if model is None:
            return
        from ..core.layers import apply_freeze, apply_freeze_map, layer_tree

        freeze_before = copy.deepcopy(self.config.freeze)
        freeze = self.config.freeze
        overrides = {k: v for k, v in freeze.overrides.items() if k != name and not k.startswith(name + ".")}
        overrides[name] = trainable
        freeze.overrides = overrides
        if self._training_active():
            apply_freeze_map(model, {name: trainable})
            self._send_freeze({name: trainable}, freeze_before)
        else:
            apply_freeze(model, freeze.preset, freeze.overrides)
            self.project.mark_modified()
        self.layer_panel.update_states(layer_tree(model))
        self.layer_panel.set_preset(freeze.preset, freeze.overrides)

    def _on_preset_chosen(self, preset: str) -> None:
        model = self._display_model()
        freeze_before = copy.deepcopy(self.config.freeze)
        freeze = self.config.freeze
        freeze.preset, freeze.overrides = preset, {}
        self.layer_panel.set_preset(preset, {})
        if model is None:
            return
        from ..core.layers import apply_freeze, layer_tree

        before = layer_tree(model)
        apply_freeze(model, preset, {})
        after = layer_tree(model)
        if self._training_active():
            changes = freeze_changes(before, after)
            if changes:
                self._send_freeze(changes, freeze_before)
        else:
            self.project.mark_modified()
        self.layer_panel.update_states(after)

    def _send_freeze(self, changes: dict[str, bool], freeze_before: Any) -> None:
        """Send a change the tree already shows; until the engine reports it applied, it
        is kept with the freeze settings from before it, to undo it if it never is."""
        assert self.session is not None
        self.session.send(SetFreeze(dict(changes)))
        self._freeze_unapplied.append((dict(changes), freeze_before))
        self.layer_panel.set_pending(changes)
        described = ", ".join(f"{n} {'trainable' if v else 'frozen'}" for n, v in changes.items())
        self.log("info", f"freeze change sent: {described} (applies at the next batch)")

    def _show_engine_freeze(self) -> None:
        """Show in the tree the state the engine last reported, with the changes sent
        since then on top (marked as applying)."""
        model = self._display_model()
        if model is None or self._engine_freeze is None:
            return
        from ..core.layers import apply_freeze_map, layer_tree

        apply_freeze_map(model, {"": False})  # the reported state names every parameter
        apply_freeze_map(model, self._engine_freeze)
        pending: set[str] = set()
        for changes, _freeze_before in self._freeze_unapplied:
            apply_freeze_map(model, changes)
            pending.update(changes)
        self.layer_panel.clear_pending()
        self.layer_panel.set_pending(pending)
        self.layer_panel.update_states(layer_tree(model))

    def _drop_unapplied_freeze(self) -> None:
        """At the end of a run, undo the changes the engine never took (sent after its
        last batch): the tree and the settings then show what the run trained."""
        if not self._freeze_unapplied:
            return
        count = len(self._freeze_unapplied)
        self.config.freeze = self._freeze_unapplied[0][1]
        self._freeze_unapplied = []
        model = self._display_model()
        if model is not None:
            from ..core.layers import apply_freeze, layer_tree

            if self._engine_freeze is not None:
                self._show_engine_freeze()
            else:  # the engine took no change, so it trained the settings it started with
                apply_freeze(model, self.config.freeze.preset, self.config.freeze.overrides)
                self.layer_panel.update_states(layer_tree(model))
        self.layer_panel.set_preset(self.config.freeze.preset, self.config.freeze.overrides)
        self.log(
            "warning",
            f"{count} freeze change{'s' if count != 1 else ''} came after the "
            "last batch and {} not applied; the layer tree shows what the run "
            "trained".format("were" if count != 1 else "was"),
        )

    # ================================================================= training

    def can_start(self) -> tuple[bool, str]:
        """Whether Start may be pressed, and what to do first when not."""
        if self.host is None:
            return False, "Loading PyTorch and the plugins…"
        if self._training_active():
            return False, "A run is going: stop it (Ctrl+.) before starting another."
        if self.data_panel.busy:
            return False, "Checking the images…"
        if self.data_panel.prepared is None:
            return False, "Choose a dataset folder (1 · Data) to begin: one subfolder per class."
        if not self.model_panel.model_name():
            return False, "Choose a backbone (2 · Model)."
        if not self.model_panel.busy and self.model_panel.build_error:
            return False, (
                f"The model could not be built: {self.model_panel.build_error.rstrip('.')}. "
                "Choose another backbone (2 · Model)."
            )
        ok, why = self.model_panel.weights_ok()
        if not ok:
            return False, why[0].upper() + why[1:] + "."
        return True, ""

    def start_training(self) -> bool:
        ok, why = self.can_start()
        if not ok:
            if why:
                if not self._training_active():
                    self.training_panel.show_message("warning", why)
                self.state_label.setText("Cannot start training: " + why[0].lower() + why[1:])
            return False
        config = self.current_config()
        config.out = ""  # every Start makes a new run folder
        try:
            config.validate()
        except UserError as exc:
            self.training_panel.show_message("error", str(exc))
            return False
        self.config.freeze = copy.deepcopy(config.freeze)
        self._epochs = config.train.epochs
        self.last_result = None
        self._results_of = ((config.data.path, config.data.loader), copy.deepcopy(config.model))
        # The old curves go now; the axes are fitted to the run once it has started, not
        # while the engine is checking the images.
        self.plots.reset()
        self.plots.set_message("Preparing the run…")
        self.show_tab(self.train_page)
        self.training_panel.show_message("info", "Starting: checking images and building the model…")
        self.layer_panel.clear_pending()
        self._freeze_unapplied = []
        self._freeze_taken = 0
        self._engine_freeze = None
        # The data panel has checked and split the images already: the engine reuses
        # that unless the data settings differ from the ones it checked with.
        session = TrainingSession(
            config,
            self.host,
            parent=self,
            prepared=self.data_panel.prepared,
            prepared_with=self.data_panel.prepared_with,
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
        self.log(
            "info",
            f"starting a run: {config.model.backbone}, "
            f"{config.train.epochs} epochs, freeze {config.freeze.preset}",
        )
        # Paint the new state (panels locked, Stop enabled) now, while the GUI thread has
        # the CPUs to itself: the engine starts by decoding every image on a pool of
        # threads, and a repaint competing with them takes several times as long.
        flush_pending_paint(self)
        session.start()
        return True

    def toggle_pause(self) -> None:
        if self.session is None:
            return
        if self.run_state == "running":
            self.session.send(Pause())
            self._set_state("paused")
            self.training_panel.show_message(
                "info", "Paused. Resume with Space or Ctrl+P; layers can still be ticked."
            )
        elif self.run_state == "paused":
            self.session.send(Resume())
            self._set_state("running")
            self.training_panel.show_message("info", "Training…")

    def stop_training(self) -> None:
        if self.session is None or self.run_state not in ("running", "paused"):
            return
        self.session.send(Cancel())
        self._set_state("stopping")
        self.training_panel.show_message("warning", "Stopping after the current batch…")

    def _training_active(self) -> bool:
        return self.session is not None and self.run_state in ("running", "paused", "stopping")

    # ----------------------------------------------------------------- engine events

    def _on_stage(self, event: Any) -> None:
        if self.run_state in ("running", "paused"):
            self.training_panel.show_stage(event.message, event.done, event.total)
            self.state_label.setText(event.message)

    def _on_run_started(self, event: Any) -> None:
        self._epochs = event.epochs
        self.plots.set_batches_per_epoch(event.batches_per_epoch)
        self.plots.set_planned_epochs(event.epochs)
        self.plots.set_message(
            f"Training {event.num_train:,} images, validating on "
            f"{event.num_val:,}; the first epoch's points appear after it."
        )
        self.device_label.setText(f"Device: {event.device} ({event.precision})")
        self.class_names = list(event.class_names)
        self._run_class_names = list(event.class_names)  # the panel may re-check data meanwhile
        if self.run_state == "running":
            self.training_panel.show_message("info", f"Training in {event.run_dir}")
        self.run_dir = event.run_dir

    def _on_batches_ready(self) -> None:
        if self.session is None:
            return
        batches = self.session.worker.take_batches()
        if not batches:
            return
        for batch in batches:
            self.plots.add_batch(batch.step, batch.loss, batch.batches_per_epoch)
        last = batches[-1]
        self.training_panel.show_batch(last, self._epochs, paused=self.run_state == "paused")
        if self.run_state == "running":
            self.state_label.setText(f"Training · epoch {last.epoch + 1}/{self._epochs}")

    def _on_epoch_ended(self, event: Any) -> None:
        metrics = event.metrics
        self.plots.add_epoch(event.epoch, metrics)
        confusion = metrics.get("confusion")
        if confusion:
            self.evaluation_view.set_results(
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
        self._show_engine_freeze()
        if not event.changes:  # every change was refused; the engine logged why
            return
        changed = freeze_change_text(event.changes)
        self.plots.add_freeze_marker(event.step, changed)
        cache = f"; feature cache {event.feature_cache}" if event.feature_cache else ""
        self.log(
            "info",
            f"freeze change applied at step {event.step} "
            f"(epoch {event.epoch + 1}): {changed}; {event.trainable_params:,} of "
            f"{event.total_params:,} parameters trainable{cache}",
        )

    def _on_log_message(self, event: Any) -> None:
        self.log(event.level, event.message)

    def _on_run_finished(self, event: Any) -> None:
        self._on_batches_ready()  # anything still queued
        self.plots.redraw_if_dirty()
        self.last_result = event
        summary = event.summary or {}
        status = event.status
        if status in ("completed", "early-stopped"):
            acc = summary.get("val_acc")
            best = summary.get("best_val_acc")
            text = (
                f"Finished {summary.get('epochs_completed', '?')} epochs"
                + (f": validation accuracy {acc:.1%}" if acc is not None else "")
                + (f" (best {best:.1%})" if best is not None else "")
                + (f". {event.reason}" if event.reason else "")
                + f". Saved in {event.run_dir}"
            )
            self.training_panel.show_message("good", text)
            self.state_label.setText("Finished")
        elif status == "cancelled":
            done = summary.get("epochs_completed") or 0
            if done:
                text = f"Stopped after {done} epoch{'' if done == 1 else 's'}; the last checkpoint was kept."
            else:
                text = "Stopped before the first epoch ended, so there is no checkpoint."
            self.training_panel.show_message("warning", text)
            self.state_label.setText("Stopped")
        else:
            self.training_panel.show_message("error", f"Training failed: {event.reason}")
            self.state_label.setText("Training failed")
        self.training_panel.show_finished(
            status,
            summary.get("epochs_completed") or 0,
            summary.get("train_seconds"),
            has_model=bool(event.run_dir) and (Path(event.run_dir) / "checkpoints" / "best").is_dir(),
        )
        if summary.get("confusion"):
            self.evaluation_view.set_results(
                list(summary.get("classes") or self.class_names),
                summary["confusion"],
                summary.get("per_class_precision", []),
                summary.get("per_class_recall", []),
                summary.get("misclassified", []),
                caption=f"after the last epoch ({summary.get('epochs_completed')}) of the run "
                f"in {Path(event.run_dir).name}",
            )
            self.tabs.mark_new_results()
        if event.run_dir and summary.get("epochs_completed"):
            self.evaluation_view.show_run(event.run_dir, name=f"just trained · {Path(event.run_dir).name}")
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
        self.layer_panel.clear_pending()
        if event is not None:
            self.run_finished.emit(event)
        if self._close_when_stopped:
            QTimer.singleShot(0, self.close)

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

    def _set_state(self, state: str) -> None:
        self.run_state = state
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

    def _update_actions(self) -> None:
        ok, why = self.can_start()
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
        if self.run_state in ("idle", "loading") and (self.last_result is None or not ok):
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
        return self.can_start()[0] and not self.model_panel.busy and self.model_panel.built is not None

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

    def log(self, level: str, message: str) -> None:
        self.log_view.append(level, message)

    def show_error(self, title: str, message: str) -> None:
        self.log("warning", f"{title}: {message}")
        self.state_label.setText(title)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()

    def refuse_while_training(self, what: str) -> bool:
        if self._training_active():
            self.training_panel.show_message("warning", f"Stop the run before you {what}.")
            return True
        return False

    # ================================================================= drag and drop

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        path = _dropped_path(event)
        if (
            path
            and self.host is not None
            and not self._training_active()
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
        if self.session is not None and self.session.is_running():
            event.ignore()
            if self._close_when_stopped:
                return
            if not self._ask_stop_and_close():
                return
            self._close_when_stopped = True
            self.session.send(Cancel())
            self._set_state("stopping")
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


def flush_pending_paint(window: QWidget) -> None:
    """Lay out and paint what has changed in ``window`` now, instead of on a later turn
    of the event loop (only the changed regions, unlike ``repaint()``)."""
    QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
    QCoreApplication.sendPostedEvents(window, QEvent.Type.UpdateRequest)


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
