"""Every view shows the current project only: after New, another project, another dataset
or another model, the last run's status line, progress, curves and evaluation go (the run
stays in the Runs tab), and the model panel no longer counts the old dataset's classes.
"""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox

from window_helpers import configure_fast_run, make_tiny_dataset, save_screenshot

RUN_TIMEOUT_MS = 120_000


def train_one_epoch(qtbot, window, data) -> None:
    configure_fast_run(window, qtbot, data, epochs=1)
    with qtbot.waitSignal(window.training.run_finished, timeout=RUN_TIMEOUT_MS):
        assert window.start_training()
    qtbot.waitUntil(lambda: window.training.session is None, timeout=10_000)
    # What a finished run leaves on screen (and what must go afterwards):
    assert window.training_panel.progress.format().startswith("Done after 1 epoch")
    assert window.training_panel.status_label.level == "good"
    assert "Finished 1 epoch:" in window.training_panel.status_label.text()
    assert not window.plots.is_empty()
    assert window.evaluation_view.has_results()
    assert "for 3 classes" in window.model_panel.params_label.text()


def assert_no_results(window) -> None:
    panel = window.training_panel
    assert panel.progress.format() == "Not started"
    assert panel.status_label.level != "good"
    assert "Finished" not in panel.status_label.text()
    assert window.plots.is_empty()
    assert not window.evaluation_view.has_results()
    assert "new results" not in window.tabs.tabText(window.tabs.index_of(window.evaluation_view))
    assert window.training.last_result is None
    window.plots.redraw_if_dirty()
    for plot in (window.plots.batch_plot, window.plots.epoch_loss_plot):
        low, high = plot.viewRange()[1]
        assert low <= 0.0 and high >= 1.0, "the y axis still fits the old run's losses"
    assert "fp32" not in window.device_label.text()  # the run's precision went with it


def discard_if_asked(qtbot, window) -> None:
    box = window.project.question
    if box is not None:
        box.button(QMessageBox.StandardButton.Discard).click()


def test_new_project_clears_the_last_run(qtbot, window, tiny_dataset, runs_dir):
    train_one_epoch(qtbot, window, tiny_dataset)
    save_screenshot(window, "issue11-after-run")
    window.new_action.trigger()
    discard_if_asked(qtbot, window)
    assert window.current_config().data.path == ""
    assert_no_results(window)
    assert "Choose a dataset folder" in window.training_panel.status_label.text()
    # The model is rebuilt without a dataset: no class count from the old one.
    qtbot.waitUntil(
        lambda: not window.model_panel.busy and window.model_panel.built is not None, timeout=60_000
    )
    assert "3 classes" not in window.model_panel.params_label.text()
    assert "until a dataset is chosen" in window.model_panel.params_label.text()
    save_screenshot(window, "issue11-after-new-project")
    assert "cleared the last run's results" in window.log_view.plain_text()
    assert any(runs_dir.iterdir())  # the run itself stays (the Runs tab lists it)


def test_another_dataset_clears_the_last_run(qtbot, window, tiny_dataset, tmp_path):
    train_one_epoch(qtbot, window, tiny_dataset)
    other = make_tiny_dataset(tmp_path / "other", classes=("cat", "dog"))
    window.open_dataset(other)
    qtbot.waitUntil(
        lambda: (
            window.data_panel.prepared is not None
            and window.data_panel.prepared.class_names == ["cat", "dog"]
        ),
        timeout=30_000,
    )
    assert_no_results(window)
    qtbot.waitUntil(window.is_ready, timeout=60_000)
    assert "for 2 classes" in window.model_panel.params_label.text()
    assert "Ready" in window.training_panel.status_label.text()
    save_screenshot(window, "issue11-after-dataset-change")


def test_another_model_clears_the_last_run(qtbot, window, tiny_dataset):
    train_one_epoch(qtbot, window, tiny_dataset)
    augment = window.data_panel.augment_combo  # a data setting, not another dataset
    augment.setCurrentIndex(augment.findData("light"))
    assert window.evaluation_view.has_results() and window.training.last_result is not None
    head = window.model_panel.head_combo
    head.setCurrentIndex(head.findData("mlp"))
    assert_no_results(window)
    qtbot.waitUntil(window.is_ready, timeout=60_000)


def test_opening_a_project_clears_the_last_run(qtbot, window, tiny_dataset, tmp_path):
    from desktop_tl.core.config import RunConfig

    train_one_epoch(qtbot, window, tiny_dataset)
    project = tmp_path / "other.toml"
    other = RunConfig()
    other.data.path = str(tiny_dataset)  # even with the same images
    other.train.epochs = 4
    other.save(project)
    window.project.open(project)
    discard_if_asked(qtbot, window)
    assert window.training_panel.epochs() == 4
    assert_no_results(window)
    assert window.prediction_view.rows() == []
