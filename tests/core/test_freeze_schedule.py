"""A run file's freeze schedule: changes applied at the start of an epoch, as a live
freeze change sent then would be, on real photos with the pretrained EfficientNet-Lite0."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from desktop_tl.core import events as ev
from desktop_tl.core.config import ConfigError, RunConfig
from desktop_tl.core.training import Trainer

from helpers_training import lite0_config, sample_subset

UNFREEZE_TOP = {"backbone.top": True}  # the stage after the cached features: the cache is left


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return sample_subset(tmp_path_factory.mktemp("photos"), n_train=8, n_val=4)


def config(photos, out, epochs=3, schedule=()):
    c = lite0_config(photos, out, epochs=epochs, batch_size=4, seed=3, precision="fp32")
    c.freeze.schedule = [dict(entry) for entry in schedule]
    return c


def learning_rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [
            {k: row[k] for k in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")}
            for row in csv.DictReader(handle)
        ]


def same_weights(a_dir, b_dir):
    a = load_file(a_dir / "checkpoints" / "last" / "model.safetensors")
    b = load_file(b_dir / "checkpoints" / "last" / "model.safetensors")
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def record(events):
    return lambda event: events.append(event)


def test_a_scheduled_change_trains_exactly_like_the_same_live_change(photos, tmp_path):
    live_dir, scheduled_dir = tmp_path / "live", tmp_path / "scheduled"
    live = Trainer(config(photos, live_dir))
    live_events: list = []

    def send_before_the_second_epoch(event):
        live_events.append(event)
        if isinstance(event, ev.EpochEnded) and event.epoch == 0:
            live.send(ev.SetFreeze(UNFREEZE_TOP))

    live.subscribe(send_before_the_second_epoch)
    assert live.run().status == "completed"

    scheduled_events: list = []
    finished = Trainer(
        config(photos, scheduled_dir, schedule=[{"epoch": 2, "changes": UNFREEZE_TOP}]),
        on_event=record(scheduled_events),
    ).run()
    assert finished.status == "completed", finished.reason

    assert learning_rows(scheduled_dir) == learning_rows(live_dir)
    assert same_weights(scheduled_dir, live_dir)
    applied = [e for e in scheduled_events if isinstance(e, ev.FreezeApplied)]
    live_applied = [e for e in live_events if isinstance(e, ev.FreezeApplied)]
    assert len(applied) == 1 and applied[0].changes == UNFREEZE_TOP
    assert (applied[0].step, applied[0].epoch) == (live_applied[0].step, live_applied[0].epoch) == (4, 1)
    assert applied[0].feature_cache == live_applied[0].feature_cache == "left"
    assert applied[0].commands == 0  # no SetFreeze was sent
    (change,) = finished.summary["freeze_changes"]
    assert change["scheduled"] is True and change["epoch"] == 2 and change["changes"] == UNFREEZE_TOP
    log = (scheduled_dir / "run.log").read_text()
    assert "scheduled freeze change at epoch 2: backbone.top trainable" in log
    meta = json.loads((scheduled_dir / "checkpoints" / "last" / "meta.json").read_text())
    assert meta["freeze_map"]["backbone.top"] is True


def test_a_scheduled_layer_missing_from_the_model_is_refused_before_the_run_folder(photos, tmp_path):
    events: list = []
    bad = {"epoch": 2, "changes": {"backbone.nope": True}}
    finished = Trainer(config(photos, tmp_path / "run", schedule=[bad]), on_event=record(events)).run()
    assert finished.status == "failed"
    assert finished.reason.startswith("freeze.schedule entry 1 (epoch 2): no layer named 'backbone.nope'")
    assert "use qualified module names as the layer tree shows them" in finished.reason
    assert not any(isinstance(e, ev.BatchEnded) for e in events)
    assert not (tmp_path / "run").exists()  # a refused run file leaves nothing behind


@pytest.mark.parametrize(
    "entry, expected",
    [
        ({"epoch": 4, "changes": UNFREEZE_TOP}, "epoch = 4 is outside the run's epochs 1 to 3"),
        ({"epoch": 0, "changes": UNFREEZE_TOP}, "epoch = 0 is outside the run's epochs 1 to 3"),
        ({"epoch": 2.0, "changes": UNFREEZE_TOP}, "must be a whole number"),
        ({"epoch": 2, "changes": {"backbone.top": 1}}, "changes['backbone.top'] = 1 must be true"),
        ({"epoch": 2, "changes": {}}, "changes must be a non-empty table"),
        ({"epoch": 2}, "exactly the keys epoch and changes"),
    ],
)
def test_a_bad_schedule_entry_is_refused_naming_it(entry, expected):
    written = RunConfig()
    written.train.epochs = 3
    written.freeze.schedule = [{"epoch": 1, "changes": UNFREEZE_TOP}, entry]
    with pytest.raises(ConfigError, match="freeze.schedule entry 2") as error:
        RunConfig.from_toml(written.to_toml())
    assert expected in str(error.value)


def test_a_schedule_survives_the_run_file(tmp_path):
    c = RunConfig()
    c.freeze.schedule = [
        {"epoch": 2, "changes": {"backbone.blocks": True, "backbone.blocks.0": False}},
        {"epoch": 5, "changes": {"backbone": True}},
    ]
    c.save(tmp_path / "run.toml")
    assert '{ epoch = 5, changes = { backbone = true } }' in (tmp_path / "run.toml").read_text()
    assert RunConfig.load(tmp_path / "run.toml").freeze.schedule == c.freeze.schedule
    # The same schedule as TOML tables, as a person may write it
    tables = """
[[freeze.schedule]]
epoch = 2
changes = { "backbone.blocks" = true, "backbone.blocks.0" = false }

[[freeze.schedule]]
epoch = 5
[freeze.schedule.changes]
backbone = true
"""
    assert RunConfig.from_toml(tables).freeze.schedule == c.freeze.schedule


@pytest.fixture(scope="module")
def uninterrupted(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    finished = Trainer(config(photos, out, epochs=4, schedule=[{"epoch": 3, "changes": UNFREEZE_TOP}])).run()
    assert finished.status == "completed", finished.reason
    return out


@pytest.mark.parametrize("cut_in_epoch", [3, 4])  # the change's own epoch, and the one after
def test_resume_across_a_scheduled_change_ends_like_the_uninterrupted_run(
    photos, tmp_path, uninterrupted, cut_in_epoch
):
    out = tmp_path / "cut"
    schedule = [{"epoch": 3, "changes": UNFREEZE_TOP}]
    trainer = Trainer(config(photos, out, epochs=4, schedule=schedule))

    def cancel(event):
        if isinstance(event, ev.BatchEnded) and event.epoch == cut_in_epoch - 1 and event.batch == 0:
            trainer.send(ev.Cancel())

    trainer.subscribe(cancel)
    assert trainer.run().status == "cancelled"
    resumed_events: list = []
    resumed = Trainer(
        config(photos, out, epochs=4, schedule=schedule), resume=True, on_event=record(resumed_events)
    ).run()
    assert resumed.status == "completed", resumed.reason

    assert learning_rows(out) == learning_rows(uninterrupted)
    assert same_weights(out, uninterrupted)
    # Applied once in all: by the resumed run only when its checkpoint came before epoch 3.
    assert [c["epoch"] for c in resumed.summary["freeze_changes"]] == [3]
    applied = [e for e in resumed_events if isinstance(e, ev.FreezeApplied)]
    assert len(applied) == (1 if cut_in_epoch == 3 else 0)
