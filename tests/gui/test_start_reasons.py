"""A disabled Start says why: the button's and the Train action's tooltip and status tip
name what is missing, and Ctrl+R pressed while Start is disabled says it in the status bar.
"""

from __future__ import annotations

from PySide6.QtCore import Qt

from window_helpers import configure_fast_run, save_screenshot


def start_tips(window) -> list[str]:
    button = window.training_panel.start_button
    action = window.start_action
    return [button.toolTip(), button.statusTip(), action.toolTip(), action.statusTip()]


def press_ctrl_r(qtbot, window) -> None:
    window.activateWindow()
    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=5_000)
    qtbot.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)


def test_before_the_backend_start_says_it_is_loading(qtbot, settings, runs_dir):
    from desktop_tl.gui.main_window import MainWindow

    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.show()
    assert not window.start_action.isEnabled()
    assert all("Loading PyTorch" in tip for tip in start_tips(window))


def test_with_no_dataset_start_says_to_choose_one(qtbot, window):
    assert not window.start_action.isEnabled()
    assert not window.training_panel.start_button.isEnabled()
    assert all("Choose a dataset folder" in tip for tip in start_tips(window))
    assert window.state_label.text().startswith("Not ready: choose a dataset folder")

    window.state_label.setText("something else")
    press_ctrl_r(qtbot, window)
    assert window.state_label.text().startswith("Cannot start training: choose a dataset folder")
    assert window.training_panel.status_label.level == "warning"
    assert window.training.session is None
    save_screenshot(window, "issue11-ctrl-r-without-dataset")


def test_while_the_images_are_checked_start_says_so(qtbot, window, tiny_dataset):
    window.open_dataset(tiny_dataset)
    assert window.data_panel.busy
    assert all("Checking the images" in tip for tip in start_tips(window))
    press_ctrl_r(qtbot, window)
    assert window.state_label.text() == "Cannot start training: checking the images…"
    qtbot.waitUntil(window.is_ready, timeout=60_000)  # no build left running at the end


def test_a_model_that_cannot_be_built_is_the_reason(qtbot, window, tiny_dataset):
    configure_fast_run(window, qtbot, tiny_dataset)
    assert window.start_action.isEnabled()
    assert start_tips(window) == ["Start training (Ctrl+R)"] * 4
    assert not window.start_refused_shortcut.isEnabled()  # Ctrl+R is the action's then
    from desktop_tl.core.config import ModelConfig

    window.model_panel.load_from(ModelConfig(backbone="no_such_model"))
    window.model_panel.request_build()
    qtbot.waitUntil(lambda: window.model_panel.build_error != "", timeout=60_000)
    assert not window.start_action.isEnabled()
    assert all("could not be built" in tip for tip in start_tips(window))
    press_ctrl_r(qtbot, window)
    assert "Cannot start training: the model could not be built" in window.state_label.text()


def test_during_a_run_start_says_a_run_is_going(qtbot, window, tiny_dataset):
    configure_fast_run(window, qtbot, tiny_dataset, epochs=50)
    assert window.start_training()
    assert all("A run is going" in tip for tip in start_tips(window))
    press_ctrl_r(qtbot, window)
    assert window.state_label.text().startswith("Cannot start training: a run is going")
    window.stop_training()
    qtbot.waitUntil(lambda: window.training.session is None, timeout=120_000)
    assert window.start_action.isEnabled()
