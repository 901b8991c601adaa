"""Real runs recorded for the time-left tests: every call the epoch loop makes on its
time-left estimator, with the time and the cache log entries it saw, and when the run
ended. Replaying a recording through a fresh estimator gives the answers the run gave;
the estimates can then be checked against what happened.

The runs train a small real convolutional backbone on small generated photos through the
real Trainer, under each kind of speed change: none, a freeze change that leaves the
feature cache, one that builds it, one that moves it to an earlier stage. Time is the
process's CPU time (see :func:`run_clock`): what the run computed, not what it waited for.

    python tests/core/run_timelines.py [FOLDER]

records them again into ``recorded_runs/`` (or FOLDER), one JSON file each, at
``RECORDED_SIZE``: four times the photos the tests train on afresh and more epochs, so
that the few milliseconds of noise in a phase weigh less. Do it on a machine with
nothing else running: the tests take those timelines as the truth.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

if __name__ == "__main__":  # run as a script: the test helpers' folders, as pytest has them
    sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]

from helpers_data import make_image_folder  # noqa: E402
from test_fast_paths import TinyHost, tiny_config  # noqa: E402

from desktop_tl.core import cache_plan, epoch_loop, time_left  # noqa: E402
from desktop_tl.core import events as ev  # noqa: E402
from desktop_tl.core.time_left import Plan, TimeLeft  # noqa: E402
from desktop_tl.core.training import Trainer  # noqa: E402
from desktop_tl.plugin.descriptors import Preprocessing  # noqa: E402

RECORDED = Path(__file__).parent / "recorded_runs"

# Larger images than the fast-path tests use, so that a training step over images costs
# clearly more than one over cached features.
PRE = Preprocessing(resize=172, crop=160, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


HOST = TinyHost(PRE)


@dataclass(frozen=True)
class Scenario:
    """A run, and the freeze change sent when batch ``change_at = (epoch, batch)`` ends."""

    epochs: int
    preset: str | None = None  # the freeze preset, if not the default (head only)
    change_at: tuple[int, int] | None = None
    changes: dict[str, bool] | None = None
    augment: str = "none"  # with augmentation, the cache holds augmented views


SCENARIOS = {
    "unchanged": Scenario(4),
    "all_layers_train": Scenario(4, "none"),  # images, then kept decoded
    "augmented_views": Scenario(4, augment="light"),
    "unfreeze_leaves_cache": Scenario(5, None, (1, 3), {"backbone": True}),
    "freeze_builds_cache": Scenario(5, "none", (1, 3), {"backbone": False}),
    "cache_moves_earlier": Scenario(5, None, (1, 3), {"backbone.blocks.2": True}),
    "augmented_views_move_earlier": Scenario(5, None, (1, 3), {"backbone.blocks.2": True}, "light"),
}


@dataclass(frozen=True)
class RunSize:
    train_per_class: int  # photos of each of the two classes
    val_per_class: int
    batch_size: int
    more_epochs: int = 0  # beyond the scenario's


FRESH_SIZE = RunSize(48, 12, 8)  # the runs the tests train: 12 batches an epoch
# 12 batches of four times the photos, and epochs enough after a change that the
# epochs on cached features (a few hundredths of a second each) add up to a stretch
# longer than a phase's noise.
RECORDED_SIZE = RunSize(192, 48, 32, more_epochs=4)

#: Seconds of CPU time by which like phases of one run differ on a quiet machine (a
#: checkpoint write, a garbage collection): the last few hundredths of a second of a run
#: cannot be foreseen closer than that.
NOISE_FLOOR = 0.005

#: Seconds by which the same sub-millisecond steps, added up over an epoch, differ on a
#: quiet machine.
CLOCK_JITTER = 0.001

#: A recording is the truth only if the machine kept one speed: epochs that did the same
#: work may differ by this share of the typical one at most (else it is made again).
MAX_UNSTEADINESS = 0.25
ATTEMPTS = 3


def make_photos(root: Path, size: RunSize = FRESH_SIZE) -> Path:
    classes = ("red", "green")
    make_image_folder(root, dict.fromkeys(classes, size.train_per_class), subset="train", size=(180, 180))
    make_image_folder(root, dict.fromkeys(classes, size.val_per_class), subset="val", size=(180, 180))
    return root


CLOCK = time.process_time


@contextlib.contextmanager
def run_clock() -> Iterator[None]:
    """One clock for the estimator, the cache's log and the recording: the process's CPU
    time, on one thread (a second one would spin, and count, while the first waits for a
    core), so that other programs on the machine stretch the run's timeline less."""
    saved = time_left.perf_counter, cache_plan.time, torch.get_num_threads()
    time_left.perf_counter = CLOCK
    cache_plan.time = SimpleNamespace(perf_counter=CLOCK)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        time_left.perf_counter, cache_plan.time = saved[:2]
        torch.set_num_threads(saved[2])


@dataclass
class Estimate:
    epoch: int
    batch: int
    batches_per_epoch: int
    at: float  # when the batch ended
    seconds_left: float | None


@dataclass
class Recording:
    name: str
    scenario: Scenario
    size: RunSize
    calls: list[dict[str, Any]]
    end: float  # when the run finished

    @property
    def epochs(self) -> int:
        return self.scenario.epochs + self.size.more_epochs

    def validation_ends(self) -> list[float]:
        """When each epoch's validation ended, epoch by epoch."""
        return [c["t"] for c in self.calls if c["call"] == "validation_ended"][-self.epochs :]

    def between_epochs(self) -> list[float]:
        """The seconds from each validation's end to the next epoch's first batch, less
        the caches built meanwhile (as the estimator times them)."""
        seconds, validated = [], None
        for call in self.calls:
            if call["call"] == "validation_ended":
                validated = call["t"]
            elif call["call"] == "training_started" and validated is not None:
                seconds.append(
                    call["t"] - validated - sum(entry.get("seconds", 0.0) for entry in call["log"])
                )
        return seconds

    def whole_epochs(self) -> list[float]:
        """How long each epoch that ran at one speed took, after the first one and after
        the change: from its first step to its validation's end (which leaves out a cache
        built as it starts and the work between epochs)."""
        first_step = {
            c["plan"]["epoch"]: c["t"]
            for c in self.calls
            if c["call"] == "batch_ended" and c["plan"]["batch"] == 0
        }
        validated = self.validation_ends()
        change_at = self.scenario.change_at
        first = change_at[0] + 1 if change_at else 1
        return [validated[e] - first_step[e] for e in range(first, self.epochs)]

    def unsteadiness(self) -> float:
        """How much the epochs that did the same work differ beyond the timing noise, as a
        share of the typical one: the machine's own speed changing, which no estimate can
        foresee."""
        epochs = self.whole_epochs()
        return max(0.0, max(epochs) - min(epochs) - CLOCK_JITTER) / statistics.median(epochs)

    def estimates(self) -> list[Estimate]:
        """The answers the run gave, batch by batch."""
        return [
            Estimate(
                c["plan"]["epoch"], c["plan"]["batch"], c["plan"]["batches_per_epoch"], c["t"], c["answer"]
            )
            for c in self.calls
            if c["call"] == "batch_ended"
        ]

    def replay(self, estimator_type: type[TimeLeft] = TimeLeft) -> list[Estimate]:
        """The same calls, at the same times, through a fresh estimator."""
        log: list[dict[str, Any]] = []
        now = [0.0]  # the time of the call being replayed
        estimator: TimeLeft | None = None
        answers = []
        for call in self.calls:
            log.extend(call["log"])
            now[0] = call["t"]
            name = call["call"]
            if name == "init":
                estimator = estimator_type(log, clock=lambda: now[0])
            elif name == "batch_ended":
                plan = Plan(**call["plan"])
                answer = estimator.batch_ended(plan)
                answers.append(Estimate(plan.epoch, plan.batch, plan.batches_per_epoch, now[0], answer))
            elif name == "validation_ended":
                estimator.validation_ended(call["on"])
            else:
                getattr(estimator, name)()
        return answers

    def save(self, folder: Path = RECORDED) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.json"
        data = {
            "name": self.name,
            "scenario": dataclasses.asdict(self.scenario),
            "size": dataclasses.asdict(self.size),
            "recorded_on": f"{platform.platform()}, {platform.processor() or platform.machine()}, "
            f"torch {torch.__version__}",
            "end": self.end,
        }
        # One call a line: a recording stays readable, and a new one diffs by call.
        calls = ",\n".join(json.dumps(call) for call in self.calls)
        text = json.dumps(data, indent=1)[:-2] + f',\n "calls": [\n{calls}\n]\n}}\n'
        path.write_text(text, encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> Recording:
        """A saved recording; refused if its scenario is not the one of that name now."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        name = data["name"]
        now = json.loads(json.dumps(dataclasses.asdict(SCENARIOS[name])))
        if data["scenario"] != now:
            raise ValueError(f"{path}: the scenario changed since it was recorded; record it again")
        scenario, size = SCENARIOS[name], RunSize(**data["size"])
        return cls(name, scenario, size, data["calls"], data["end"])


def recording_estimator(calls: list[dict[str, Any]]) -> type[TimeLeft]:
    """An estimator that notes each call the loop makes into ``calls``: the time it was
    made (every clock read within the call answers that time) and the cache log entries
    added since the last one."""

    class RecordingTimeLeft(TimeLeft):
        def __init__(self, cache_log=None, clock=None) -> None:
            self._real_clock = clock if clock is not None else time_left.perf_counter
            self._logged = 0
            self._now = 0.0
            cache_log = cache_log if cache_log is not None else []
            self._note("init", cache_log)
            super().__init__(cache_log, clock=lambda: self._now)

        def _note(self, name: str, log: list | None = None, **args: Any) -> dict[str, Any]:
            log = self.cache_log if log is None else log
            self._now = self._real_clock()
            call = {"call": name, "t": self._now, "log": list(log[self._logged :]), **args}
            self._logged = len(log)
            calls.append(call)
            return call

        def training_started(self) -> None:
            self._note("training_started")
            super().training_started()

        def batch_ended(self, plan: Plan) -> float | None:
            call = self._note("batch_ended", plan=dataclasses.asdict(plan))
            call["answer"] = super().batch_ended(plan)
            return call["answer"]

        def validation_started(self) -> None:
            self._note("validation_started")
            super().validation_started()

        def validation_ended(self, on) -> None:
            self._note("validation_ended", on=on)
            super().validation_ended(on)

        def freeze_changed(self) -> None:
            self._note("freeze_changed")
            super().freeze_changed()

        def paused(self) -> None:
            self._note("paused")
            super().paused()

        def resumed(self) -> None:
            self._note("resumed")
            super().resumed()

    return RecordingTimeLeft


def record(
    name: str, photos: Path, out: Path, size: RunSize = FRESH_SIZE
) -> tuple[Recording, ev.RunFinished, list[object]]:
    """Train the scenario ``name`` on ``photos`` (made by :func:`make_photos` at ``size``)
    under :func:`run_clock`'s clock (the caller holds it) with a fresh feature cache; the
    recording, how the run finished and its events."""
    scenario = SCENARIOS[name]
    epochs = scenario.epochs + size.more_epochs
    config = tiny_config(photos, out / "run", epochs=epochs, batch_size=size.batch_size)
    if scenario.preset is not None:
        config.freeze.preset = scenario.preset
    config.data.augment = scenario.augment
    trainer = Trainer(config, host=HOST)
    events: list[object] = []
    calls: list[dict[str, Any]] = []
    ended: list[float] = []

    def on_event(event) -> None:
        events.append(event)
        if isinstance(event, ev.BatchEnded) and (event.epoch, event.batch) == scenario.change_at:
            trainer.send(ev.SetFreeze(scenario.changes))
        if isinstance(event, ev.RunFinished):
            ended.append(CLOCK())

    trainer.subscribe(on_event)
    original = epoch_loop.TimeLeft
    epoch_loop.TimeLeft = recording_estimator(calls)
    try:
        finished = trainer.run()
    finally:
        epoch_loop.TimeLeft = original
    assert finished.status == "completed", finished.reason
    return Recording(name, scenario, size, calls, ended[0]), finished, events


def record_all(folder: Path = RECORDED) -> None:
    import os

    with tempfile.TemporaryDirectory() as tmp:
        # Every cache is really extracted: no run reuses another's features.
        os.environ["DTL_CACHE_DIR"] = str(Path(tmp) / "cache")
        os.environ["DTL_FEATURE_CACHE_REUSE"] = "0"
        photos = make_photos(Path(tmp) / "photos", RECORDED_SIZE)
        with run_clock():
            record("unchanged", photos, Path(tmp) / "warm-up", RECORDED_SIZE)  # imports, first uses
            for name in SCENARIOS:
                for attempt in range(1, ATTEMPTS + 1):
                    recording, _, _ = record(name, photos, Path(tmp) / f"{name}-{attempt}", RECORDED_SIZE)
                    if recording.unsteadiness() <= MAX_UNSTEADINESS:
                        break
                    print(f"{name}: like epochs differed by {recording.unsteadiness():.0%}; again")
                else:
                    raise SystemExit(
                        f"{name}: the machine's speed kept changing during the run (like epochs "
                        f"differed by {recording.unsteadiness():.0%}); record again when nothing "
                        "else runs"
                    )
                print(recording.save(folder), f"(like epochs within {recording.unsteadiness():.0%})")


if __name__ == "__main__":
    record_all(Path(sys.argv[1]) if len(sys.argv) > 1 else RECORDED)
