"""Start trains on the images the data panel checked: the dataset is not read again."""

from __future__ import annotations

from helpers_counting import CountingLoadsHost
from PySide6.QtCore import Qt
from window_helpers import configure_fast_run


def test_start_uses_the_data_the_panel_checked(qtbot, gui_backend, settings, runs_dir, tiny_dataset):
    from desktop_tl.gui.main_window import MainWindow

    host = CountingLoadsHost(gui_backend["host"])
    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.set_backend(host, gui_backend["devices"])
    configure_fast_run(window, qtbot, tiny_dataset, epochs=1)
    checked = host.loads
    assert checked >= 1 and window.data_panel.prepared is not None  # the panel's own check

    with qtbot.waitSignal(window.training.run_finished, timeout=120_000) as blocker:
        qtbot.mouseClick(window.training_panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.training.session is None, timeout=10_000)
    finished = blocker.args[0]
    assert finished.status == "completed", finished.reason
    assert host.loads == checked  # the engine trained on what the panel had checked
    assert finished.summary["num_train"] + finished.summary["num_val"] == sum(
        sum(counts.values()) for counts in window.data_panel.prepared.counts().values()
    )


def test_a_split_changed_just_before_start_is_the_one_trained(
    qtbot, gui_backend, settings, runs_dir, tmp_path
):
    """Start pressed before the panel's re-check began: the engine sees that the checked
    data was split otherwise and splits again, so the run has the split on screen."""
    from helpers_data import make_image_folder

    from desktop_tl.gui.main_window import MainWindow

    data = tmp_path / "unsplit"
    make_image_folder(data, {"red": 10, "green": 10, "blue": 10}, size=(32, 32))
    host = CountingLoadsHost(gui_backend["host"])
    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.set_backend(host, gui_backend["devices"])
    configure_fast_run(window, qtbot, data, epochs=1)
    assert window.data_panel.prepared is not None and len(window.data_panel.prepared.val) == 6
    checked = host.loads

    with qtbot.waitSignal(window.training.run_finished, timeout=120_000) as blocker:
        window.data_panel.val_spin.setValue(40)  # and Start at once, inside the re-check's delay
        assert window.start_training()
    qtbot.waitUntil(lambda: window.training.session is None, timeout=10_000)
    finished = blocker.args[0]
    assert finished.status == "completed", finished.reason
    assert finished.summary["num_val"] == 12  # 40 % of each class, not the 20 % checked before
    assert host.loads > checked
