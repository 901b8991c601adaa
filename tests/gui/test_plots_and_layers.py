"""The live plots redraw on a timer, not per batch; the layer tree shows the real model's
modules with tri-state parents and turns clicks into the fewest freeze changes."""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import QObject, Qt, Signal

from desktop_tl.gui.layer_tree import LayerTreePanel, format_count, freeze_changes
from desktop_tl.gui.plots import REDRAW_INTERVAL_MS, TrainingPlots


def test_plots_redraw_on_the_timer_only_when_something_arrived(qtbot):
    plots = TrainingPlots()
    qtbot.addWidget(plots)
    plots.reset()
    qtbot.wait(3 * REDRAW_INTERVAL_MS)
    idle_redraws = plots.redraw_count
    assert idle_redraws <= 1  # the reset itself, then nothing while nothing changes
    qtbot.wait(3 * REDRAW_INTERVAL_MS)
    assert plots.redraw_count == idle_redraws

    plots.set_batches_per_epoch(100)
    for step in range(1000):  # a burst far faster than the timer
        plots.add_batch(step, 2.0 / (1 + step / 100))
    assert plots.raw_curve.getData()[0] is None or len(plots.raw_curve.getData()[0]) < 1000
    qtbot.waitUntil(lambda: plots.redraw_count > idle_redraws, timeout=2000)
    assert plots.redraw_count <= idle_redraws + 2  # one redraw for the whole burst
    x, y = plots.raw_curve.getData()
    assert len(x) == 1000 and x[0] == pytest.approx(0.01) and x[-1] == pytest.approx(10.0)
    sx, sy = plots.smooth_curve.getData()
    assert sy[0] == pytest.approx(y[0])  # bias-corrected EMA starts at the first value
    assert sy[-1] > y[-1]  # and lags behind a falling loss


def test_epoch_points_and_freeze_markers(qtbot):
    plots = TrainingPlots()
    qtbot.addWidget(plots)
    plots.reset()
    plots.set_batches_per_epoch(10)
    plots.add_epoch(0, {"train_loss": 1.2, "val_loss": 1.0, "val_acc": 0.5})
    plots.add_epoch(1, {"train_loss": 0.8, "val_loss": float("nan"), "val_acc": 0.75})
    plots.add_freeze_marker(15, "blocks.6 unfrozen")
    plots.redraw_if_dirty()
    assert list(plots.train_loss_curve.getData()[1]) == [1.2, 0.8]
    assert list(plots.val_loss_curve.getData()[1]) == [1.0]  # non-finite values are left out
    assert list(plots.val_acc_curve.getData()[1]) == [50.0, 75.0]  # shown in percent
    assert plots.freeze_markers == [(1.5, "blocks.6 unfrozen")]
    for plot in plots.plots:  # a marker on every plot, at the same epoch position
        lines = [item for item in plot.items if type(item).__name__ == "InfiniteLine"]
        assert [line.value() for line in lines] == [1.5]
    assert "best 75.0 %" in plots.summary.text()
    plots.reset()
    assert plots.freeze_markers == []
    assert not any(type(i).__name__ == "InfiniteLine" for i in plots.batch_plot.items)


def test_plots_follow_a_dark_palette(qtbot):
    from PySide6.QtGui import QColor, QPalette

    plots = TrainingPlots()
    qtbot.addWidget(plots)
    dark = QPalette()
    dark.setColor(QPalette.ColorRole.Base, QColor(30, 30, 30))
    dark.setColor(QPalette.ColorRole.Text, QColor(230, 230, 230))
    plots.setPalette(dark)
    assert plots.canvas.backgroundBrush().color().name() == "#1e1e1e"
    axis = plots.batch_plot.getAxis("left")
    assert axis.textPen().color().name() == "#e6e6e6"


@pytest.fixture(scope="module")
def small_model():
    import torch

    from desktop_tl.core.layers import apply_freeze
    from desktop_tl.core.model import TransferModel

    torch.manual_seed(0)
    backbone = torch.nn.Sequential()
    backbone.add_module("stem", torch.nn.Conv2d(3, 4, 3))
    blocks = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3), torch.nn.Conv2d(4, 8, 3))
    backbone.add_module("blocks", blocks)
    backbone.add_module("pool", torch.nn.AdaptiveAvgPool2d(1))
    backbone.add_module("flatten", torch.nn.Flatten())
    model = TransferModel(backbone, torch.nn.Linear(8, 3))
    apply_freeze(model, "head-only", {})
    return model


def test_layer_tree_shows_states_and_reports_clicks(qtbot, small_model):
    from desktop_tl.core.layers import apply_freeze, layer_tree

    panel = LayerTreePanel()
    qtbot.addWidget(panel)
    panel.set_tree(layer_tree(small_model))
    panel.set_stage_count(3)
    assert panel.check_state("backbone") == Qt.CheckState.Unchecked
    assert panel.check_state("head") == Qt.CheckState.Checked
    assert panel.item_for("backbone.pool").isCheckable() is False  # no parameters
    assert "27 of" in panel.counts_label.text()  # the head: 8 * 3 + 3

    clicks = []
    panel.toggled.connect(lambda name, on: clicks.append((name, on)))
    item = panel.item_for("backbone.blocks.1")
    item.setCheckState(Qt.CheckState.Checked)  # what a click does
    assert clicks == [("backbone.blocks.1", True)]

    apply_freeze(small_model, "head-only", {"backbone.blocks.1": True})
    panel.update_states(layer_tree(small_model))
    assert panel.check_state("backbone") == Qt.CheckState.PartiallyChecked
    assert panel.check_state("backbone.blocks") == Qt.CheckState.PartiallyChecked
    assert len(clicks) == 1  # showing states is not a click
    apply_freeze(small_model, "head-only", {})

    presets = []
    panel.preset_chosen.connect(presets.append)
    panel.everything_button.click()
    panel.last_spin.setValue(2)
    panel.head_only_button.click()
    assert presets == ["none", "last:2", "head-only"]


def test_freeze_changes_name_whole_subtrees_once(small_model):
    from desktop_tl.core.layers import apply_freeze, layer_tree

    before = layer_tree(small_model)
    apply_freeze(small_model, "none", {})
    after = layer_tree(small_model)
    assert freeze_changes(before, after) == {"backbone": True}
    apply_freeze(small_model, "last:1", {})
    last = layer_tree(small_model)
    assert freeze_changes(after, last) == {"backbone.stem": False, "backbone.blocks.0": False}
    apply_freeze(small_model, "head-only", {})


def test_counts_are_short():
    assert format_count(864) == "864"
    assert format_count(3_843) == "3.8 k"
    assert format_count(412_000) == "412 k"
    assert format_count(3_371_008) == "3.4 M"


def test_signal_emit_keeps_its_references():
    """PySide6 6.12.0 dropped a reference to True on every emit() until the interpreter
    crashed; the project excludes that release."""

    class Emitter(QObject):
        fired = Signal(object)

    emitter = Emitter()
    emitter.fired.connect(lambda value: None)
    before = sys.getrefcount(True)
    for _ in range(200):
        emitter.fired.emit(1)
    assert sys.getrefcount(True) >= before - 5
