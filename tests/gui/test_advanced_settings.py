"""The Train tab's "Advanced settings": every remaining engine setting has a control that
round-trips, cannot leave the range validate() allows, follows the optimiser and schedule,
is kept in a saved project, reaches a real run's run.toml and fits from 1024x640 up
(screenshots in tests/screenshots/)."""

from __future__ import annotations

import copy
from dataclasses import fields
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QScrollArea

from desktop_tl.core.config import (
    MAX_AUGMENTED_VIEWS,
    MAX_SEED,
    ConfigError,
    DataConfig,
    RunConfig,
    TrainConfig,
)
from desktop_tl.gui.layout_check import describe_problems, layout_problems
from window_helpers import configure_fast_run, save_screenshot

RUN_TIMEOUT_MS = 120_000


def non_default_config() -> RunConfig:
    """A configuration whose every advanced setting differs from its default (with SGD and
    the step schedule, so that each of them applies)."""
    config = RunConfig()
    train = config.train
    train.optimizer = "sgd"
    train.schedule = "step"
    train.weight_decay = 5e-4
    train.momentum = 0.85
    train.step_size = 3
    train.gamma = 0.5
    train.early_stopping_patience = 4
    train.label_smoothing = 0.15
    train.seed = MAX_SEED  # past a 32-bit signed int: the seed control must hold it
    train.feature_cache = "off"
    train.cache_budget_mb = 2048
    train.feature_cache_reuse = False
    train.augmented_views = 5
    train.tensorboard = True
    config.data.test_fraction = 0.15
    config.data.num_workers = 3
    assert all(
        getattr(train, name) != getattr(RunConfig().train, name)
        for name in ("weight_decay", "momentum", "step_size", "gamma", "early_stopping_patience")
        + ("label_smoothing", "seed", "feature_cache", "cache_budget_mb", "feature_cache_reuse")
        + ("augmented_views", "tensorboard")
    )
    return config


def test_every_engine_setting_has_a_control_with_a_tooltip(qtbot):
    from desktop_tl.gui.advanced_settings import AdvancedSettings

    advanced = AdvancedSettings()
    qtbot.addWidget(advanced)
    main_grid = {"epochs", "batch_size", "lr", "backbone_lr_mult", "optimizer", "schedule"}
    main_grid |= {"device", "precision"}
    data_panel = {"path", "loader", "val_fraction", "split_seed", "augment", "exclude"}
    engine = {f.name for f in fields(TrainConfig)} - main_grid
    engine |= {f.name for f in fields(DataConfig)} - data_panel
    assert set(advanced._rows) == engine  # a new engine setting needs a control here
    for name, (label, control) in advanced._rows.items():
        assert label.buddy() is control
        assert len(control.toolTip()) > 40, name  # says what it does, not just its name


def test_weight_decay_steps_one_two_five_down_to_zero(qtbot):
    from desktop_tl.gui.advanced_settings import AdvancedSettings

    advanced = AdvancedSettings()
    qtbot.addWidget(advanced)
    spin = advanced.weight_decay_spin
    assert spin.value() == 0.0 and spin.text() == "0"
    seen = []
    for _ in range(4):
        spin.stepBy(1)
        seen.append(spin.value())
    assert seen == pytest.approx([1e-6, 2e-6, 5e-6, 1e-5])
    assert spin.text() == "1e-05"
    spin.stepBy(-4)
    assert spin.value() == 0.0
    spin.stepBy(-1)
    assert spin.value() == 0.0  # never below what validate() allows
    spin.lineEdit().setText("5e-4")
    spin.interpretText()
    assert spin.value() == pytest.approx(5e-4)


def test_every_advanced_setting_round_trips(qtbot, window):
    config = non_default_config()
    window.load_config(config)
    assert window.current_config().train == config.train
    assert not window.isWindowModified()  # showing a configuration is not an edit
    # The data settings of the section go to and come from the data section.
    panel = window.training_panel
    panel.load_data_from(config.data)
    data = DataConfig()
    panel.apply_data_to(data)
    assert (data.test_fraction, data.num_workers) == (0.15, 3)
    assert not window.isWindowModified()

    # The settings that do not apply keep their values (they come back with SGD or Step).
    other = copy.deepcopy(config)
    other.train.optimizer, other.train.schedule = "adamw", "cosine"
    window.load_config(other)
    assert window.current_config().train == other.train

    # Back to the defaults for a new project.
    window.load_config(RunConfig())
    assert window.current_config().train == RunConfig().train
    panel.load_data_from(RunConfig().data)
    panel.apply_data_to(data)
    assert (data.test_fraction, data.num_workers) == (0.0, -1)


def test_the_test_split_and_loader_workers_reach_the_window_config(qtbot, window):
    config = non_default_config()
    window.load_config(config)
    panel = window.training_panel
    assert panel.advanced.test_spin.value() == 15.0
    panel.advanced.workers_spin.setValue(0)
    shown = window.current_config().data
    assert (shown.test_fraction, shown.num_workers) == (0.15, 0)


def test_a_test_split_set_here_splits_the_data_panel_s_images_again(qtbot, window, tmp_path):
    from helpers_data import make_image_folder

    from desktop_tl.core.config import RunConfig

    make_image_folder(tmp_path / "flat", {"red": 10, "green": 10, "blue": 10})  # no split of its own
    config = RunConfig()
    config.data.path = str(tmp_path / "flat")
    window.load_config(config)
    data_panel = window.data_panel
    qtbot.waitUntil(lambda: data_panel.prepared is not None, timeout=30_000)
    assert len(data_panel.prepared.test) == 0
    window.training_panel.advanced.test_spin.setValue(20.0)
    qtbot.waitUntil(
        lambda: data_panel.prepared is not None and len(data_panel.prepared.test) == 6, timeout=30_000
    )  # 20 % of each class's 10 images, counted where the user looks


def test_edits_mark_the_project_changed_and_the_summary_names_them(qtbot, window, tiny_dataset):
    configure_fast_run(window, qtbot, tiny_dataset)
    advanced = window.training_panel.advanced
    assert not advanced.is_expanded() and not advanced.form.isVisible()  # collapsed at first
    assert advanced.summary_label.isVisible()
    # The fast run reads images on the main process (configure_fast_run sets no workers).
    assert advanced.summary_label.text() == "Advanced: 0 loader workers"
    assert not window.isWindowModified()

    with qtbot.waitSignal(window.training_panel.config_changed, timeout=1000):
        advanced.label_smoothing_spin.setValue(0.1)
    assert window.isWindowModified()
    advanced.seed_spin.setValue(3)
    assert advanced.summary_label.text() == "Advanced: label smoothing 0.1, seed 3, 0 loader workers"
    config = window.current_config()
    assert config.train.label_smoothing == 0.1 and config.train.seed == 3

    # Momentum differs but does not apply with Adam, so the summary leaves it out.
    advanced.momentum_spin.setValue(0.5)
    assert "momentum" not in advanced.summary_label.text()
    panel = window.training_panel
    panel.optimizer_combo.setCurrentIndex(panel.optimizer_combo.findData("sgd"))
    assert "momentum 0.5" in advanced.summary_label.text()
    advanced.workers_spin.setValue(2)
    assert advanced.summary_label.text().endswith("2 loader workers")

    qtbot.mouseClick(advanced.toggle, Qt.MouseButton.LeftButton)
    assert advanced.is_expanded() and advanced.form.isVisible()
    assert not advanced.summary_label.isVisible()  # the form itself shows the values
    assert advanced.toggle.arrowType() == Qt.ArrowType.DownArrow
    qtbot.mouseClick(advanced.toggle, Qt.MouseButton.LeftButton)
    assert not advanced.form.isVisible() and advanced.summary_label.isVisible()


def test_dependent_settings_follow_the_optimiser_and_schedule(qtbot, window):
    window.load_config(RunConfig())
    panel = window.training_panel
    advanced = panel.advanced
    advanced.set_expanded(True)
    momentum, step_size, gamma = advanced.momentum_spin, advanced.step_size_spin, advanced.gamma_spin

    assert not momentum.isEnabled() and "Only SGD uses momentum" in momentum.toolTip()
    assert not step_size.isEnabled() and "step decay schedule only" in step_size.toolTip()
    assert not gamma.isEnabled()
    panel.optimizer_combo.setCurrentIndex(panel.optimizer_combo.findData("sgd"))
    assert momentum.isEnabled() and "Only SGD" not in momentum.toolTip()
    panel.schedule_combo.setCurrentIndex(panel.schedule_combo.findData("step"))
    assert step_size.isEnabled() and gamma.isEnabled()
    panel.schedule_combo.setCurrentIndex(panel.schedule_combo.findData("cosine"))
    assert not step_size.isEnabled() and not gamma.isEnabled()
    panel.optimizer_combo.setCurrentIndex(panel.optimizer_combo.findData("adamw"))
    assert not momentum.isEnabled()

    # Without the feature cache there is nothing to reuse and no augmented views to keep.
    cache = advanced.feature_cache_combo
    cache.setCurrentIndex(cache.findData("off"))
    assert not advanced.reuse_check.isEnabled() and not advanced.views_spin.isEnabled()
    assert "feature cache is off" in advanced.views_spin.toolTip()
    cache.setCurrentIndex(cache.findData("auto"))
    assert advanced.reuse_check.isEnabled() and advanced.views_spin.isEnabled()

    # A loaded project decides too, and a run locks the form (it can still be read).
    sgd_step = RunConfig()
    sgd_step.train.optimizer, sgd_step.train.schedule = "sgd", "step"
    window.load_config(sgd_step)
    assert momentum.isEnabled() and step_size.isEnabled()
    panel.set_run_state("running")
    assert not advanced.form.isEnabled() and advanced.toggle.isEnabled()
    panel.set_run_state("idle", can_start=True)
    assert advanced.form.isEnabled() and momentum.isEnabled() and advanced.views_spin.isEnabled()


# Each numeric control at the end of its range is the end of the range validate() allows:
# (control attribute, config section, field, the config value at the control's bounds, a
# value just beyond the upper one).
NUMERIC = [
    ("weight_decay_spin", "train", "weight_decay", (0.0, 10.0), 10.001),
    ("momentum_spin", "train", "momentum", (0.0, 1.0), 1.001),
    ("step_size_spin", "train", "step_size", (1, 100_000), 100_001),
    ("gamma_spin", "train", "gamma", (0.0, 1.0), 1.001),
    ("label_smoothing_spin", "train", "label_smoothing", (0.0, 0.99), 0.991),
    ("patience_spin", "train", "early_stopping_patience", (0, 100_000), 100_001),
    ("seed_spin", "train", "seed", (0, MAX_SEED), MAX_SEED + 1),
    ("budget_spin", "train", "cache_budget_mb", (0, 1_000_000), 1_000_001),
    ("views_spin", "train", "augmented_views", (0, MAX_AUGMENTED_VIEWS), MAX_AUGMENTED_VIEWS + 1),
    ("workers_spin", "data", "num_workers", (-1, 1024), 1025),
]


@pytest.mark.parametrize("attribute, section, name, bounds, beyond", NUMERIC, ids=[n[2] for n in NUMERIC])
def test_no_control_can_leave_the_range_validate_allows(qtbot, attribute, section, name, bounds, beyond):
    from desktop_tl.gui.advanced_settings import AdvancedSettings

    advanced = AdvancedSettings()
    qtbot.addWidget(advanced)
    spin = getattr(advanced, attribute)
    for end, value in zip((spin.minimum(), spin.maximum()), bounds):
        spin.setValue(end)
        config = RunConfig()
        advanced.apply_to(config.train)
        advanced.apply_data_to(config.data)
        assert getattr(getattr(config, section), name) == value
        config.validate()
    # Typed past the end, the control refuses the digit or the value: it stays in range.
    spin.setFocus()
    spin.lineEdit().selectAll()
    qtbot.keyClicks(spin.lineEdit(), str(beyond))
    qtbot.keyClick(spin.lineEdit(), Qt.Key.Key_Return)
    config = RunConfig()
    advanced.apply_to(config.train)
    advanced.apply_data_to(config.data)
    assert bounds[0] <= getattr(getattr(config, section), name) <= bounds[1]
    config.validate()
    # The control's end is where validate() draws the line.
    setattr(getattr(config, section), name, beyond)
    with pytest.raises(ConfigError, match=f"{section}.{name}"):
        config.validate()


def test_the_largest_test_split_leaves_images_to_train_with_any_validation_share(qtbot, window):
    advanced = window.training_panel.advanced
    advanced.test_spin.setValue(advanced.test_spin.maximum())
    val = window.data_panel.val_spin
    val.setValue(val.maximum())
    config = RunConfig()
    window.data_panel.apply_to(config.data)
    advanced.apply_data_to(config.data)
    config.validate()
    assert config.data.val_fraction == 0.5 and config.data.test_fraction == 0.44
    config.data.test_fraction = 0.45  # one more percent would leave too few to train on
    with pytest.raises(ConfigError, match="leave images to train on"):
        config.validate()


def test_a_saved_project_keeps_the_advanced_settings(qtbot, window, tiny_dataset, tmp_path):
    configure_fast_run(window, qtbot, tiny_dataset)
    panel = window.training_panel
    advanced = panel.advanced
    panel.optimizer_combo.setCurrentIndex(panel.optimizer_combo.findData("sgd"))
    panel.schedule_combo.setCurrentIndex(panel.schedule_combo.findData("step"))
    advanced.weight_decay_spin.setValue(1e-4)
    advanced.momentum_spin.setValue(0.8)
    advanced.step_size_spin.setValue(2)
    advanced.gamma_spin.setValue(0.25)
    advanced.patience_spin.setValue(3)
    advanced.label_smoothing_spin.setValue(0.2)
    advanced.seed_spin.setValue(12345)
    advanced.tensorboard_check.setChecked(True)
    advanced.budget_spin.setValue(512)
    advanced.reuse_check.setChecked(False)
    advanced.views_spin.setValue(0)
    advanced.feature_cache_combo.setCurrentIndex(advanced.feature_cache_combo.findData("off"))
    assert window.isWindowModified()
    project = tmp_path / "project.toml"
    assert window.project.save_to(project)
    saved = window.current_config().train
    assert RunConfig.load(project).train == saved

    window.project.new()
    assert window.current_config().train.seed == 0  # the defaults again
    assert window.project.open(project)
    qtbot.waitUntil(window.is_ready, timeout=60_000)
    opened = window.current_config().train
    assert opened == saved
    assert (opened.weight_decay, opened.momentum, opened.step_size, opened.gamma) == (1e-4, 0.8, 2, 0.25)
    assert (opened.early_stopping_patience, opened.label_smoothing, opened.seed) == (3, 0.2, 12345)
    assert opened.tensorboard and not opened.feature_cache_reuse and opened.feature_cache == "off"
    assert (opened.cache_budget_mb, opened.augmented_views) == (512, 0)
    assert not window.isWindowModified()


def test_a_run_from_the_window_records_label_smoothing_and_seed(qtbot, window, tiny_dataset):
    configure_fast_run(window, qtbot, tiny_dataset, epochs=1)
    advanced = window.training_panel.advanced
    advanced.label_smoothing_spin.setValue(0.1)
    advanced.seed_spin.setValue(3)
    with qtbot.waitSignal(window.training.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        assert window.start_training()
    qtbot.waitUntil(lambda: window.training.session is None, timeout=10_000)
    event = blocker.args[0]
    assert event.status == "completed", event.reason
    recorded = RunConfig.load(Path(event.run_dir) / "run.toml")
    assert recorded.train.label_smoothing == 0.1
    assert recorded.train.seed == 3


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("size", [(1024, 640), (1920, 1080)], ids=["1024x640", "1920x1080"])
def test_the_section_fits_expanded_and_collapsed(qtbot, window, tiny_dataset, size, theme):
    from desktop_tl.gui.preferences_dialog import apply_theme

    configure_fast_run(window, qtbot, tiny_dataset)
    panel = window.training_panel
    advanced = panel.advanced
    width, height = size
    apply_theme(theme)
    try:
        window.resize(width, height)
        for expanded in (False, True, False):
            advanced.set_expanded(expanded)
            qtbot.wait(50)
            problems = layout_problems(window, size)
            state = "expanded" if expanded else "collapsed"
            column = next(w for w in _ancestors(panel) if isinstance(w, QScrollArea))
            column.ensureWidgetVisible(advanced.form if expanded else advanced, 0, 0)
            save_screenshot(window, f"advanced_{width}x{height}_{theme}_{state}")
            save_screenshot(panel, f"advanced_{width}x{height}_{theme}_{state}_panel")
            assert problems == [], f"{state} at {width}x{height}:\n{describe_problems(problems)}"
            assert advanced.form.isVisible() == expanded
    finally:
        apply_theme("system")


def _ancestors(widget):
    parent = widget.parentWidget()
    while parent is not None:
        yield parent
        parent = parent.parentWidget()
