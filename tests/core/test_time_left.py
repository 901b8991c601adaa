"""The time left follows the run's phases. Real runs whose speed changes mid-run (a freeze
change that leaves the feature cache, one that builds it, one that moves it) are recorded
call by call (run_timelines.py), and every estimate is checked against the time that same
run took from there.

Two sets of runs: the ones recorded on a quiet machine (recorded_runs/), replayed through
the estimator as it is now and held to the issue's bound, within 25% from the first epoch
on; and the same runs trained afresh here, where the machine may be busy with other tests,
held to looser bounds and replayed to show that a replay answers exactly as the run did.
No assertion is about speed: each one compares an estimate with the timeline of the run
that produced it.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass

import pytest
from run_timelines import (
    MAX_UNSTEADINESS,
    NOISE_FLOOR,
    RECORDED,
    SCENARIOS,
    Estimate,
    Recording,
    make_photos,
    record,
    run_clock,
)

from desktop_tl.core import events as ev
from desktop_tl.core.time_left import Plan, TimeLeft


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(autouse=True)
def fresh_features(tmp_path, monkeypatch):
    # Every cache is really extracted: a run must not reuse another test's features.
    monkeypatch.setenv("DTL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DTL_FEATURE_CACHE_REUSE", "0")


def train(name: str, photos, tmp_path):
    with run_clock():
        return record(name, photos, tmp_path)


def describe(estimates: list[Estimate], end: float) -> str:
    return "\n".join(
        f"epoch {e.epoch} batch {e.batch}: estimate "
        f"{'None' if e.seconds_left is None else f'{e.seconds_left:.4f}'}, actual {end - e.at:.4f}"
        for e in estimates
    )


@dataclass
class Checked:
    count: int  # estimates held to 25% and an allowance for noise
    strictly: int  # of them, within 25% with no allowance at all


def check_against_the_run(
    recording: Recording,
    estimates: list[Estimate],
    *,
    close_from: int = 1,
    cap: float | None = 0.25,
    floor: float = NOISE_FLOOR,
    strict_share: float | None = 0.9,
) -> Checked:
    """Every estimate after the first epoch and after the change against the time the
    run took from there.

    - None only from the change to the second step of the next epoch: the speed on what
      the next epochs read is not known until three steps on it have run (the first two
      warm it up).
    - Within a factor of 2 either way, and never below half of what the whole epochs
      still to come took: it never says the run is nearly over while epochs remain.
    - From the ``close_from``-th epoch after the change (after the first epoch of a run
      without one), within 25% of the truth and an allowance for noise of at most
      ``cap`` of it (or ``floor`` seconds, whichever is more); and ``strict_share`` of
      them within 25% with no allowance at all.

    The allowance is for noise no estimate can foresee: ``floor`` seconds, and the run's
    own jitter. An estimate can only go by the phases already timed, so when like epochs
    took different times, or the work between two epochs did (a few milliseconds of
    writing checkpoints, which a small cached run is mostly made of), it may be off by
    that difference for each epoch still to come.
    """
    scenario, end = recording.scenario, recording.end
    change_at, epochs = scenario.change_at, recording.epochs
    report = describe(estimates, end)
    validated = recording.validation_ends()
    settled_from = (change_at[0] + 1 if change_at else 1) + close_from - 1
    like = recording.whole_epochs()
    between = recording.between_epochs()[1:]  # from the first epoch's end on
    jitter = max(like) - min(like) + max(between) - min(between)
    report += f"\nlike epochs took {[round(d, 4) for d in like]} s, between epochs {[round(d, 4) for d in between]} s"
    checked = Checked(0, 0)
    for e in estimates:
        if e.epoch == 0 or (change_at is not None and (e.epoch, e.batch) <= change_at):
            continue  # the first epoch times the phases; a change not yet known was to come
        if e.seconds_left is None:
            assert change_at is not None and (
                e.epoch == change_at[0] or (e.epoch == change_at[0] + 1 and e.batch <= 1)
            ), report
            continue
        actual = end - e.at
        noise = floor + jitter * (epochs - e.epoch)
        assert actual / 2 - noise <= e.seconds_left <= 2 * actual + noise, report
        if e.epoch < epochs - 1:
            assert e.seconds_left >= (end - validated[e.epoch]) / 2 - noise, report
        if e.epoch >= settled_from:
            allowance = noise if cap is None else min(noise, max(cap * actual, floor))
            assert abs(e.seconds_left - actual) <= 0.25 * actual + allowance, report
            checked.count += 1
            checked.strictly += abs(e.seconds_left - actual) <= 0.25 * actual
    if strict_share is not None:
        assert checked.strictly >= strict_share * checked.count, f"{checked}\n{report}"
    return checked


# --------------------------------------------------------------------------- recorded runs


def recorded(name: str) -> Recording:
    return Recording.load(RECORDED / f"{name}.json")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_estimate_after_the_first_epoch_is_within_a_quarter_of_the_truth(name):
    recording = recorded(name)
    estimates = recording.replay()
    change_at, epochs = recording.scenario.change_at, recording.epochs
    batches = estimates[0].batches_per_epoch
    # Every batch from there on had an estimate within the bound, but for the first two
    # steps after a change (estimating).
    if change_at is None:
        expected = (epochs - 1) * batches
    else:
        expected = (epochs - change_at[0] - 1) * batches - 2
    assert check_against_the_run(recording, estimates).count == expected


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_recorded_runs_ran_while_the_machine_kept_one_speed(name):
    """What the estimates are held to is true only of a run on a machine that kept one
    speed (run_timelines.py records again when it did not)."""
    assert recorded(name).unsteadiness() <= MAX_UNSTEADINESS


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("factor", [0.7, 1.3])
def test_the_check_fails_estimates_off_by_three_tenths(name, factor):
    """The bound is not loose: the same estimates, 30% too low or too high, fail it on
    every recorded run."""
    recording = recorded(name)
    scaled = [
        dataclasses.replace(e, seconds_left=None if e.seconds_left is None else e.seconds_left * factor)
        for e in recording.replay()
    ]
    with pytest.raises(AssertionError):
        check_against_the_run(recording, scaled)


def old_single_rate(recording: Recording) -> list[Estimate]:
    """The same run as the one rate over the whole run so far would have estimated it."""
    start = recording.calls[0]["t"]
    answers = []
    for call in recording.calls:
        if call["call"] == "batch_ended":
            plan = Plan(**call["plan"])
            done = plan.epoch * plan.batches_per_epoch + plan.batch + 1
            left = plan.epochs * plan.batches_per_epoch - done
            guess = (call["t"] - start) / done * left
            answers.append(Estimate(plan.epoch, plan.batch, plan.batches_per_epoch, call["t"], guess))
    return answers


def test_the_check_fails_a_single_rate_on_the_same_runs():
    """The bounds above are not loose: the old single rate breaks them on the run that
    builds the cache midway, whose later epochs are several times faster."""
    recording = recorded("freeze_builds_cache")
    with pytest.raises(AssertionError):
        check_against_the_run(recording, old_single_rate(recording))


def test_after_the_warm_up_the_first_checkpoint_written_imports_no_more_of_its_libraries(tmp_path):
    """The first epoch's work between epochs is taken as every later one's: a checkpoint
    writer that imported parts of its libraries on its first write would make it look
    dearer (by as much as the whole work between epochs of a small model)."""
    code = (
        "import sys, pathlib, torch\n"
        "from desktop_tl.core.checkpoints import save_checkpoint, warm_up_checkpoint_writers\n"
        "LIBRARIES = {'torch', 'safetensors', 'numpy'}\n"
        "warm_up_checkpoint_writers()\n"
        "before = set(sys.modules)\n"
        "save_checkpoint(pathlib.Path(sys.argv[1]), {'w': torch.ones(3)}, {'epoch': 1}, {'step': 1})\n"
        "print(sorted({m for m in set(sys.modules) - before if m.split('.')[0] in LIBRARIES}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "last")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert (tmp_path / "last" / "model.safetensors").is_file()


# --------------------------------------------------------------------------- the same runs, afresh


def check_fresh_run(recording: Recording, tmp_path) -> None:
    """Replaying a run, saved and read back, answers what the run did; and on a machine
    that other tests may keep busy, its estimates are within 25% and the noise the run
    showed from the second epoch after the change."""
    estimates = recording.estimates()
    assert Recording.load(recording.save(tmp_path / "recorded")).replay() == estimates
    run = recording.end - estimates[0].at
    floor = max(NOISE_FLOOR, 0.02 * run)  # a busy machine: 2% of the run besides
    check_against_the_run(recording, estimates, close_from=2, cap=None, floor=floor, strict_share=None)


def test_an_unchanged_run_estimates_as_the_replay_does(photos, tmp_path):
    recording, _, _ = train("unchanged", photos, tmp_path)
    assert [c["call"] for c in recording.calls].count("freeze_changed") == 0
    check_fresh_run(recording, tmp_path)


def test_unfreezing_the_backbone_leaves_the_cache_and_the_estimate_follows_the_slower_epochs(
    photos, tmp_path
):
    recording, finished, events = train("unfreeze_leaves_cache", photos, tmp_path)
    assert [e.feature_cache for e in events if isinstance(e, ev.FreezeApplied)] == ["left"]
    assert ("left", "train+val") in [(e["event"], e["subset"]) for e in finished.summary["feature_cache"]]
    check_fresh_run(recording, tmp_path)


def test_freezing_the_backbone_builds_the_cache_and_the_estimate_follows_the_faster_epochs(photos, tmp_path):
    recording, finished, events = train("freeze_builds_cache", photos, tmp_path)
    assert [e.feature_cache for e in events if isinstance(e, ev.FreezeApplied)] == ["off"]
    built = [e["subset"] for e in finished.summary["feature_cache"] if e["event"] == "built"]
    assert built == ["val", "train"]  # at epoch 1's validation, then when epoch 2 starts
    check_fresh_run(recording, tmp_path)


def test_a_cache_moved_to_a_new_stage_says_estimating_until_that_speed_is_known(photos, tmp_path):
    recording, finished, events = train("cache_moves_earlier", photos, tmp_path)
    assert [e.feature_cache for e in events if isinstance(e, ev.FreezeApplied)] == ["left"]
    built = [(e["subset"], e["at"]) for e in finished.summary["feature_cache"] if e["event"] == "built"]
    assert built[-2:] == [("val", "backbone.blocks.1"), ("train", "backbone.blocks.1")]
    # The rest of epoch 1 runs on images, epochs 2 and 3 on features after blocks.1: a
    # speed not seen yet, so estimating, never a guess from the images' speed.
    estimates = {(e.epoch, e.batch): e.seconds_left for e in recording.estimates()}
    assert all(estimates[1, b] is None for b in range(4, 12)), describe(recording.estimates(), recording.end)
    check_fresh_run(recording, tmp_path)


# --------------------------------------------------------------------------- synthetic timings


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def plan(
    epoch,
    batch,
    *,
    epochs=3,
    cache_at=None,
    val_cache_at=None,
    stage=5,
    cacheable=False,
    decoded=True,
    views=1,
) -> Plan:
    return Plan(
        epoch,
        batch,
        epochs,
        4,
        16,
        8,
        stage,
        cache_at,
        val_cache_at,
        decoded,
        decoded,
        cacheable,
        cacheable,
        views,
    )


def run_epoch(
    estimator: TimeLeft, clock: ManualClock, epoch: int, step: float, validation: float, between: float, **kw
) -> list[float | None]:
    """One synthetic epoch: four steps of ``step`` seconds, a validation, the work after it."""
    estimator.training_started()
    answers = []
    for batch in range(4):
        clock.advance(step)
        answers.append(estimator.batch_ended(plan(epoch, batch, **kw)))
    estimator.validation_started()
    clock.advance(validation)
    estimator.validation_ended(kw.get("val_cache_at") or "decoded")
    clock.advance(between)
    return answers


def test_a_steady_run_is_costed_phase_by_phase():
    clock = ManualClock()
    estimator = TimeLeft(clock=clock)
    run_epoch(estimator, clock, 0, 1.0, 2.0, 0.5)
    answers = run_epoch(estimator, clock, 1, 1.0, 2.0, 0.5)
    # After batch 0 of epoch 1: 3 steps, this validation and what follows it, one more epoch.
    assert answers[0] == pytest.approx(3 * 1.0 + 2.0 + 0.5 + (4 * 1.0 + 2.0 + 0.5))
    assert answers[3] == pytest.approx(2.0 + 0.5 + (4 * 1.0 + 2.0 + 0.5))


def test_a_freeze_change_waits_for_the_new_speed_and_a_pause_counts_for_nothing():
    clock = ManualClock()
    estimator = TimeLeft(clock=clock)
    run_epoch(estimator, clock, 0, 1.0, 2.0, 0.5)
    estimator.training_started()
    clock.advance(1.0)
    assert estimator.batch_ended(plan(1, 0)) is not None
    estimator.freeze_changed()
    assert estimator.seconds_left(plan(1, 0)) is None  # no step timed under the new state
    clock.advance(9.0)
    assert estimator.batch_ended(plan(1, 1)) is None  # the first one warms up: not a rate
    estimator.paused()
    clock.advance(600.0)
    estimator.resumed()
    clock.advance(3.0)
    # Three times slower now; the pause is not part of the step.
    assert estimator.batch_ended(plan(1, 2)) == pytest.approx(1 * 3.0 + 2.0 + 0.5 + (4 * 3.0 + 2.0 + 0.5))


def test_a_cache_to_be_built_is_costed_from_the_cache_log_and_a_new_input_awaited():
    clock = ManualClock()
    log: list[dict] = []
    estimator = TimeLeft(log, clock=clock)
    # Epoch 0 starts by extracting 16 training and 8 validation features (12 s in all).
    clock.advance(12.0)
    log += [
        {"event": "built", "subset": "train", "rows": 16, "seconds": 8.0},
        {"event": "built", "subset": "val", "rows": 8, "seconds": 4.0},
    ]
    cached = {"cache_at": 5, "val_cache_at": 5, "cacheable": True}
    run_epoch(estimator, clock, 0, 0.25, 0.5, 0.5, **cached)
    estimator.training_started()
    clock.advance(0.25)
    assert estimator.batch_ended(plan(1, 0, **cached)) == pytest.approx(
        3 * 0.25 + 0.5 + 0.5 + (4 * 0.25 + 0.5 + 0.5)
    )
    # Validation features still to extract (the extraction's 0.5 s per image, not the
    # 12 s spent before the epoch's first step).
    assert estimator.seconds_left(plan(1, 0, cache_at=5, val_cache_at=None, cacheable=True)) == pytest.approx(
        3 * 0.25 + 8 * 0.5 + 0.5 + 0.5 + (4 * 0.25 + 0.5 + 0.5)
    )
    # A stage before the cache starts training: the cache is left, the rest of the epoch
    # reads images and the next one trains on features after stage 3, a speed never seen.
    estimator.freeze_changed()
    after = plan(1, 1, cache_at=None, val_cache_at=None, stage=3, cacheable=True, decoded=False)
    for _ in range(3):
        clock.advance(2.0)
        assert estimator.batch_ended(after) is None
    assert estimator.step_rate("images") == 2.0


def test_a_cache_of_augmented_views_to_be_built_costs_a_pass_per_view():
    clock = ManualClock()
    log: list[dict] = []
    estimator = TimeLeft(log, clock=clock)
    # Two views of each of the 16 training images (32 rows) and 8 validation rows, at
    # 0.25 s a row; epoch 0 reads decoded images (1 s a step), epoch 1 the cache.
    log += [
        {"event": "built", "subset": "train", "rows": 32, "seconds": 8.0, "views": 2},
        {"event": "built", "subset": "val", "rows": 8, "seconds": 2.0},
    ]
    run_epoch(estimator, clock, 0, 1.0, 0.5, 0.5, val_cache_at=5)
    run_epoch(estimator, clock, 1, 0.25, 0.5, 0.5, cache_at=5, val_cache_at=5, cacheable=True, views=2)
    # Had epoch 1 read images, the next epoch would first build 2 views of 16 images.
    to_build = plan(1, 0, cache_at=None, val_cache_at=5, cacheable=True, views=2)
    assert estimator.seconds_left(to_build) == pytest.approx(
        3 * 1.0 + 0.5 + 0.5 + (2 * 16 * 0.25) + (4 * 0.25 + 0.5 + 0.5)
    )


# --------------------------------------------------------------------------- the window's text


def test_the_progress_line_says_estimating_while_there_is_no_estimate(photos, tmp_path, qtbot):
    from desktop_tl.gui.training_panel import TrainingPanel

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    _, _, events = train("cache_moves_earlier", photos, tmp_path)
    shown = {}
    for event in events:
        if isinstance(event, ev.BatchEnded):
            panel.show_batch(event, 5)
            shown[event.epoch, event.batch] = panel.progress.format()
    assert shown[1, 5] == "Epoch 2/5 · batch 6/12 · estimating…"
    assert shown[2, 5].startswith("Epoch 3/5 · batch 6/12 · 0:0") and shown[2, 5].endswith(" left")
