"""Freeze changes sent during a run reach the model in the order they were made.

A later change may undo part of an earlier one (tick ``blocks.15``, then untick
``blocks``): the engine must apply them in turn, never as one map sorted by depth, and
report the state it ended with, which is what its checkpoint saves.
"""

from __future__ import annotations

import json
import random

import pytest

from desktop_tl.core import events as ev
from desktop_tl.core.config import RunConfig
from desktop_tl.core.layers import apply_freeze, apply_freeze_map, ordered_freeze_map, trainable_state
from desktop_tl.core.model import build_model
from desktop_tl.core.training import Trainer
from desktop_tl.plugin.manager import get_host

from helpers_training import lite0_config, sample_subset

BATCHES_PER_EPOCH = 4  # 8 training photos in batches of 2
EPOCHS = 1


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return sample_subset(tmp_path_factory.mktemp("photos"), n_train=4, n_val=2)


@pytest.fixture(scope="module")
def blank_model():
    """EfficientNet-Lite0 with the run's head, for replaying changes (no weights read)."""
    config = RunConfig()
    config.model.backbone = "efficientnet_lite0"
    config.model.head = "linear"
    config.model.weights = "none"
    return build_model(config, get_host(), 2).model


def trainable_names(model, mapping: dict[str, bool]) -> set[str]:
    """The parameters that train once ``mapping`` (a checkpoint's freeze_map) is applied."""
    apply_freeze_map(model, {"": False})
    apply_freeze_map(model, mapping)
    return {name for name, p in model.named_parameters() if p.requires_grad}


def replay(model, preset: str, commands: list[dict[str, bool]]) -> dict[str, bool]:
    """The state that applying each command in turn, after the preset, gives."""
    apply_freeze(model, preset)
    for command in commands:
        apply_freeze_map(model, command)
    return trainable_state(model)


def run_with_changes(photos, out, bursts: dict[int, list[dict[str, bool]]]):
    """Train, sending ``bursts[step]`` (one SetFreeze each) as batch ``step`` ends, so
    that every burst is taken together at the next batch."""
    config = lite0_config(
        photos, out, epochs=EPOCHS, batch_size=2, precision="fp32", feature_cache="off"
    )  # the order of changes is the subject here
    trainer = Trainer(config)
    applied: list[ev.FreezeApplied] = []

    def on_event(event):
        if isinstance(event, ev.BatchEnded):
            for changes in bursts.get(event.step, []):
                trainer.send(ev.SetFreeze(changes))
        elif isinstance(event, ev.FreezeApplied):
            applied.append(event)

    trainer.subscribe(on_event)
    finished = trainer.run()
    assert finished.status == "completed", finished.reason
    meta = json.loads((out / "checkpoints" / "last" / "meta.json").read_text())
    return finished, applied, meta["freeze_map"]


def test_unfreezing_a_block_then_freezing_its_stage_leaves_the_block_frozen(photos, tmp_path, blank_model):
    bursts = {
        0: [{"backbone.blocks.15": True}, {"backbone.blocks": False}],
        2: [{"backbone.blocks": False}, {"backbone.blocks.14": True}],
    }
    finished, applied, saved = run_with_changes(photos, tmp_path / "run", bursts)

    sent = [c for b in bursts.values() for c in b]
    assert saved == replay(blank_model, "head-only", sent)
    first, second = applied
    # After the first burst nothing in the backbone trains: the later change won.
    assert not any(name.startswith("backbone") for name in trainable_names(blank_model, first.state))
    assert first.commands == 2
    assert first.trainable_params == sum(p.numel() for p in blank_model.head.parameters())
    # Freezing the stage first and then unfreezing one block trains that block.
    assert {
        n.split(".")[2]
        for n in trainable_names(blank_model, second.state)
        if n.startswith("backbone.blocks.")
    } == {"14"}
    assert second.commands == 4
    assert saved == second.state
    # The run's record of the changes replays to the same state.
    records = [r["changes"] for r in finished.summary["freeze_changes"]]
    assert replay(blank_model, "head-only", records) == saved


def test_random_toggle_sequences_end_in_the_state_applied_in_order(photos, tmp_path, blank_model):
    rng = random.Random(1)
    names = [
        name
        for name, module in blank_model.named_modules()
        if name and any(True for _ in module.parameters())
    ]
    steps = EPOCHS * BATCHES_PER_EPOCH
    bursts = {
        step: [{rng.choice(names): rng.random() < 0.5} for _ in range(rng.randint(5, 60))]
        for step in range(steps)
    }
    sent = [c for step in range(steps) for c in bursts[step]]
    _finished, applied, saved = run_with_changes(photos, tmp_path / "run", bursts)

    expected = replay(blank_model, "head-only", sent)
    assert saved == expected
    assert len(applied) == steps  # one report per burst, each taken at the next batch
    assert applied[-1].commands == len(sent)
    assert applied[-1].state == expected
    assert trainable_names(blank_model, saved) == trainable_names(blank_model, expected)
    # Each report holds the state after exactly the commands it counts.
    for event in applied:
        assert event.state == replay(blank_model, "head-only", sent[: event.commands])


def test_ordered_freeze_map_equals_applying_in_turn(blank_model):
    rng = random.Random(7)
    names = [
        name
        for name, module in blank_model.named_modules()
        if name and any(True for _ in module.parameters())
    ]
    for _ in range(20):
        commands = [
            {rng.choice(names): rng.random() < 0.5 for _ in range(rng.randint(1, 3))}
            for _ in range(rng.randint(1, 40))
        ]
        expected = replay(blank_model, "head-only", commands)
        apply_freeze(blank_model, "head-only")
        apply_freeze_map(blank_model, ordered_freeze_map(commands))
        assert trainable_state(blank_model) == expected


def test_a_change_naming_no_layer_is_refused_and_the_others_apply(photos, tmp_path, blank_model):
    bursts = {0: [{"backbone.blocks.15": True}, {"backbone.nope": True}, {"backbone.top": True}]}
    out = tmp_path / "run"
    _finished, applied, saved = run_with_changes(photos, out, bursts)
    assert len(applied) == 1 and applied[0].commands == 3
    assert applied[0].changes == {"backbone.blocks.15": True, "backbone.top": True}
    assert saved == replay(blank_model, "head-only", [bursts[0][0], bursts[0][2]])
    log = (out / "run.log").read_text()
    assert "freeze change ignored: no layer named 'backbone.nope'" in log
