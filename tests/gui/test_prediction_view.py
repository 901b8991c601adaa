"""The prediction view with a real predictor loaded from a run folder that the engine
trained on small texture images."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from desktop_tl.gui.prediction_view import NO_MODEL_TEXT, PredictionView
from desktop_tl.gui.settings import AppSettings

SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
TEXTURES = ("brick", "grass", "gravel")


def save_screenshot(widget, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    assert widget.grab().save(str(path)), f"could not write {path}"
    return path


def texture_tiles(name: str, count: int, offset: int = 0) -> list[Image.Image]:
    from skimage import data

    pixels = getattr(data, name)()
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    tiles = []
    for i in range(offset, offset + count):
        y, x = (i // 6) * 64, (i % 6) * 64
        tiles.append(Image.fromarray(pixels[y : y + 64, x : x + 64]).convert("RGB"))
    return tiles


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run folder written by the engine: 3 texture classes, a small torchvision
    backbone from random initialisation, head only, two epochs on CPU."""
    import torch

    from desktop_tl.core.config import RunConfig
    from desktop_tl.core.training import Trainer

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("prediction")
    for name in TEXTURES:
        folder = root / "data" / name
        folder.mkdir(parents=True)
        for i, tile in enumerate(texture_tiles(name, 8)):
            tile.save(folder / f"{name}_{i}.png")
    config = RunConfig()
    config.data.path = str(root / "data")
    config.data.val_fraction = 0.25
    config.data.num_workers = 0
    config.model.backbone = "torchvision:mobilenet_v3_small"
    config.model.weights = "none"
    config.train.epochs = 2
    config.train.batch_size = 8
    config.train.device = "cpu"
    config.out = str(root / "run")
    finished = Trainer(config).run()
    assert finished.status == "completed", finished.reason

    # Images the model has not seen: new tiles of each texture, and a broken file.
    new = root / "new"
    new.mkdir()
    for name in TEXTURES:
        texture_tiles(name, 1, offset=12)[0].save(new / f"new_{name}.png")
    (new / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return {"run": root / "run", "new": new}


def wait_idle(qtbot, view: PredictionView) -> None:
    qtbot.waitUntil(lambda: not view.busy, timeout=60_000)
    qtbot.waitUntil(lambda: not view._list.thumbnails.busy, timeout=10_000)
    view._list.viewport().update()
    qtbot.wait(30)


def test_without_a_model_says_what_to_do(qtbot, tmp_path):
    view = PredictionView(settings=AppSettings(tmp_path / "s.ini"))
    qtbot.addWidget(view)
    view.resize(900, 520)
    view.show()
    assert view.predictor is None
    assert "none yet" in view.model_label.text()
    assert NO_MODEL_TEXT in view._list.placeholder
    assert not view.top_k_spin.isEnabled()
    save_screenshot(view, "prediction_view_no_model")

    image = tmp_path / "waiting.png"
    texture_tiles("brick", 1)[0].save(image)
    assert view.add_images([image]) == 1
    assert [r.status for r in view.rows()] == ["no-model"]
    assert not view.busy


def test_load_saved_run_then_predict_dropped_images(qtbot, tmp_path, trained_run):
    from desktop_tl.core.predict import Predictor

    settings = AppSettings(tmp_path / "s.ini")
    view = PredictionView(settings=settings)
    qtbot.addWidget(view)
    view.resize(980, 620)
    view.show()
    loaded = []
    view.run_loaded.connect(loaded.append)

    view.load_run(trained_run["run"])
    assert view.busy  # loading happens on a worker thread
    qtbot.waitUntil(lambda: view.predictor is not None, timeout=60_000)
    assert loaded == [os.path.abspath(trained_run["run"])]
    assert settings.last_run_folder == os.path.abspath(trained_run["run"])
    assert "saved run: run" in view.model_label.text()
    assert sorted(view.predictor.class_names) == sorted(TEXTURES)
    assert view.top_k_spin.maximum() == 3

    # Prediction runs on a worker thread, never on the GUI thread.
    threads = []
    original = view.predictor.predict

    def recording_predict(*args, **kwargs):
        threads.append(threading.current_thread())
        return original(*args, **kwargs)

    view.predictor.predict = recording_predict

    # Drop the folder of new images on the view.
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(trained_run["new"]))])
    enter = QDragEnterEvent(
        QPoint(50, 50),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(view, enter)
    assert enter.isAccepted()
    assert view._list.drop_active
    drop = QDropEvent(
        QPoint(50, 50),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(view, drop)
    assert not view._list.drop_active
    wait_idle(qtbot, view)

    rows = {Path(r.path).name: r for r in view.rows()}
    assert set(rows) == {"broken.jpg", "new_brick.png", "new_grass.png", "new_gravel.png"}
    assert threads and all(t is not threading.main_thread() for t in threads)

    # The broken file shows why it cannot be read; the others show top-k probabilities
    # equal to what the predictor gives directly.
    broken = rows["broken.jpg"]
    assert broken.status == "error"
    assert broken.error.startswith("Cannot read this image: ")
    direct = Predictor.from_run_dir(trained_run["run"]).predict(
        [rows[f"new_{n}.png"].path for n in TEXTURES], top_k=3
    )
    for prediction in direct:
        row = rows[Path(prediction.path).name]
        assert row.status == "done"
        assert [name for name, _ in row.top] == [name for name, _ in prediction.top]
        assert [p for _, p in row.top] == pytest.approx([p for _, p in prediction.top], abs=1e-5)
        assert sum(p for _, p in row.top) == pytest.approx(1.0, abs=1e-4)
    assert "3 images predicted · 1 could not be read" in view.status_text()
    save_screenshot(view, "prediction_view_results")

    view.top_k_spin.setValue(1)
    assert view.top_k == 1
    qtbot.wait(30)
    save_screenshot(view, "prediction_view_top1")

    # Adding the same files again adds nothing.
    assert view.add_images([rows["new_brick.png"].path]) == 0
    view.clear()
    assert view.rows() == []


def test_switching_models_repredicts_and_clearing_the_model_waits(qtbot, trained_run):
    from desktop_tl.core.predict import Predictor

    view = PredictionView()
    qtbot.addWidget(view)
    view.resize(900, 500)
    view.show()
    images = sorted(str(p) for p in trained_run["new"].glob("new_*.png"))
    view.add_images(images)
    assert {r.status for r in view.rows()} == {"no-model"}

    predictor = Predictor.from_run_dir(trained_run["run"])
    view.set_predictor(predictor, "current model")
    assert "current model" in view.model_label.text()
    wait_idle(qtbot, view)
    assert {r.status for r in view.rows()} == {"done"}

    # Without a label the view still says which model it uses.
    view.set_predictor(Predictor.from_run_dir(trained_run["run"]))
    assert "latest trained model" in view.model_label.text()
    wait_idle(qtbot, view)
    assert {r.status for r in view.rows()} == {"done"}

    view.set_predictor(None, "")
    assert {r.status for r in view.rows()} == {"no-model"}
    assert all(r.top == [] for r in view.rows())


def test_a_folder_that_is_not_a_run_is_explained(qtbot, tmp_path):
    view = PredictionView()
    qtbot.addWidget(view)
    view.resize(900, 400)
    view.show()
    not_a_run = tmp_path / "holiday photos"
    not_a_run.mkdir()
    view.load_run(not_a_run)
    qtbot.waitUntil(lambda: not view.busy, timeout=60_000)
    assert view.predictor is None
    text = view.status_text()
    assert text.startswith("Could not load a model")
    assert str(not_a_run) in text
    assert "checkpoint" in text
    assert view.load_run_button.isEnabled()
    qtbot.wait(50)  # let the layout give the wrapped message its height
    save_screenshot(view, "prediction_view_bad_run")


def test_probabilities_never_round_to_a_full_or_empty_bar():
    from desktop_tl.gui.prediction_rows import format_probability

    assert format_probability(0.998) == "99.8%"
    assert format_probability(0.9996) == ">99.9%"  # not "100.0%" beside a bar short of full
    assert format_probability(1.0) == "100%"
    assert format_probability(0.0004) == "<0.1%"
    assert format_probability(0.0) == "0%"
    assert format_probability(0.3333) == "33.3%"


def test_the_best_class_is_written_as_its_bar_says(qtbot, trained_run):
    """The headline beside the thumbnail and the bar's number use the same rounding."""
    from desktop_tl.core.predict import Predictor
    from desktop_tl.gui.prediction_rows import format_probability

    view = PredictionView()
    qtbot.addWidget(view)
    view.resize(900, 400)
    view.show()
    view.set_predictor(Predictor.from_run_dir(trained_run["run"]), "current model")
    view.add_images([trained_run["new"] / "new_brick.png"])
    wait_idle(qtbot, view)
    row = view.rows()[0]
    best, probability = row.top[0]
    tooltip = view._list.model().item(0).toolTip()
    assert f"{best}: {format_probability(probability)}" in tooltip
    assert view.top_k_spin.value() >= 1


def test_thumbnails_are_read_when_images_are_added_not_when_first_shown(qtbot, trained_run):
    """A hidden Prediction tab still has its thumbnails ready when it is opened, instead
    of showing "loading…" tiles until the rows are first painted."""
    view = PredictionView()
    qtbot.addWidget(view)
    view.resize(900, 400)  # never shown
    images = sorted(trained_run["new"].glob("new_*.png"))
    assert view.add_images(images) == 3
    qtbot.waitUntil(lambda: all(view.thumbnail_ready(p) for p in images), timeout=10_000)
    assert not view.isVisible()


def test_choose_images_starts_in_the_dataset_folder_until_one_is_chosen(qtbot, tmp_path):
    settings = AppSettings(tmp_path / "s.ini")
    view = PredictionView(settings=settings)
    qtbot.addWidget(view)
    data = tmp_path / "data"
    data.mkdir()
    view.set_fallback_folder(data)
    assert view._start_folder("last_image_folder", view._fallback_folder) == str(data)
    chosen = tmp_path / "photos"
    chosen.mkdir()
    settings.last_image_folder = str(chosen)
    assert view._start_folder("last_image_folder", view._fallback_folder) == str(chosen)


def test_a_run_loaded_for_the_window_says_where_it_came_from(qtbot, trained_run):
    view = PredictionView()
    qtbot.addWidget(view)
    view.load_run(trained_run["run"], label="just trained · run (best epoch)")
    qtbot.waitUntil(lambda: view.predictor is not None, timeout=60_000)
    assert "just trained · run (best epoch)" in view.model_label.text()
    assert "saved run" not in view.model_label.text()


def test_predictions_sort_and_filter_by_label_and_confidence_with_a_summary(qtbot, tmp_path, trained_run):
    from collections import Counter

    from desktop_tl.core.predict import Predictor

    view = PredictionView()
    qtbot.addWidget(view)
    view.resize(980, 620)
    view.show()
    predictor = Predictor.from_run_dir(trained_run["run"])
    view.set_predictor(predictor, "saved run: run")
    images = tmp_path / "many"
    images.mkdir()
    for name in TEXTURES:
        for i, tile in enumerate(texture_tiles(name, 4, offset=14)):
            tile.save(images / f"{name}_{i}.png")
    (images / "broken.png").write_bytes(b"not a png")
    assert view.add_images([images]) == 13
    qtbot.waitUntil(lambda: all(r.status in ("done", "error") for r in view.rows()), timeout=60_000)
    done = [r for r in view.rows() if r.status == "done"]
    counts = Counter(r.top[0][0] for r in done)
    bar = view.filter_bar
    summary = bar.summary_label.text()
    assert summary.startswith("Predicted:") and "showing" not in summary
    for name, n in counts.items():
        assert f"{name} {n}" in summary
    assert len(view.shown_rows()) == 13  # no filter: everything, the unreadable file too

    label, n = counts.most_common(1)[0]
    bar.set_filter(label=label)
    shown = view.shown_rows()
    assert len(shown) == n and all(r.top[0][0] == label for r in shown)
    assert f"(showing {n} of 13)" in bar.summary_label.text()

    median = sorted(r.top[0][1] for r in done)[len(done) // 2]
    bar.set_filter(min_percent=int(median * 100))
    shown = view.shown_rows()
    assert shown and all(r.top[0][1] >= int(median * 100) / 100 for r in shown)
    assert len(shown) < 13

    bar.set_filter(sort="confidence-desc")
    order = [r.top[0][1] for r in view.rows() if r.status == "done"]
    assert order == sorted(order, reverse=True)
    assert view.rows()[-1].status == "error"  # rows without a result go last
    # The table saved is what is shown: filtered, in the order shown.
    import csv

    from desktop_tl.errors import UserError

    bar.set_filter(min_percent=int(median * 100), sort="confidence-desc")
    table = tmp_path / "predictions.csv"
    assert view.save_csv(table) == len(view.shown_rows())
    saved = list(csv.DictReader(table.open()))
    assert [row["path"] for row in saved] == [r.path for r in view.shown_rows()]
    probabilities = [float(row["probability_1"]) for row in saved]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(p >= int(median * 100) / 100 for p in probabilities)
    (tmp_path / "a-file").write_text("a file where a folder should be")
    with pytest.raises(UserError, match="cannot write"):
        view.save_csv(tmp_path / "a-file" / "t.csv")
    bar.set_filter(sort="added")
    assert [Path(r.path).name for r in view.rows()] == [
        Path(p).name for p in sorted(map(str, images.iterdir()))
    ]
    save_screenshot(view, "prediction-sorted-filtered")
