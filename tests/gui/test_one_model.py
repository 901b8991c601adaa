"""One model across tabs, in the real window on a real run: the Evaluation tab scores the
run's validation split with the checkpoint chosen (best or last) and names it, Prediction
and the gallery's heat maps use the same checkpoint, a switch in either tab updates both;
F1, averages and top-k equal scikit-learn's; the matrix can show row shares; a missing or
damaged checkpoint and images that are gone each get a message."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from sklearn import metrics as sk

from desktop_tl.core.cancelled import Cancelled

from helpers_data import truncate_file
from helpers_training import train_with_cli
from window_helpers import FAST_BACKBONE, make_tiny_dataset, save_screenshot

TIMEOUT_MS = 120_000
CLASSES = ("red", "green", "blue", "yellow", "purple", "crimson")  # six: top-3 and top-5 shown


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run made by `desktop-tl train` on six classes for three epochs. Its best
    checkpoint is made to differ from its last for certain: it is replaced by the best
    checkpoint of a one-epoch run of the same settings on the same split (so a switch
    must change the numbers on screen; each is checked against its own meta.json)."""
    root = tmp_path_factory.mktemp("one_model")
    data = make_tiny_dataset(root / "data", per_class_train=4, per_class_val=2, classes=CLASSES)
    runs = {}
    for epochs in (1, 3):
        options = ("--weights", "none", "--epochs", str(epochs), "--batch-size", "8", "--lr", "0.01")
        runs[epochs] = train_with_cli(
            root / f"runs{epochs}", data, FAST_BACKBONE, *options, "--precision", "fp32"
        )
    run = runs[3]
    shutil.rmtree(run / "checkpoints" / "best")
    shutil.copytree(runs[1] / "checkpoints" / "best", run / "checkpoints" / "best")
    return {"run": run, "data": data, "root": root}


def _epoch(run: Path, kind: str) -> int:
    return json.loads((run / "checkpoints" / kind / "meta.json").read_text())["epoch"]


def _wait_for(qtbot, view, kind: str) -> None:
    qtbot.waitUntil(
        lambda: not view.busy and view.evaluation is not None and view.evaluation.checkpoint == kind,
        timeout=TIMEOUT_MS,
    )


def _settle(qtbot, window) -> None:
    """Let the thumbnails and predictions still on their way arrive before the window goes."""
    qtbot.waitUntil(
        lambda: (
            not window.evaluation_view.thumbnails.busy
            and not window.prediction_view.busy
            and not window.evaluation_view.busy
        ),
        timeout=TIMEOUT_MS,
    )


def _shot(widget, name: str) -> None:
    save_screenshot(widget, f"onemodel-{name}")


def test_evaluation_and_prediction_use_the_chosen_checkpoint(window, qtbot, trained):
    run = trained["run"]
    evaluation, prediction = window.evaluation_view, window.prediction_view
    # Load saved run… in the Prediction tab: the Evaluation tab follows with the same checkpoint.
    prediction.load_run(run, label=f"saved run: {run.name}")
    _wait_for(qtbot, evaluation, "best")
    best_epoch = _epoch(run, "best")
    assert f"best checkpoint, epoch {best_epoch}" in evaluation.checkpoint_text()
    qtbot.waitUntil(lambda: prediction.predictor is not None, timeout=TIMEOUT_MS)
    assert prediction.predictor.source == evaluation.evaluation.predictor.source
    assert f"best checkpoint, epoch {best_epoch}" in prediction.model_label.text()
    # The gallery explains with the evaluation's model.
    assert evaluation.explanation_model is evaluation.evaluation.predictor

    # The same probabilities for the same image in both tabs.
    image = str(sorted((trained["data"] / "val" / "crimson").iterdir())[0])
    prediction.add_images([image])

    def agree(kind: str) -> None:
        qtbot.waitUntil(
            lambda: prediction.rows()[0].status == "done" and prediction.predictor.checkpoint == kind,
            timeout=TIMEOUT_MS,
        )
        scored = evaluation.evaluation.probabilities[image]
        top = max(range(len(scored)), key=scored.__getitem__)
        name, probability = prediction.rows()[0].top[0]
        assert name == evaluation.evaluation.predictor.class_names[top]
        assert probability == pytest.approx(scored[top], abs=1e-6)

    agree("best")
    best_probabilities = dict(evaluation.evaluation.probabilities)
    window.show_tab(evaluation)
    qtbot.wait(300)  # the gallery's thumbnails
    _shot(window, "evaluation-best")

    # Choosing the last checkpoint in the Prediction tab updates both tabs.
    prediction.checkpoint_combo.setCurrentIndex(prediction.checkpoint_combo.findData("last"))
    _wait_for(qtbot, evaluation, "last")
    last_epoch = _epoch(run, "last")
    assert (best_epoch, last_epoch) == (1, 3)
    assert evaluation.evaluation.probabilities[image] != pytest.approx(best_probabilities[image], abs=1e-6)
    assert f"last checkpoint, epoch {last_epoch}" in evaluation.checkpoint_text()
    assert evaluation.checkpoint() == "last"
    agree("last")
    assert f"last checkpoint, epoch {last_epoch}" in prediction.model_label.text()
    assert evaluation.explanation_model is evaluation.evaluation.predictor
    window.show_tab(prediction)
    _shot(window, "prediction-last")

    # And back to the best one from the Evaluation tab.
    evaluation.set_checkpoint("best")
    _wait_for(qtbot, evaluation, "best")
    assert prediction.checkpoint() == "best"
    agree("best")

    # F1, the averages and top-k equal scikit-learn's over the same images.
    from desktop_tl.core.data import PreparedData

    labels = dict(PreparedData.load_manifest(run / "split.json").val)
    scored = evaluation.evaluation.probabilities
    paths = sorted(scored)
    y_true = [labels[p] for p in paths]
    y_prob = [scored[p] for p in paths]
    y_pred = [max(range(len(row)), key=row.__getitem__) for row in y_prob]
    every = list(range(len(CLASSES)))
    detailed = evaluation.detailed_metrics()
    for average, rates in (("macro", detailed.macro), ("weighted", detailed.weighted)):
        kw = {"labels": every, "average": average, "zero_division": 0}
        assert rates.precision == pytest.approx(sk.precision_score(y_true, y_pred, **kw), abs=1e-5)
        assert rates.recall == pytest.approx(sk.recall_score(y_true, y_pred, **kw), abs=1e-5)
        assert rates.f1 == pytest.approx(sk.f1_score(y_true, y_pred, **kw), abs=1e-5)
    per_class = sk.f1_score(y_true, y_pred, labels=every, average=None, zero_division=0)
    assert detailed.f1 == pytest.approx(list(per_class), abs=1e-5)
    assert sorted(detailed.top_k) == [3, 5]
    for k, value in detailed.top_k.items():
        assert value == pytest.approx(sk.top_k_accuracy_score(y_true, y_prob, k=k, labels=every))
        assert f"Top-{k} accuracy</b> {value:.1%}" in evaluation.averages_label.text()
    table = evaluation.table
    shown_f1 = {table.item(r, 0).text(): table.item(r, 4).text() for r in range(table.rowCount())}
    support = {table.item(r, 0).text(): int(table.item(r, 3).text()) for r in range(table.rowCount())}
    for i, name in enumerate(evaluation.evaluation.predictor.class_names):  # label order
        if support[name]:
            assert shown_f1[name] in (f"{per_class[i]:.1%}", "—")

    # Row shares: each row of the matrix sums to 1.
    evaluation.normalise_check.setChecked(True)
    assert evaluation.matrix.is_normalised()
    rows = evaluation.matrix.displayed_values()
    assert all(sum(row) == pytest.approx(1.0) for row in rows)
    counts = evaluation.matrix.matrix()
    assert rows[0][0] == pytest.approx(counts[0][0] / sum(counts[0]))
    # The matrix grows with the window.
    window.show_tab(evaluation)
    small = evaluation.matrix.width()
    window.resize(2200, 1400)
    qtbot.waitUntil(lambda: evaluation.matrix.width() > small, timeout=5_000)
    _shot(window, "evaluation-row-shares")
    window.resize(1600, 980)

    # Results that are no saved checkpoint's (as during training) hide the choice; a
    # switch in the Prediction tab then evaluates the Prediction tab's run with it.
    evaluation.set_results(["a", "b"], [[1, 0], [0, 1]], [], [], [])
    assert evaluation.evaluation is None and evaluation.explanation_model is None
    assert not evaluation.checkpoint_combo.isVisibleTo(evaluation)
    prediction.checkpoint_combo.setCurrentIndex(prediction.checkpoint_combo.findData("last"))
    _wait_for(qtbot, evaluation, "last")
    assert f"last checkpoint, epoch {last_epoch}" in evaluation.checkpoint_text()
    agree("last")
    _settle(qtbot, window)


def test_a_missing_or_damaged_checkpoint_and_gone_images_get_a_message(window, qtbot, trained, tmp_path):
    evaluation, prediction = window.evaluation_view, window.prediction_view
    # A run whose best checkpoint is missing: a message; the last one still evaluates.
    no_best = tmp_path / "no_best"
    shutil.copytree(trained["run"], no_best)
    shutil.rmtree(no_best / "checkpoints" / "best")
    evaluation.show_run(no_best, checkpoint="best")
    qtbot.waitUntil(lambda: evaluation.message_text() != "", timeout=TIMEOUT_MS)
    assert "has no best checkpoint" in evaluation.message_text()
    assert "choose the other checkpoint" in evaluation.message_text()
    assert evaluation.explanation_model is None
    window.show_tab(evaluation)
    _shot(window, "missing-best")
    evaluation.set_checkpoint("last")
    _wait_for(qtbot, evaluation, "last")
    assert f"last checkpoint, epoch {_epoch(no_best, 'last')}" in evaluation.checkpoint_text()

    # A damaged checkpoint: its weights cut short.
    damaged = tmp_path / "damaged"
    shutil.copytree(trained["run"], damaged)
    truncate_file(damaged / "checkpoints" / "last" / "model.safetensors")
    evaluation.show_run(damaged, checkpoint="last")
    qtbot.waitUntil(lambda: evaluation.message_text() != "", timeout=TIMEOUT_MS)
    assert "damaged" in evaluation.message_text()

    # A run whose images are gone: its split names files that no longer exist.
    gone = tmp_path / "gone"
    shutil.copytree(trained["run"], gone)
    split = json.loads((gone / "split.json").read_text())
    split["root"] = str(tmp_path / "moved")
    for subset in ("train", "val", "test"):
        split[subset] = [
            [str(tmp_path / "moved" / Path(p).name), label] for p, label in split.get(subset, [])
        ]
    (gone / "split.json").write_text(json.dumps(split))
    image = str(sorted((trained["data"] / "val" / "red").iterdir())[0])
    prediction.load_run(gone, label="saved run: gone", checkpoint="best")
    qtbot.waitUntil(lambda: prediction.predictor is not None, timeout=TIMEOUT_MS)
    prediction.add_images([image])
    qtbot.waitUntil(lambda: "exist any more" in evaluation.message_text(), timeout=TIMEOUT_MS)
    assert "gone" in evaluation.checkpoint_text()
    assert f"best checkpoint, epoch {_epoch(gone, 'best')}" in evaluation.checkpoint_text()  # as asked
    assert "put the dataset back" in evaluation.message_text()
    # Prediction itself does not need the dataset: it goes on with the chosen checkpoint.
    qtbot.waitUntil(lambda: prediction.rows()[0].status == "done", timeout=TIMEOUT_MS)
    window.show_tab(evaluation)
    _shot(window, "images-gone")
    _settle(qtbot, window)


def test_the_evaluation_is_the_runs_own_scores_of_its_checkpoint_without_reading_the_images(
    trained, tmp_path
):
    from desktop_tl.core.data import PreparedData
    from desktop_tl.core.predict import Predictor
    from desktop_tl.core.validation_scores import SCORES_FILE
    from desktop_tl.gui.checkpoint_evaluation import evaluate_checkpoint

    def never_asked() -> bool:
        raise AssertionError("the images were scored again")

    for kind in ("best", "last"):
        kept = evaluate_checkpoint(str(trained["run"]), kind, never_asked)
        meta = json.loads((trained["run"] / "checkpoints" / kind / "meta.json").read_text())
        assert kept.report.accuracy == pytest.approx(meta["metrics"]["val_acc"])
        assert kept.report.num_images == 12 and kept.missing == 0

        # the same numbers as scoring the images again with the checkpoint's weights
        predictor = Predictor.from_run_dir(trained["run"], checkpoint=kind)
        prepared = PreparedData.load_manifest(trained["run"] / "split.json")
        again = predictor.evaluate_with_probabilities(list(prepared.val))
        assert kept.report.confusion == again.report.confusion
        assert kept.probabilities.keys() == {os.path.abspath(p) for p in again.paths}
        rows = torch.tensor([kept.probabilities[os.path.abspath(p)] for p in again.paths])
        assert torch.allclose(rows, again.probabilities, atol=0.02)

    # A split changed since (another validation set): its images are scored, not the old logits used.
    changed = tmp_path / "changed"
    shutil.copytree(trained["run"], changed)
    split = json.loads((changed / "split.json").read_text())
    split["val"] = split["val"][1:]
    (changed / "split.json").write_text(json.dumps(split))
    with pytest.raises(Cancelled):
        evaluate_checkpoint(str(changed), "best", lambda: True)
    assert evaluate_checkpoint(str(changed), "best").report.num_images == 11
    # A checkpoint without kept scores (an older run) is scored as before.
    (changed / "checkpoints" / "best" / SCORES_FILE).unlink()
    split["val"] = json.loads((trained["run"] / "split.json").read_text())["val"]
    (changed / "split.json").write_text(json.dumps(split))
    assert evaluate_checkpoint(str(changed), "best").report.num_images == 12


def test_scoring_a_checkpoint_stops_when_asked_and_a_newer_request_stops_the_older(
    window, qtbot, trained, tmp_path
):
    from desktop_tl.core.validation_scores import SCORES_FILE
    from desktop_tl.gui.checkpoint_evaluation import evaluate_checkpoint

    run = tmp_path / "scored_again"  # no kept scores: its images are scored
    shutil.copytree(trained["run"], run)
    for kind in ("best", "last"):
        (run / "checkpoints" / kind / SCORES_FILE).unlink()
    asked = []

    def stop_now() -> bool:
        asked.append(True)
        return True

    with pytest.raises(Cancelled):
        evaluate_checkpoint(str(run), "best", stop_now)
    assert asked  # asked before the first batch was scored
    scored = evaluate_checkpoint(str(run), "best", lambda: False)
    assert scored.report is not None and scored.report.num_images == 12

    # In the window: choosing the other checkpoint while one is scored stops the first
    # (its answer would be dropped), and the second is what arrives.
    evaluation = window.evaluation_view
    evaluation.show_run(run, checkpoint="best")
    first = evaluation._source._task
    evaluation.set_checkpoint("last")
    assert first.cancelled
    _wait_for(qtbot, evaluation, "last")
    assert f"last checkpoint, epoch {_epoch(run, 'last')}" in evaluation.checkpoint_text()
    assert evaluation.message_text() == ""
    _settle(qtbot, window)
