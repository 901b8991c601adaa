"""Where the model looked, in the window's views: the misclassified gallery's enlarged
view and the prediction list show Grad-CAM maps of a really trained classifier, computed
off the GUI thread; a backbone without a feature map and an image deleted since it was
listed say so in place of the map."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading

import numpy as np
import pytest
from helpers_training import lite0_config, sample_subset
from window_helpers import save_screenshot
from PIL import Image
from PySide6.QtCore import Qt

from desktop_tl.gui.evaluation_view import EvaluationView
from desktop_tl.gui.prediction_view import PredictionView
from desktop_tl.gui.settings import AppSettings


def save_shot(widget, name: str) -> None:
    save_screenshot(widget, f"explanations-{name}")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """EfficientNet-Lite0 (ImageNet weights) with a linear head, trained two epochs on
    real brick and grass photos; and a photo half brick, half grass."""
    from desktop_tl.core.training import Trainer

    root = tmp_path_factory.mktemp("explanations")
    photos = sample_subset(root / "photos", classes=("brick", "grass"), n_train=8, n_val=4)
    finished = Trainer(lite0_config(photos, root / "run", epochs=2, device="cpu")).run()
    assert finished.status == "completed", finished.reason
    brick = Image.open(min((photos / "val" / "brick").iterdir())).convert("RGB").resize((256, 256))
    grass = Image.open(min((photos / "val" / "grass").iterdir())).convert("RGB").resize((256, 256))
    both = Image.new("RGB", (512, 256))
    both.paste(brick, (0, 0))
    both.paste(grass, (256, 0))
    both.save(root / "brick_and_grass.png")
    return {"run": root / "run", "photos": photos, "both": root / "brick_and_grass.png"}


def _halves(heatmap: np.ndarray) -> tuple[float, float]:
    middle = heatmap.shape[1] // 2
    return float(heatmap[:, :middle].mean()), float(heatmap[:, middle:].mean())


def _record_worker_threads(view) -> list[threading.Thread]:
    """The threads the view's explainer is asked for on (the real one still answers)."""
    threads: list[threading.Thread] = []
    cache = view._cache
    original = cache.explainer

    def recording(predictor):
        threads.append(threading.current_thread())
        return original(predictor)

    cache.explainer = recording
    return threads


def test_gallery_preview_shows_the_map_for_the_predicted_and_the_true_class(qtbot, trained, tmp_path):
    from desktop_tl.core.predict import Predictor

    predictor = Predictor.from_run_dir(trained["run"])
    (prediction,) = predictor.predict([trained["both"]], top_k=2)
    predicted, probability = prediction.top[0]
    true = next(name for name in predictor.class_names if name != predicted)
    gone = tmp_path / "gone.png"
    Image.open(trained["both"]).save(gone)
    report = predictor.evaluate(
        [
            (p, predictor.class_names.index(p.parent.name))
            for p in sorted((trained["photos"] / "val").rglob("*.jpg"))
        ]
    )
    entries = [
        # The composite shows both classes; listed as a mistake of the other one.
        {"path": str(trained["both"]), "true": true, "pred": predicted, "prob": probability},
        {"path": str(gone), "true": true, "pred": predicted, "prob": probability / 2},
    ]

    view = EvaluationView()
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.show()
    view.set_results(
        predictor.class_names,
        report.confusion,
        report.precision,
        report.recall,
        entries,
        caption="best epoch of the run",
    )
    view.set_explanation_model(predictor, "saved run: run (best epoch)")
    dialog = view.open_preview(0)
    qtbot.addWidget(dialog)
    shown = dialog.view
    threads = _record_worker_threads(shown)
    qtbot.waitUntil(dialog.has_image, timeout=10_000)
    gone.unlink()  # deleted while the gallery lists it

    image_only, for_predicted, for_true = shown.choice_buttons()
    assert image_only.isChecked() and shown.shown_explanation() is None  # maps only on demand
    assert for_predicted.text() == f"predicted: {predicted}" and for_true.text() == f"true: {true}"

    qtbot.mouseClick(for_predicted, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: shown.shown_explanation() is not None, timeout=60_000)
    on_predicted = shown.shown_explanation()
    assert on_predicted.class_name == predicted
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert shown._cache._explainer.model is not predictor.model  # a copy, never the serving model
    assert on_predicted.overlay.width() == 512 and on_predicted.overlay.height() == 256
    assert on_predicted.heatmap.shape == (256, 512) and np.isfinite(on_predicted.heatmap).all()
    pixmap = dialog.image_label.pixmap()
    assert not pixmap.isNull() and abs(pixmap.width() / pixmap.height() - 2) < 0.02
    caption = shown.map_caption.text()
    assert f"looked for <b>{predicted}</b>" in caption and "predicted class" in caption
    assert shown.legend.isVisible()
    save_shot(dialog, "gallery_predicted_class")

    qtbot.mouseClick(for_true, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: shown.shown_class() == true and shown.shown_explanation() is not None, timeout=60_000
    )
    on_true = shown.shown_explanation()
    assert on_true.class_name == true and "true class" in shown.map_caption.text()
    # Each class's map lies on the half of the photo that shows it.
    halves = {e.class_name: _halves(e.heatmap) for e in (on_predicted, on_true)}
    assert halves["brick"][0] > 2 * halves["brick"][1]
    assert halves["grass"][1] > 2 * halves["grass"][0]
    save_shot(dialog, "gallery_true_class")

    # The next mistake's file is gone: the reason in place of the map, nothing else lost.
    qtbot.mouseClick(dialog.next_button, Qt.MouseButton.LeftButton)
    assert shown.shown_class() == true  # the chosen map stays chosen when stepping on
    qtbot.waitUntil(lambda: "no longer there" in shown.message(), timeout=30_000)
    assert "gone.png" in dialog.image_label.text() and shown.shown_explanation() is None
    assert "No heat map" in shown.map_caption.text()
    save_shot(dialog, "gallery_image_deleted")
    qtbot.mouseClick(dialog.previous_button, Qt.MouseButton.LeftButton)
    assert shown.shown_explanation() is on_true  # computed once, shown again at once


def test_without_a_model_the_gallery_says_how_to_get_one(qtbot, trained):
    entry = {"path": str(trained["both"]), "true": "brick", "pred": "grass", "prob": 0.7}
    view = EvaluationView()
    qtbot.addWidget(view)
    view.show()
    view.set_results(["brick", "grass"], [[0, 1], [0, 1]], [], [], [entry])
    dialog = view.open_preview(0)
    qtbot.addWidget(dialog)
    _, for_predicted, for_true = dialog.view.choice_buttons()
    assert not for_predicted.isEnabled() and not for_true.isEnabled()
    assert "load a saved run in the Prediction tab" in dialog.view.map_caption.text()


def wait_idle(qtbot, view: PredictionView) -> None:
    qtbot.waitUntil(lambda: not view.busy and all(r.status != "waiting" for r in view.rows()), timeout=60_000)


def test_a_prediction_row_opens_with_the_map_of_its_top_class(qtbot, trained, tmp_path):
    view = PredictionView(settings=AppSettings(tmp_path / "s.ini"))
    qtbot.addWidget(view)
    view.resize(1000, 560)
    view.show()
    view.load_run(trained["run"])
    qtbot.waitUntil(lambda: view.predictor is not None, timeout=60_000)
    copy = tmp_path / "brick_and_grass.png"
    copy.write_bytes(trained["both"].read_bytes())
    assert view.add_images([copy]) == 1
    wait_idle(qtbot, view)
    (row,) = view.rows()
    top_class = row.top[0][0]

    assert not view.explain_button.isEnabled()  # no row chosen yet
    view._list.setCurrentIndex(view._list.model().index(0, 0))
    assert view.explain_button.isEnabled()
    save_shot(view, "prediction_list_with_button")
    qtbot.mouseClick(view.explain_button, Qt.MouseButton.LeftButton)
    dialog = view.explanation_dialog
    assert dialog is not None and dialog.isVisible()
    shown = dialog.view
    qtbot.waitUntil(lambda: shown.shown_explanation() is not None, timeout=60_000)
    top = shown.shown_explanation()
    assert top.class_name == top_class and shown.shown_class() == top_class
    assert "top class" in shown.map_caption.text() and top_class in shown.map_caption.text()
    assert top.overlay.width() == 2 * top.overlay.height()  # the image's own aspect
    save_shot(dialog, "prediction_top_class")

    _, _, second_button = shown.choice_buttons()
    qtbot.mouseClick(second_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: shown.shown_class() != top_class and shown.shown_explanation() is not None, timeout=60_000
    )
    second = shown.shown_explanation()
    assert second.class_name == row.top[1][0]
    assert np.abs(second.heatmap - top.heatmap).mean() > 0.1  # another class, another place

    # Deleted after it was predicted: asking again says so.
    copy.unlink()
    dialog = view.explain_row(0)
    qtbot.waitUntil(lambda: "no longer there" in dialog.view.message(), timeout=30_000)
    assert "brick_and_grass.png" in dialog.view.image_label.text()
    save_shot(dialog, "prediction_image_deleted")


def test_a_vision_transformer_says_it_cannot_be_explained(qtbot, trained, tmp_path):
    import torch

    from desktop_tl.core.model import TransferModel
    from desktop_tl.core.predict import Predictor
    from desktop_tl.plugin.manager import get_host

    provider, name = get_host().resolve_backbone("torchvision:vit_b_16")
    backbone = provider.create(name, "none")
    model = TransferModel(backbone.module, torch.nn.Linear(backbone.feature_dim, 2))
    predictor = Predictor(model, ["brick", "grass"], backbone.preprocessing)

    view = PredictionView(settings=AppSettings(tmp_path / "s.ini"))
    qtbot.addWidget(view)
    view.resize(1000, 560)
    view.show()
    view.set_predictor(predictor, "vit_b_16 (untrained)")
    view.add_images([trained["both"]])
    wait_idle(qtbot, view)
    dialog = view.explain_row(0)
    shown = dialog.view
    qtbot.waitUntil(lambda: "convolutional feature map" in shown.message(), timeout=60_000)
    assert "vision transformer" in shown.message() and shown.shown_explanation() is None
    assert shown.image_label.pixmap().isNull()  # no map rather than one that means nothing
    assert "No heat map" in shown.map_caption.text()
    save_shot(dialog, "prediction_vit_unsupported")
    # The image alone can still be looked at.
    qtbot.mouseClick(shown.choice_buttons()[0], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(shown.has_image, timeout=10_000)
    assert not shown.image_label.pixmap().isNull() and shown.message() == ""


def test_the_window_explains_the_gallery_with_the_evaluated_checkpoint(qtbot, window, trained):
    view = window.evaluation_view
    window.prediction_view.load_run(trained["run"], label="saved run: run")
    qtbot.waitUntil(lambda: view.evaluation is not None and not view.busy, timeout=60_000)
    assert view.explanation_model is view.evaluation.predictor
    assert view.explanation_model.checkpoint == "best"
    # The gallery's enlarged view explains with that checkpoint: its label names it.
    wrong = view.evaluation.report.misclassified
    entries = [m.to_dict() for m in wrong] or [
        {"path": str(trained["both"]), "true": "brick", "pred": "grass", "prob": 0.6}
    ]
    if not wrong:  # a model without mistakes: show one image as if it were one
        view._show(["brick", "grass"], [[3, 1], [0, 4]], [], [], entries)
    dialog = view.open_preview(0)
    _, for_predicted, _ = dialog.view.choice_buttons()
    assert for_predicted.isEnabled()
    qtbot.mouseClick(for_predicted, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.view.shown_explanation() is not None, timeout=60_000)
    assert f"best checkpoint, epoch {view.evaluation.epoch}" in dialog.view.map_caption.text()
    dialog.close()
    # Choosing the last checkpoint changes the model the gallery explains with.
    view.set_checkpoint("last")
    qtbot.waitUntil(
        lambda: view.evaluation is not None and view.evaluation.checkpoint == "last" and not view.busy,
        timeout=60_000,
    )
    assert view.explanation_model is view.evaluation.predictor
    assert view.explanation_model.checkpoint == "last"
    qtbot.waitUntil(
        lambda: not view.thumbnails.busy and not window.prediction_view.busy and not dialog.view.busy,
        timeout=30_000,
    )
