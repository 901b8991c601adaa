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

    with qtbot.waitSignal(window.run_finished, timeout=120_000) as blocker:
        qtbot.mouseClick(window.training_panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.session is None, timeout=10_000)
    finished = blocker.args[0]
    assert finished.status == "completed", finished.reason
    assert host.loads == checked  # the engine trained on what the panel had checked
    assert finished.summary["num_train"] + finished.summary["num_val"] == sum(
        sum(counts.values()) for counts in window.data_panel.prepared.counts().values())
