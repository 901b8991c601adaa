"""Time left in a run, from a model of what is still to run and how fast each part ran.

One rate for the whole run is wrong as soon as the speed changes: an epoch over cached
features can be ten times faster than one over images, and a freeze change, or a feature
cache built, left or moved, changes what every later step costs. So the run is cut into
phases, each timed on its own:

- a training step, per input and per freeze state (a freeze change starts its rates
  afresh). The input is the features cached after a stage (its chain index), images kept
  decoded between epochs (``DECODED``) or images decoded for each batch (``IMAGES``, the
  rest of an epoch whose cache was left);
- a validation pass, per input;
- building a feature cache, moving one deeper and decoding images once, per image (from
  the cache's log);
- what happens between epochs (checkpoints, metrics), per epoch.

The time left is the remaining plan (the rest of this epoch, its validation, then the
following epochs on the input they will use) costed with those rates. A training input
still to come that has no measured rate under the current freeze state makes the answer
None ("estimating…"): after a freeze change that leaves or moves the cache, the new
speed is unknown until three steps on that input have run (the first two warm up; only
the first in an epoch of fewer than eight batches), and any guess from another input's
speed can be several times off. Validation, extraction and decoding, before they were
ever timed, are costed at a training step's time per image on the same input or on images
(a forward pass or a decode costs no more than a training step on them), and a first
validation pass on an input at no more than that (it also warms the input up); the work
between epochs counts as nothing until an epoch has ended, and the work between two
epochs during which a cache was made is not taken as typical (freeing what the cache
replaced is not in the cache's log).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Union

IMAGES = "images"  # images decoded for each batch
DECODED = "decoded"  # images decoded once and kept
Input = Union[int, str]  # a cached stage's chain index, IMAGES or DECODED


@dataclass(frozen=True)
class Plan:
    """What remains of the run at the end of a training batch.

    ``*_cache_at`` is the chain index after which a subset's features are cached now
    (None: none); ``*_decoded`` whether its images are kept decoded; ``stage`` is where
    a cache built now would sit (the first trainable stage) and ``*_cacheable`` whether
    the coming epochs will have one.
    """

    epoch: int  # 0-based, the epoch of the batch just done
    batch: int  # 0-based, within the epoch
    epochs: int  # planned in all
    batches_per_epoch: int
    num_train: int  # images trained on per epoch
    num_val: int
    stage: int
    train_cache_at: int | None
    val_cache_at: int | None
    train_decoded: bool
    val_decoded: bool
    train_cacheable: bool
    val_cacheable: bool
    train_views: int = 1  # rows per training image in its cache (augmented views)

    @property
    def train_input(self) -> Input:
        """What the rest of this epoch trains on."""
        return input_of(self.train_cache_at, self.train_decoded)


def input_of(cache_at: int | None, decoded: bool) -> Input:
    if cache_at is not None:
        return cache_at
    return DECODED if decoded else IMAGES


class TimeLeft:
    """Times the phases of a run as the loop reports them and answers the seconds left.

    ``cache_log`` is the feature cache's log (entries with ``event``, ``rows`` or ``of``,
    ``seconds``), read as it grows: time spent building caches or decoding images is
    taken out of the phase it happened in and kept as a rate per image.
    """

    def __init__(
        self, cache_log: list[dict[str, Any]] | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        self.clock = clock if clock is not None else perf_counter
        self.cache_log = cache_log if cache_log is not None else []
        self._read = 0  # cache log entries already taken into account
        self.generation = 0  # freeze changes so far
        self._mark = self.clock()
        self._paused_at: float | None = None
        self._steps: dict[tuple[int, Input], _Timings] = {}
        self._passes: dict[Input, _Timings] = {}
        self._between = _Timings()
        self._per_row: dict[str, deque[float]] = {
            e: deque(maxlen=4) for e in ("built", "advanced", "decoded")
        }
        self._validated_at: float | None = None  # when the last validation ended

    # ---- what the loop reports

    def training_started(self) -> None:
        """The epoch's batches start (its caches are made)."""
        now = self.clock()
        cache_work = self._take_cache_work()
        # Checkpoints and the rest between two epochs; but not when a cache was made or
        # left meanwhile, once there is another: what the log times is taken out, yet
        # freeing what it replaced (images kept decoded, the old features) is not.
        if self._validated_at is not None and not (cache_work and self._between):
            self._between.add(max(0.0, now - self._validated_at - cache_work))
        self._validated_at = None
        self._mark = now

    def batch_ended(self, plan: Plan) -> float | None:
        """One training batch done; the seconds left in the run after it."""
        now = self.clock()
        key = (self.generation, plan.train_input)
        if key not in self._steps:
            # The last epoch's worth of steps: an epoch's start-up counts once in it. The
            # second step on an input is still slower than the rest (measured: twice as
            # slow over cached features); an epoch of a few batches cannot spare it.
            warm_up = 2 if plan.batches_per_epoch >= 8 else 1
            self._steps[key] = _Timings(keep=max(8, plan.batches_per_epoch), warm_up=warm_up)
        self._steps[key].add(max(0.0, now - self._mark - self._take_cache_work()))
        self._mark = now
        return self.seconds_left(plan)

    def validation_started(self) -> None:
        self._take_cache_work()  # anything before is not validation's
        self._mark = self.clock()

    def validation_ended(self, on: Input) -> None:
        """A validation pass over input ``on`` is done."""
        now = self.clock()
        seconds = max(0.0, now - self._mark - self._take_cache_work())
        self._passes.setdefault(on, _Timings()).add(seconds)
        self._validated_at = self._mark = now

    def freeze_changed(self) -> None:
        """What trains changed: every training rate is measured again."""
        self.generation += 1

    def paused(self) -> None:
        if self._paused_at is None:
            self._paused_at = self.clock()

    def resumed(self) -> None:
        """Time spent paused belongs to no phase."""
        if self._paused_at is not None:
            pause = self.clock() - self._paused_at
            self._mark += pause
            if self._validated_at is not None:
                self._validated_at += pause
            self._paused_at = None

    # ---- the estimate

    def seconds_left(self, plan: Plan) -> float | None:
        """The remaining plan costed at the rates measured so far (None: a training input
        to come has no rate yet)."""
        rate_now = self.step_rate(plan.train_input)
        if rate_now is None:
            return None
        left = (plan.batches_per_epoch - plan.batch - 1) * rate_now
        # This epoch's validation, on the input validate() will make for it.
        if plan.val_cacheable:
            val_on: Input = plan.stage
            val_prep = self._cache_cost(plan.val_cache_at, plan, plan.num_val)
        else:
            val_on, val_prep = DECODED, self._decode_cost(plan.val_decoded, plan, plan.num_val)
        val_pass = self.pass_time(val_on, plan)
        if val_prep is None or val_pass is None:
            return None
        between = self.between_epochs()
        left += val_prep + val_pass + between
        following = plan.epochs - plan.epoch - 1
        if following > 0:
            if plan.train_cacheable:
                train_on: Input = plan.stage
                rows = plan.num_train * plan.train_views  # a prefix pass per view
                train_prep = self._cache_cost(plan.train_cache_at, plan, rows)
            else:
                # Images read for each batch now are decoded once when the next epoch starts.
                train_on = DECODED
                train_prep = self._decode_cost(plan.train_decoded, plan, plan.num_train)
            rate = self.step_rate(train_on)
            if train_prep is None or rate is None:
                return None
            left += train_prep + following * (plan.batches_per_epoch * rate + val_pass + between)
        return left

    def step_rate(self, on: Input) -> float | None:
        """Seconds per training step on this input under the current freeze state."""
        steps = self._steps.get((self.generation, on))
        # The first steps on an input are not a rate yet: they warm up what it uses.
        return steps.typical if steps is not None and steps.recent else None

    def pass_time(self, on: Input, plan: Plan) -> float | None:
        """Seconds per validation pass on this input."""
        passes = self._passes.get(on)
        if passes and passes.recent:
            return passes.typical
        per_image = self._step_per_image(on, plan)
        from_steps = None if per_image is None else per_image * plan.num_val
        if passes:
            # The first pass on an input also warms it up (new batch shapes, the layers'
            # first run in eval mode): no more than a training step's time per image on
            # that input, which a forward pass never exceeds.
            return passes.first if from_steps is None else min(passes.first, from_steps)
        return from_steps

    def between_epochs(self) -> float:
        return self._between.typical if self._between else 0.0

    # ---- helpers

    def _step_per_image(self, on: Input, plan: Plan, *others: Input) -> float | None:
        """A training step's seconds per image on the first of these inputs timed."""
        for candidate in (on, *others):
            rate = self.step_rate(candidate)
            if rate is not None:
                return rate * plan.batches_per_epoch / max(plan.num_train, 1)
        return None

    def _per_row_or_step(self, events: tuple[str, ...], plan: Plan, rows: int) -> float | None:
        for event in events:
            per_row = self._per_row[event]
            if per_row:
                return rows * sum(per_row) / len(per_row)
        per_image = self._step_per_image(IMAGES, plan, DECODED)
        return None if per_image is None else per_image * rows

    def _cache_cost(self, cache_at: int | None, plan: Plan, rows: int) -> float | None:
        """Seconds to make a cache at ``plan.stage`` from one at ``cache_at`` (None:
        there is none); moving one deeper costs at most building it."""
        if cache_at == plan.stage:
            return 0.0
        moving = cache_at is not None and cache_at < plan.stage
        return self._per_row_or_step(("advanced", "built") if moving else ("built",), plan, rows)

    def _decode_cost(self, decoded: bool, plan: Plan, rows: int) -> float | None:
        return 0.0 if decoded else self._per_row_or_step(("decoded",), plan, rows)

    def _take_cache_work(self) -> float:
        """Seconds the cache log reports since it was last read, its rates kept."""
        seconds = 0.0
        for entry in self.cache_log[self._read :]:
            spent = float(entry.get("seconds", 0.0))
            seconds += spent
            event, rows = entry.get("event"), entry.get("rows", entry.get("of", 0))
            if event in self._per_row and rows and not entry.get("reused"):
                self._per_row[event].append(spent / rows)
        self._read = len(self.cache_log)
        return seconds


class _Timings:
    """Recent timings of one phase. The first ``warm_up`` are left out once there are
    others: they carry one-off work (warming up a new stretch of the model, creating the
    checkpoint files)."""

    def __init__(self, keep: int = 3, warm_up: int = 1) -> None:
        self.first: float | None = None
        self.warm_up = warm_up
        self._warming = 0
        self.recent: deque[float] = deque(maxlen=keep)

    def add(self, seconds: float) -> None:
        if self._warming < self.warm_up:
            self._warming += 1
            if self.first is None:
                self.first = seconds
        else:
            self.recent.append(seconds)

    def __bool__(self) -> bool:
        return self.first is not None

    @property
    def typical(self) -> float:
        samples = self.recent or [self.first]
        return sum(samples) / len(samples)


class LoopPlan:
    """Reads the remaining plan off an epoch loop. What may be cached is read again only
    when the freeze state or the cache's health changed (finding it walks the model)."""

    def __init__(self, loop) -> None:
        self.loop = loop
        self._key: tuple | None = None
        self._cacheable: tuple[int, bool, bool] = (0, False, False)

    def at(self, epoch: int, batch: int) -> Plan:
        loop = self.loop
        caches = loop.caches
        key = (loop.freeze_commands, caches.broken)
        if key != self._key:
            self._key = key
            self._cacheable = (
                loop.prefix.first_trainable(),
                caches.blocker("train") is None,
                caches.blocker("val") is None,
            )
        stage, train_cacheable, val_cacheable = self._cacheable
        train, val = caches.caches["train"], caches.caches["val"]
        # The images this process trains on per epoch (a distributed run shares them out).
        num_train = min(len(loop.prepared.train), loop.batches_per_epoch * loop.batch_size)
        return Plan(
            epoch,
            batch,
            loop.epochs,
            loop.batches_per_epoch,
            num_train,
            len(loop.prepared.val),
            stage,
            train.chain_index if train is not None else None,
            val.chain_index if val is not None else None,
            caches.decoded["train"] is not None,
            caches.decoded["val"] is not None,
            train_cacheable,
            val_cacheable,
            caches.views_of("train") or 1,
        )

    def input_of(self, subset: str) -> Input:
        """What ``subset`` is read from now."""
        caches = self.loop.caches
        store = caches.caches[subset]
        return input_of(store.chain_index if store is not None else None, caches.decoded[subset] is not None)
