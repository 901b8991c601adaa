"""The panels of the real window: bad data explained in the panel, class counts and
skipped files, drag and drop, projects saved and opened, weights and head options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

from window_helpers import FAST_BACKBONE, configure_fast_run, make_tiny_dataset, save_screenshot
from helpers_data import make_image_folder, truncate_file


def test_the_window_says_it_is_loading_until_the_backend_is_ready(qtbot, settings, gui_backend, runs_dir):
    from desktop_tl.gui.main_window import MainWindow

    win = MainWindow(settings)
    qtbot.addWidget(win)
    win.resize(1600, 980)
    win.show()
    assert win.state_label.text() == "Loading PyTorch…"
    assert "Loading PyTorch" in win.training_panel.status_label.text()
    assert not win.data_panel.isEnabled() and not win.model_panel.isEnabled()
    assert not win.training_panel.start_button.isEnabled()
    assert not win.start_training()
    save_screenshot(win, "window-00-loading")
    win.set_backend(gui_backend["host"], gui_backend["devices"])
    assert win.data_panel.isEnabled() and win.model_panel.isEnabled()
    assert "Choose a dataset folder" in win.training_panel.status_label.text()
    qtbot.waitUntil(lambda: win.model_panel.built is not None, timeout=60_000)
    save_screenshot(win, "window-00-empty-project")


def test_dark_palette(qtbot, window, tiny_dataset):
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    light = app.palette()
    dark = QPalette()
    for role, colour in (
        (QPalette.ColorRole.Window, "#2b2b2b"),
        (QPalette.ColorRole.WindowText, "#e6e6e6"),
        (QPalette.ColorRole.Base, "#1e1e1e"),
        (QPalette.ColorRole.AlternateBase, "#262626"),
        (QPalette.ColorRole.Text, "#e6e6e6"),
        (QPalette.ColorRole.Button, "#353535"),
        (QPalette.ColorRole.ButtonText, "#e6e6e6"),
        (QPalette.ColorRole.PlaceholderText, "#8a8a8a"),
    ):
        dark.setColor(role, QColor(colour))
    try:
        app.setPalette(dark)
        configure_fast_run(window, qtbot, tiny_dataset)
        qtbot.wait(200)
        assert window.plots.canvas.backgroundBrush().color().name() == "#1e1e1e"
        notice = window.model_panel.weights_label  # "Random initialisation" warning
        background = notice.styleSheet().split("background:")[1].split(";")[0].strip()
        assert QColor(background).lightness() < 80  # a dark box, not a light one
        save_screenshot(window, "window-12-dark-palette")
    finally:
        app.setPalette(light)


def data_error(qtbot, window, path) -> str:
    """Open ``path`` as the dataset and return the error the data panel shows."""
    panel = window.data_panel
    panel.set_path(path)
    qtbot.waitUntil(lambda: not panel.busy and panel.notice.level == "error", timeout=30_000)
    assert panel.notice.isVisible()
    assert panel.prepared is None
    assert not window.training_panel.start_button.isEnabled()
    assert "Traceback" not in panel.notice.text()
    return panel.notice.text()


def test_bad_data_is_explained_in_the_panel(qtbot, window, tmp_path):
    text = data_error(qtbot, window, tmp_path / "no-such-folder")
    assert "does not exist" in text

    one_class = tmp_path / "one"
    make_image_folder(one_class, {"cats": 4})
    text = data_error(qtbot, window, one_class)
    assert "only one class" in text and "at least two" in text

    empty = tmp_path / "empty"
    (empty / "cats").mkdir(parents=True)
    (empty / "dogs").mkdir()
    (empty / "dogs" / "notes.txt").write_text("not an image")
    text = data_error(qtbot, window, empty)
    assert "no images found" in text
    save_screenshot(window, "window-08-bad-data")
    # The log keeps the story too, without a traceback.
    assert "dataset refused" in window.log_view.plain_text()


def test_classes_counts_and_skipped_files(qtbot, window, tmp_path):
    data = make_tiny_dataset(tmp_path / "data", per_class_train=6, per_class_val=3)
    truncate_file(data / "train" / "red" / "red_000.png", 0.3)
    (data / "train" / "red" / "readme.txt").write_text("stray file")
    panel = window.data_panel
    panel.set_path(data)
    qtbot.waitUntil(lambda: panel.prepared is not None, timeout=30_000)

    table = panel.class_table
    assert [table.item(r, 0).text() for r in range(table.rowCount())] == ["blue", "green", "red"]
    counts = {
        table.item(r, 0).text(): (table.item(r, 1).text(), table.item(r, 2).text())
        for r in range(table.rowCount())
    }
    assert counts == {"blue": ("6", "3"), "green": ("6", "3"), "red": ("5", "3")}
    assert table.isColumnHidden(3)  # no test split here
    assert "3 classes" in panel.summary_label.text()
    assert panel.notice.level == "warning" and "could not be read" in panel.notice.text()
    assert "Using the dataset's own train/val split" in panel.split_label.text()
    assert not panel.val_spin.isEnabled()

    assert panel.skipped_button.isVisible()
    assert "1 unreadable" in panel.skipped_button.text()
    panel.skipped_button.click()
    assert panel.skipped_table.isVisible()
    skipped = {
        panel.skipped_table.item(r, 0).text(): panel.skipped_table.item(r, 1).text()
        for r in range(panel.skipped_table.rowCount())
    }
    assert os.path.join("train", "red", "red_000.png") in skipped
    assert skipped[os.path.join("train", "red", "red_000.png")]  # the reason is given
    save_screenshot(window, "window-09-skipped-files")


def test_a_random_split_follows_the_validation_share(qtbot, window, tmp_path):
    data = tmp_path / "flat"
    make_image_folder(data, {"a": 10, "b": 10})
    panel = window.data_panel
    panel.set_path(data)
    qtbot.waitUntil(lambda: panel.prepared is not None, timeout=30_000)
    assert panel.prepared.split_source == "stratified"
    assert len(panel.prepared.val) == 4  # 20 % of each class
    panel.val_spin.setValue(40)  # re-split after a short pause
    qtbot.waitUntil(lambda: panel.prepared is not None and len(panel.prepared.val) == 8, timeout=30_000)
    assert window.current_config().data.val_fraction == pytest.approx(0.4)


def test_checking_images_can_be_cancelled(qtbot, window, tmp_path):
    data = tmp_path / "many"
    make_image_folder(data, {"a": 60, "b": 60})
    panel = window.data_panel
    panel.set_path(data)
    assert panel.busy and panel.progress_box.isVisible()
    panel.cancel_button.click()
    assert not panel.busy
    assert "cancelled" in panel.notice.text()
    qtbot.wait(1500)  # whatever the stopped task still reports is ignored
    assert panel.prepared is None


def test_dropping_a_folder_on_the_window_opens_it(qtbot, window, tiny_dataset):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tiny_dataset))])
    drop = QDropEvent(
        QPointF(400, 300),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(drop)
    assert drop.isAccepted()
    qtbot.waitUntil(lambda: window.data_panel.prepared is not None, timeout=30_000)
    assert window.data_panel.path_edit.text() == str(tiny_dataset)


def test_project_save_and_open_round_trip(qtbot, window, tiny_dataset, tmp_path):
    configure_fast_run(window, qtbot, tiny_dataset, epochs=7, batch_size=4, lr=3e-4)
    panel = window.training_panel
    panel.schedule_combo.setCurrentIndex(panel.schedule_combo.findData("cosine"))
    panel.lr_mult_spin.setValue(0.25)
    window.data_panel.augment_combo.setCurrentIndex(window.data_panel.augment_combo.findData("light"))
    window.layer_panel.last_spin.setValue(2)  # choosing N picks the "last N blocks" preset
    head = window.model_panel.head_combo
    head.setCurrentIndex(head.findData("mlp"))
    window.model_panel.head_form.widget("hidden_sizes").setText("64, 32")
    window.model_panel.head_form.widget("hidden_sizes").editingFinished.emit()
    assert window.isWindowModified()

    project = tmp_path / "project.toml"
    assert window.project.save_to(project)
    assert not window.isWindowModified()
    saved = window.current_config()
    assert "project.toml" in window.windowTitle()

    window.project.new()
    assert window.current_config().train.epochs == 10  # the defaults again
    assert window.project.open(project)
    qtbot.waitUntil(window.is_ready, timeout=60_000)
    opened = window.current_config()
    assert opened.to_dict() == saved.to_dict()
    assert opened.train.schedule == "cosine" and opened.train.epochs == 7
    assert opened.freeze.preset == "last:2"
    assert opened.model.head == "mlp" and opened.model.head_options["hidden_sizes"] == [64, 32]
    assert window.layer_panel.last_button.isChecked()
    assert str(project.resolve()) in window.settings.recent_projects

    # A broken project is explained and changes nothing.
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = 'many'\n")
    assert not window.project.open(bad)
    assert window.current_config().train.epochs == 7


def test_layer_ticks_before_training_become_the_freeze_configuration(qtbot, window, tiny_dataset):
    configure_fast_run(window, qtbot, tiny_dataset)
    layers = window.layer_panel
    assert layers.check_state("backbone") == Qt.CheckState.Unchecked
    layers.set_trainable("backbone.classifier", True)
    assert layers.check_state("backbone") == Qt.CheckState.PartiallyChecked
    assert window.current_config().freeze.overrides == {"backbone.classifier": True}
    assert window.current_config().freeze.preset == "head-only"
    trainable_before = window.model_panel.built.model.backbone.classifier[0].weight.requires_grad
    assert trainable_before
    layers.set_trainable("backbone", True)  # a parent decides for its whole subtree
    assert window.current_config().freeze.overrides == {"backbone": True}
    assert layers.check_state("backbone.classifier") == Qt.CheckState.Checked
    layers.everything_button.click()
    assert window.current_config().freeze.preset == "none"
    assert window.current_config().freeze.overrides == {}
    assert "100.0%" in layers.counts_label.text()
    layers.head_only_button.click()
    assert layers.check_state("backbone") == Qt.CheckState.Unchecked
    assert layers.check_state("head") == Qt.CheckState.Checked
    save_screenshot(window, "window-10-layer-tree")


def test_missing_weights_offer_import_or_random_initialisation(
    qtbot, window, tiny_dataset, tmp_path, monkeypatch
):
    monkeypatch.setenv("DTL_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty hub cache
    configure_fast_run(window, qtbot, tiny_dataset)
    model = window.model_panel
    model.load_from(
        __import__("desktop_tl.core.config", fromlist=["ModelConfig"]).ModelConfig(
            backbone="torchvision:resnet18", weights="auto"
        )
    )
    assert model.weights_label.level == "error"
    assert "No pretrained weights for resnet18" in model.weights_label.text()
    assert "Import weights" in model.weights_label.text()
    assert "resnet18-" in model.weights_label.text()  # the usual file name
    assert model.import_button.isVisible()
    assert not window.training_panel.start_button.isEnabled()
    qtbot.waitUntil(lambda: not model.busy and model.built.model_name == "resnet18", timeout=60_000)
    assert "import weights or tick Random initialisation" in window.training_panel.status_label.text()
    save_screenshot(window, "window-11-weights-missing")

    model.random_check.setChecked(True)
    assert model.weights_label.level == "warning"
    assert window.current_config().model.weights == "none"
    qtbot.waitUntil(window.is_ready, timeout=60_000)
    model.random_check.setChecked(False)
    assert not window.training_panel.start_button.isEnabled()

    # Import a (randomly initialised, but correctly shaped) resnet18 weights file.
    # as .safetensors: random weights are refused under the published .pth name
    weights_file = tmp_path / "my-resnet18.safetensors"
    subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import torch, torchvision, sys; torch.manual_seed(0); "
                "from safetensors.torch import save_file; "
                "save_file(torchvision.models.resnet18().state_dict(), sys.argv[1])"
            ),
            str(weights_file),
        ],
        check=True,
    )
    model.import_weights(str(weights_file))
    qtbot.waitUntil(lambda: model.weights_label.level == "good", timeout=60_000)
    assert "local weights folder" in model.weights_label.text()
    assert any((tmp_path / "weights").iterdir())
    qtbot.waitUntil(window.is_ready, timeout=60_000)
    assert window.current_config().model.weights == "auto"


def test_a_weights_file_for_another_model_is_refused_in_the_panel(
    qtbot, window, tiny_dataset, tmp_path, monkeypatch
):
    monkeypatch.setenv("DTL_WEIGHTS_DIR", str(tmp_path / "weights"))
    configure_fast_run(window, qtbot, tiny_dataset)
    wrong = tmp_path / "wrong.pth"
    wrong.write_bytes(b"this is not a weights file")
    window.model_panel.import_weights(str(wrong))
    notice = window.model_panel.notice
    qtbot.waitUntil(lambda: notice.level == "error", timeout=60_000)
    assert "not imported" in notice.text() and "Traceback" not in notice.text()


def test_head_options_get_matching_widgets(qtbot, window):
    model = window.model_panel
    head_types = window.host.head_types()
    for head_id, head_type in head_types.items():
        model.head_combo.setCurrentIndex(model.head_combo.findData(head_id))
        for option in head_type.options:
            widget = model.head_form.widget(option.name)
            expected = {
                "int": QSpinBox,
                "float": QDoubleSpinBox,
                "bool": QCheckBox,
                "choice": QComboBox,
                "int_list": QLineEdit,
            }[option.kind]
            assert isinstance(widget, expected), (head_id, option.name)
            if option.kind == "int_list":
                assert widget.validator() is not None
                assert widget.validator().validate("256, 128", 0)[0].name == "Acceptable"
                assert widget.validator().validate("256, x", 0)[0].name == "Invalid"
        assert set(model.head_form.values()) == {o.name for o in head_type.options}


def test_the_model_list_is_searchable(qtbot, window):
    model = window.model_panel
    model.provider_combo.setCurrentIndex(model.provider_combo.findData("torchvision"))
    completer = model.model_combo.completer()
    completer.setCompletionPrefix("net_v3")
    matches = [
        completer.completionModel().index(i, 0).data() for i in range(completer.completionModel().rowCount())
    ]
    assert "mobilenet_v3_small" in matches and "mobilenet_v3_large" in matches
    assert all("net_v3" in m for m in matches)


def test_settings_and_fast_backbone_are_real(window):
    # The test backbone exists in the installed torchvision plugin.
    provider, name = window.host.resolve_backbone(FAST_BACKBONE)
    assert name == "mobilenet_v3_small"
    assert Path(window.settings.file_name).parent.exists()


def test_opening_a_project_does_not_mark_it_changed(qtbot, window, tiny_dataset, tmp_path):
    """Checking the project's own images is not an edit; choosing other images is."""
    configure_fast_run(window, qtbot, tiny_dataset)
    assert not window.isWindowModified()
    other = make_tiny_dataset(tmp_path / "other", classes=("cat", "dog"))
    window.open_dataset(other)
    qtbot.waitUntil(lambda: window.data_panel.prepared is not None, timeout=30_000)
    assert window.isWindowModified()


def test_choose_images_for_prediction_starts_in_the_dataset(qtbot, window, tiny_dataset):
    configure_fast_run(window, qtbot, tiny_dataset)
    view = window.prediction_view
    assert view._start_folder("last_image_folder", view._fallback_folder) == str(tiny_dataset)


def test_before_the_first_run_the_plots_span_the_epochs_to_train(qtbot, window, tiny_dataset):
    configure_fast_run(window, qtbot, tiny_dataset, epochs=7)
    assert window.plots.planned_epochs == 7
    window.training_panel.epochs_spin.setValue(12)
    assert window.plots.planned_epochs == 12
    (x_min, x_max), _ = window.plots.batch_plot.viewRange()
    assert x_min <= 0 and 12 <= x_max < 13
