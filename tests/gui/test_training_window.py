"""Training through the real window and worker thread: curves fill, freeze changes reach
the engine mid-run, pause/resume/stop work, failures are explained, closing is clean."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from desktop_tl.gui.plots import REDRAW_INTERVAL_MS
from window_helpers import PRETRAINED_BACKBONE, configure_fast_run, save_screenshot

RUN_TIMEOUT_MS = 120_000


def finished(qtbot, window, timeout=RUN_TIMEOUT_MS):
    """Wait for the run to end and the window to be idle again; returns the RunFinished."""
    with qtbot.waitSignal(window.training.run_finished, timeout=timeout) as blocker:
        pass
    qtbot.waitUntil(lambda: window.training.session is None, timeout=10_000)
    return blocker.args[0]


def test_a_run_fills_the_plots_and_the_evaluation(qtbot, window, tiny_dataset):
    # The pretrained backbone, so that the curves show real learning in the screenshots.
    configure_fast_run(
        window, qtbot, tiny_dataset, epochs=3, backbone=PRETRAINED_BACKBONE, weights="auto", lr=1e-2
    )
    save_screenshot(window, "window-01-ready-to-train")
    assert window.training_panel.start_button.isEnabled()

    redraws_before = window.plots.redraw_count
    started = time.monotonic()
    with qtbot.waitSignal(window.training.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        qtbot.mouseClick(window.training_panel.start_button, Qt.MouseButton.LeftButton)
        assert window.run_state == "running"
        assert not window.data_panel.isEnabled()  # settings are fixed while it trains
    run_ms = (time.monotonic() - started) * 1000
    run_redraws = window.plots.redraw_count - redraws_before
    event = blocker.args[0]
    qtbot.waitUntil(lambda: window.training.session is None, timeout=10_000)

    assert event.status == "completed", event.reason
    plots = window.plots
    # 24 training images in batches of 8: 3 batches an epoch, 3 epochs.
    assert plots.raw.size == 9
    assert plots.smooth.size == 9
    assert list(plots.train_loss.x) == [1, 2, 3]
    assert plots.val_acc.size == 3 and all(0 <= a <= 100 for a in plots.val_acc.y)
    assert all(math.isfinite(v) for v in plots.raw.y)
    # Redrawn by the timer, never once per batch: at most one redraw a tick of it (Qt
    # may fire a coarse timer up to 5% early), plus the one when the run ends, however
    # fast the batches came.
    timer_ticks = math.floor(run_ms / (0.95 * REDRAW_INTERVAL_MS)) + 1
    assert 1 <= run_redraws <= timer_ticks + 1, (run_redraws, run_ms)
    x, y = plots.raw_curve.getData()
    assert len(x) == 9  # what is on screen is what arrived
    assert "Finished 3 epochs" in window.training_panel.status_label.text()
    assert window.training_panel.start_button.isEnabled()  # ready for another run
    assert window.data_panel.isEnabled()
    assert Path(event.run_dir, "summary.json").is_file()
    # The finished run's model can be taken out from where the run is shown.
    export = window.training_panel.export_button
    assert export.isVisible()
    qtbot.mouseClick(export, Qt.MouseButton.LeftButton)
    assert window.export_dialog.isVisible() and window.export_dialog.run_edit.text() == event.run_dir
    window.export_dialog.close()

    confusion = window.evaluation_view.matrix.matrix()
    assert sum(map(sum, confusion)) == 12  # every validation image counted once
    save_screenshot(window, "window-02-run-finished")
    window.show_tab(window.evaluation_view)
    save_screenshot(window, "window-03-evaluation-tab")
    # The run's end is logged once (by the engine), not once more by the window.
    assert window.log_view.plain_text().count("run completed") == 1
    # The model just trained is offered for prediction without loading anything.
    prediction = window.prediction_view
    qtbot.waitUntil(lambda: prediction.predictor is not None, timeout=30_000)
    assert "just trained" in prediction.model_label.text()
    assert Path(event.run_dir).name in prediction.model_label.text()
    image = next((tiny_dataset / "val" / "red").iterdir())
    prediction.add_images([image])
    qtbot.waitUntil(lambda: prediction.rows()[0].status == "done", timeout=30_000)
    qtbot.waitUntil(lambda: prediction.thumbnail_ready(image), timeout=10_000)
    window.show_tab(prediction)
    save_screenshot(window, "window-04-prediction-tab")

    # With a finished run's results in them, the Train, Evaluation and Prediction tabs lay
    # out soundly from the smallest supported window to a 1440p screen (screenshots of
    # each, to look at).
    from desktop_tl.gui.layout_check import describe_problems, layout_problems

    val_images = sorted(p for p in (tiny_dataset / "val").rglob("*") if p.is_file())
    assert prediction.add_images(val_images) == len(val_images) - 1  # the first is listed already
    qtbot.waitUntil(lambda: all(row.status == "done" for row in prediction.rows()), timeout=30_000)
    for width, height in [(1024, 640), (1920, 1080), (2560, 1440)]:
        window.resize(width, height)
        for view, name in (
            (window.plots, "train"),
            (window.evaluation_view, "evaluation"),
            (prediction, "prediction"),
        ):
            window.show_tab(view)
            qtbot.wait(50)
            problems = layout_problems(window, (width, height))
            save_screenshot(window, f"results_{width}x{height}_{name}")
            assert problems == [], f"{name} at {width}x{height}:\n{describe_problems(problems)}"


def test_slots_run_on_the_gui_thread(qtbot, window, tiny_dataset):
    """Every engine event reaches the window on the GUI thread, never the worker's."""
    configure_fast_run(window, qtbot, tiny_dataset, epochs=1)
    seen: list[bool] = []
    original = window.plots.add_batch

    def recording_add_batch(*args, **kwargs):
        seen.append(threading.current_thread() is threading.main_thread())
        return original(*args, **kwargs)

    window.plots.add_batch = recording_add_batch
    assert window.start_training()
    worker_thread = window.training.session.thread
    event = finished(qtbot, window)
    assert event.status == "completed"
    assert seen and all(seen)
    assert worker_thread.isFinished()


def test_a_burst_of_batches_is_drawn_in_a_few_redraws(qtbot, window, tiny_dataset):
    """The backbone frozen, the head trains on cached features: an epoch's batches come
    within milliseconds of each other and are drawn together, not one by one."""
    configure_fast_run(window, qtbot, tiny_dataset, epochs=4, batch_size=2)
    redraws_before = window.plots.redraw_count
    assert window.start_training()
    event = finished(qtbot, window)
    assert event.status == "completed", event.reason
    assert event.summary["feature_cache"][0]["event"] == "built"  # the head trained on features
    batches = window.plots.batches_received
    assert batches == 48  # 24 training images in batches of 2, 4 epochs
    # A redraw or two an epoch (its batches, its point) and a few around the start and
    # the end; one a batch would be 48.
    run_redraws = window.plots.redraw_count - redraws_before
    assert run_redraws <= batches / 3, run_redraws


def test_unfreezing_a_layer_mid_run_reaches_the_engine(qtbot, window, tiny_dataset):
    configure_fast_run(window, qtbot, tiny_dataset, epochs=8)
    layers = window.layer_panel
    target = "backbone.classifier"  # mobilenet_v3_small's last backbone stage
    assert layers.check_state(target) == Qt.CheckState.Unchecked

    applied = []
    assert window.start_training()
    window.training.session.worker.freeze_applied.connect(applied.append)
    # Pause as soon as batches arrive, so the change lands mid-run at a known point.
    qtbot.waitUntil(lambda: window.plots.batches_received >= 1, timeout=RUN_TIMEOUT_MS)
    window.toggle_pause()
    assert window.run_state == "paused"
    assert window.training_panel.pause_button.text() == "Resume"

    layers.set_trainable(target, True)  # the same path as a click on its check box
    assert layers.check_state(target) == Qt.CheckState.Checked
    assert "applying" in layers._items[target][3].text()
    window.toggle_pause()
    qtbot.waitUntil(lambda: bool(applied), timeout=RUN_TIMEOUT_MS)
    event = finished(qtbot, window)
    assert event.status == "completed", event.reason

    change = applied[0]
    assert change.changes == {target: True}
    assert change.step >= 1
    assert change.trainable_params > 0
    # The plot marks the moment on every plot, the log records it, the tree shows it.
    assert len(window.plots.freeze_markers) == 1
    marker_x, label = window.plots.freeze_markers[0]
    assert marker_x == pytest.approx(change.step / 3)
    assert label == "backbone.classifier trainable"
    assert "freeze change applied" in window.log_view.plain_text()
    assert "applying" not in layers._items[target][3].text()
    assert window.config.freeze.overrides == {target: True}
    assert event.summary["freeze_changes"][0]["changes"] == {target: True}
    save_screenshot(window, "window-05-freeze-change-marked")


def test_pause_resume_and_stop(qtbot, window, tiny_dataset):
    configure_fast_run(window, qtbot, tiny_dataset, epochs=200)
    assert window.start_training()
    qtbot.waitUntil(lambda: window.plots.batches_received >= 1, timeout=RUN_TIMEOUT_MS)
    qtbot.keyClick(window, Qt.Key.Key_Space)  # Space pauses while a run is going
    assert window.run_state == "paused"
    qtbot.wait(300)  # the engine is at a batch boundary by now and holds
    held = window.plots.batches_received
    qtbot.wait(700)
    assert window.plots.batches_received == held
    save_screenshot(window, "window-06-paused")

    qtbot.keyClick(window, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)
    assert window.run_state == "running"
    qtbot.waitUntil(lambda: window.plots.batches_received > held, timeout=RUN_TIMEOUT_MS)

    window.stop_action.trigger()  # Ctrl+.
    assert window.run_state == "stopping"
    event = finished(qtbot, window)
    assert event.status == "cancelled"
    assert event.summary["epochs_completed"] < 200
    assert window.plots.raw.size > 0  # the curves stay
    done = event.summary["epochs_completed"]
    status = window.training_panel.status_label.text()
    if done:
        assert f"Stopped after {done} epoch{'' if done == 1 else 's'};" in status
    else:
        assert status == "Stopped before the first epoch ended, so there is no checkpoint."
    assert window.log_view.plain_text().count("run cancelled") == 1
    assert window.run_state == "idle"


def test_a_failed_run_shows_its_reason_and_keeps_the_plots(qtbot, window, tiny_dataset):
    # Everything trainable from random weights with plain SGD at rate 10: the loss blows up.
    configure_fast_run(window, qtbot, tiny_dataset, epochs=30, lr=10.0, preset="none")
    window.training_panel.optimizer_combo.setCurrentIndex(
        window.training_panel.optimizer_combo.findData("sgd")
    )
    assert window.start_training()
    event = finished(qtbot, window)
    assert event.status == "failed"
    assert "loss became" in event.reason
    status = window.training_panel.status_label
    assert status.isVisible() and status.level == "error"
    assert "Training failed" in status.text() and "learning rate" in status.text()
    assert window.state_label.text() == "Training failed"
    assert window.plots.batches_received > 0
    assert window.plots.raw.size > 0  # the finite part of the curve is kept
    # no Export button for a run that left no best checkpoint
    assert (
        window.training_panel.export_button.isVisible() == Path(event.run_dir, "checkpoints", "best").is_dir()
    )
    save_screenshot(window, "window-07-run-failed")


def test_closing_during_training_asks_stops_and_exits_cleanly(qtbot, window, tiny_dataset):
    configure_fast_run(window, qtbot, tiny_dataset, epochs=200)
    asked = []
    window.confirm_close = lambda: asked.append(True) or False  # first: "No"
    assert window.start_training()
    qtbot.waitUntil(lambda: window.plots.batches_received >= 1, timeout=RUN_TIMEOUT_MS)
    window.close()
    assert asked == [True]
    assert window.isVisible() and window.run_state == "running"  # "No" keeps it going

    window.confirm_close = lambda: asked.append(True) or True
    session = window.training.session
    thread = session.thread
    with qtbot.waitSignal(window.training.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    assert blocker.args[0].status == "cancelled"
    assert thread.isFinished()
    assert window.training.session is None
