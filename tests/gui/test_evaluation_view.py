"""The evaluation view, fed with results of a real classifier on real digit images."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QPalette

from desktop_tl.gui.evaluation_view import EMPTY_TEXT, EvaluationView
from desktop_tl.gui.image_gallery import ImagePreviewDialog, misclassified_label

SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def save_screenshot(widget, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    assert widget.grab().save(str(path)), f"could not write {path}"
    return path


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, colour in {
        QPalette.ColorRole.Window: "#202124",
        QPalette.ColorRole.WindowText: "#e8eaed",
        QPalette.ColorRole.Base: "#17181a",
        QPalette.ColorRole.AlternateBase: "#24262a",
        QPalette.ColorRole.Text: "#e8eaed",
        QPalette.ColorRole.Button: "#2d2f33",
        QPalette.ColorRole.ButtonText: "#e8eaed",
        QPalette.ColorRole.Highlight: "#4c8bf5",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.PlaceholderText: "#9aa0a6",
        QPalette.ColorRole.ToolTipBase: "#2d2f33",
        QPalette.ColorRole.ToolTipText: "#e8eaed",
    }.items():
        palette.setColor(role, QColor(colour))
    return palette


@pytest.fixture(scope="module")
def digit_results(tmp_path_factory):
    """Train a small naive Bayes classifier on sklearn's digits, predict held-out digits,
    and write the misclassified ones as PNG files, like the engine's validation report."""
    from sklearn.datasets import load_digits
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
    from sklearn.naive_bayes import GaussianNB

    digits = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(digits.target))
    train, val = order[:900], order[900:1200]
    model = GaussianNB().fit(digits.data[train], digits.target[train])
    probabilities = model.predict_proba(digits.data[val])
    predicted = probabilities.argmax(axis=1)
    truth = digits.target[val]

    labels = list(range(10))
    confusion = confusion_matrix(truth, predicted, labels=labels).tolist()
    precision, recall, _, _ = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )

    folder = tmp_path_factory.mktemp("val_images")
    misclassified = []
    for i in np.flatnonzero(predicted != truth):
        pixels = (digits.images[val[i]] / 16.0 * 255).astype(np.uint8)
        image = Image.fromarray(255 - pixels, mode="L").resize((64, 64), Image.Resampling.NEAREST)
        path = folder / f"{DIGIT_NAMES[truth[i]]}_{val[i]}.png"
        image.save(path)
        misclassified.append(
            {
                "path": str(path),
                "true": DIGIT_NAMES[truth[i]],
                "pred": DIGIT_NAMES[predicted[i]],
                "prob": round(float(probabilities[i].max()), 4),
            }
        )
    assert 10 <= len(misclassified) <= 150, "the classifier should make some, not only, mistakes"
    return {
        "class_names": DIGIT_NAMES,
        "confusion": confusion,
        "precision": [float(v) for v in precision],
        "recall": [float(v) for v in recall],
        "misclassified": misclassified,
    }


def test_empty_state_explains_what_will_appear(qtbot):
    view = EvaluationView()
    qtbot.addWidget(view)
    view.resize(900, 640)
    view.show()
    assert not view.has_results()
    label = view.findChild(type(view.summary_label), "evaluationEmptyText")
    assert label is not None and label.isVisible()
    assert label.text() == EMPTY_TEXT
    save_screenshot(view, "evaluation_view_empty")


def test_results_show_matrix_table_and_gallery(qtbot, digit_results):
    view = EvaluationView()
    qtbot.addWidget(view)
    view.resize(1180, 860)
    view.show()
    view.set_results(**digit_results, caption="best epoch 3 of 5")
    assert view.has_results()

    # The matrix holds exactly the counts it was given, rows true and columns predicted.
    assert view.matrix.matrix() == digit_results["confusion"]
    assert view.matrix.class_names() == DIGIT_NAMES
    total = sum(map(sum, digit_results["confusion"]))
    correct = sum(digit_results["confusion"][i][i] for i in range(10))
    assert f"{correct / total:.1%}" in view.summary_label.text()
    assert f"{total - correct} misclassified" in view.summary_label.text()

    # One table row per class with precision, recall and support.
    assert view.table.rowCount() == 10
    rows = {view.table.item(r, 0).text(): r for r in range(10)}
    for i, name in enumerate(DIGIT_NAMES):
        r = rows[name]
        assert view.table.item(r, 3).text() == str(sum(digit_results["confusion"][i]))
        expected_recall = digit_results["recall"][i]
        assert view.table.item(r, 2).text() == f"{expected_recall:.1%}"

    # Every mistake is in the gallery, most confident first, with its label.
    labels = view.gallery_labels()
    assert len(labels) == len(digit_results["misclassified"])
    first = max(digit_results["misclassified"], key=lambda e: e["prob"])
    assert labels[0] == misclassified_label(first)
    assert labels[0].startswith(f"true: {first['true']} / predicted: {first['pred']} (p=")

    # Thumbnails are read off the GUI thread; wait until the visible ones are in.
    qtbot.waitUntil(lambda: view.thumbnails.image(first["path"]) is not None, timeout=10_000)
    qtbot.waitUntil(lambda: not view.thumbnails.busy, timeout=10_000)
    view.gallery.viewport().update()
    qtbot.wait(50)
    save_screenshot(view, "evaluation_view_results")


def test_clicking_a_cell_filters_and_an_image_enlarges(qtbot, digit_results):
    view = EvaluationView()
    qtbot.addWidget(view)
    view.resize(1180, 860)
    view.show()
    view.set_results(**digit_results)
    confusion = digit_results["confusion"]
    # The largest off-diagonal cell: the model's most common confusion.
    i, j = max(((a, b) for a in range(10) for b in range(10) if a != b), key=lambda c: confusion[c[0]][c[1]])
    geometry = view.matrix._geometry()
    centre = geometry.origin + QPoint(
        j * geometry.cell + geometry.cell // 2, i * geometry.cell + geometry.cell // 2
    )
    qtbot.mouseClick(view.matrix, Qt.MouseButton.LeftButton, pos=centre)
    labels = view.gallery_labels()
    assert len(labels) == confusion[i][j]
    assert all(label.startswith(f"true: {DIGIT_NAMES[i]} / predicted: {DIGIT_NAMES[j]} ") for label in labels)
    assert view.show_all_button.isVisible()
    assert "predicted as" in view.matrix.cell_description(i, j)
    qtbot.waitUntil(lambda: not view.thumbnails.busy, timeout=10_000)
    view.gallery.viewport().update()
    qtbot.wait(50)
    save_screenshot(view, "evaluation_view_filtered")

    # Clicking a thumbnail opens it large with its labels.
    index = view.gallery.model().index(0, 0)
    rect = view.gallery.visualRect(index)
    qtbot.mouseClick(view.gallery.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    dialog = view.findChild(ImagePreviewDialog)
    assert dialog is not None and dialog.isVisible()
    assert dialog.current_entry()["true"] == DIGIT_NAMES[i]
    qtbot.waitUntil(dialog.has_image, timeout=10_000)
    assert not dialog.image_label.pixmap().isNull()
    save_screenshot(dialog, "evaluation_view_enlarged")
    dialog.close()

    view.show_all_button.click()
    assert len(view.gallery_labels()) == len(digit_results["misclassified"])

    view.clear()
    assert not view.has_results()
    assert view.gallery_labels() == []


def test_unreadable_gallery_image_shows_its_reason(qtbot, tmp_path, digit_results):
    broken = tmp_path / "truncated.png"
    good = Path(digit_results["misclassified"][0]["path"])
    broken.write_bytes(good.read_bytes()[:40])
    entry = {"path": str(broken), "true": "three", "pred": "eight", "prob": 0.91}
    view = EvaluationView()
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    confusion = [[5 if a == b else 0 for b in range(10)] for a in range(10)]
    confusion[3][3], confusion[3][8] = 4, 1
    view.set_results(DIGIT_NAMES, confusion, [1.0] * 10, [1.0] * 10, [entry])
    qtbot.waitUntil(lambda: view.thumbnails.error(str(broken)) is not None, timeout=10_000)
    tooltip = view.gallery.model().item(0).toolTip()
    assert "Cannot show this image" in tooltip
    assert view.thumbnails.error(str(broken)) in tooltip
    # A class never predicted has no precision, one without images no recall: shown as "—".
    view.set_results(
        ["cat", "dog", "bird"], [[3, 0, 0], [0, 2, 0], [0, 0, 0]], [1.0, 1.0, 0.0], [1.0, 1.0, 0.0], []
    )
    rows = {view.table.item(r, 0).text(): r for r in range(3)}
    assert view.table.item(rows["bird"], 1).text() == "—"
    assert view.table.item(rows["bird"], 2).text() == "—"
    assert view.gallery.placeholder == "No validation image was misclassified."


def test_follows_a_dark_palette(qtbot, digit_results):
    view = EvaluationView()
    qtbot.addWidget(view)
    view.setPalette(dark_palette())
    view.resize(1180, 860)
    view.show()
    view.set_results(**digit_results)
    qtbot.waitUntil(lambda: not view.thumbnails.busy, timeout=10_000)
    view.gallery.viewport().update()
    qtbot.wait(50)
    image = view.matrix.grab().toImage()
    # The matrix background follows the palette's base colour, not a fixed white.
    assert image.pixelColor(2, 2).lightness() < 60
    save_screenshot(view, "evaluation_view_results_dark")


def test_rejects_results_of_the_wrong_shape(qtbot):
    view = EvaluationView()
    qtbot.addWidget(view)
    with pytest.raises(ValueError, match="3x3"):
        view.set_results(["a", "b", "c"], [[1, 0], [0, 1]], [1, 1, 1], [1, 1, 1], [])


def test_per_epoch_results_without_images_or_rates(qtbot, digit_results):
    """During training only the matrix is known: rates are derived from it and the gallery
    says the images come at the end rather than claiming there were no mistakes."""
    view = EvaluationView()
    qtbot.addWidget(view)
    view.set_results(digit_results["class_names"], digit_results["confusion"], [], [], [])
    rows = {view.table.item(r, 0).text(): r for r in range(10)}
    for i, name in enumerate(DIGIT_NAMES):
        assert view.table.item(rows[name], 1).text() == f"{digit_results['precision'][i]:.1%}"
        assert view.table.item(rows[name], 2).text() == f"{digit_results['recall'][i]:.1%}"
    assert view.gallery_labels() == []
    assert "when training finishes" in view.gallery.placeholder


def test_without_mistakes_the_gallery_is_one_line_even_in_a_hidden_tab(qtbot, digit_results):
    """Results that arrive while another tab is in front must still leave the matrix the
    room when nothing was misclassified (the gallery only says so)."""
    from PySide6.QtWidgets import QLabel, QTabWidget

    tabs = QTabWidget()
    qtbot.addWidget(tabs)
    tabs.addTab(QLabel("training"), "Train")
    view = EvaluationView()
    tabs.addTab(view, "Evaluation")
    tabs.resize(1400, 860)
    tabs.show()
    qtbot.waitExposed(tabs)

    names = digit_results["class_names"]
    perfect = [[10 if i == j else 0 for j in range(10)] for i in range(10)]
    view.set_results(names, perfect, [1.0] * 10, [1.0] * 10, [])  # while hidden
    tabs.setCurrentWidget(view)
    qtbot.wait(50)
    assert view.gallery_is_compact()
    assert view.gallery.placeholder == "No validation image was misclassified."
    gallery_box = view.gallery.parentWidget()
    assert gallery_box.height() < view.height() // 6
    assert view.matrix.height() > view.height() // 2
    save_screenshot(view, "evaluation_view_no_mistakes")

    # Mistakes at the end of the next run: the gallery takes its share again.
    view.set_results(**digit_results)
    qtbot.wait(50)
    assert not view.gallery_is_compact()
    assert view.gallery.parentWidget().height() > view.height() // 4
