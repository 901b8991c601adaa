"""One epoch of training and one of validation, over images or cached features, with the
commands that arrive between batches (cancel, pause/resume, freeze changes) applied.

Where an epoch's time goes decides what is kept between epochs
(:mod:`desktop_tl.core.cache_plan`); the frozen prefix runs without autograd
(:mod:`desktop_tl.core.frozen_prefix`). Per-image work in this process and steps that only
train the head on cached features run on one thread (their ops are too small for a thread
pool); the classifier head always computes in fp32, so its loss and gradients keep full
precision.
"""

from __future__ import annotations

import contextlib
import math
import time

import torch
from torch import nn

from ..errors import UserError
from . import events as ev
from .augmented_views import epoch_rows
from .cache_plan import CachePlanner
from .device import autocast, single_threaded
from .distributed import SINGLE, Distributed
from .evaluation import EvaluationReport, ItemScores, score
from .frozen_prefix import FrozenPrefix
from .image_batches import ImageReader
from .layers import apply_freeze_map, check_freeze_names, count_params, ordered_freeze_map, trainable_state
from .optimisation import Optimisation
from .cancelled import Cancelled
from .run_context import RunContext
from .run_progress import RunProgress
from .time_left import LoopPlan, TimeLeft
from .validation_scores import MAX_KEPT_LOGITS


class NonFiniteLoss(Exception):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


class ScheduledFreeze:
    """The run file's freeze.schedule: the changes due at the start of each epoch.

    Each epoch's entries are handed out once, at the first command poll of that epoch
    (before its first batch), in the same step on every process. A resumed run starts at
    the epoch after its checkpoint, whose freeze map already holds the earlier entries.
    """

    def __init__(self, model: nn.Module, schedule: list[dict]) -> None:
        self.by_epoch: dict[int, list[dict[str, bool]]] = {}
        for number, entry in enumerate(schedule, 1):
            try:
                check_freeze_names(model, entry["changes"])
            except UserError as exc:
                raise UserError(
                    f"freeze.schedule entry {number} (epoch {entry['epoch']}): {exc}; "
                    "fix the entry in the run file, then start again"
                ) from None
            self.by_epoch.setdefault(entry["epoch"] - 1, []).append(dict(entry["changes"]))
        self.polled = -1  # the last epoch (0-based) whose entries were handed out

    def due(self, epoch: int) -> list[dict[str, bool]]:
        if epoch <= self.polled:
            return []
        self.polled = epoch
        return self.by_epoch.get(epoch, [])


class EpochLoop:
    """Trains and validates one model epoch by epoch, reporting through a :class:`RunContext`."""

    def __init__(
        self,
        ctx: RunContext,
        cfg,
        built,
        prepared,
        device: torch.device,
        precision: str,
        optimisation: Optimisation,
        progress: RunProgress,
        distributed: Distributed = SINGLE,
    ) -> None:
        from .transforms import build_transform
        from .loaders import default_num_workers

        self.ctx = ctx
        self.distributed = distributed
        self.model = built.model
        self.prepared = prepared
        self.device = device
        self.precision = precision
        self.optimisation = optimisation
        self.progress = progress
        #: The logits of the last validation pass (None before one, or past the size kept).
        self.validation_scores: ItemScores | None = None
        self.epochs = cfg.train.epochs
        self.seed = cfg.train.seed
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
        # Per process: the processes of a distributed run share each step's batch.
        self.batch_size = distributed.batch_size(cfg.train.batch_size)
        shard_size = math.ceil(len(prepared.train) / distributed.world_size)
        self.batches_per_epoch = max(1, math.ceil(shard_size / self.batch_size))
        preprocessing = built.backbone.preprocessing
        self.eval_transform = build_transform(preprocessing, "none", train=False)
        workers = cfg.data.num_workers
        self.prefix = FrozenPrefix(self.model, device, precision, ctx.log)
        self.reader = ImageReader(
            prepared,
            preprocessing,
            self.eval_transform,
            augment=cfg.data.augment,
            batch_size=self.batch_size,
            seed=cfg.train.seed,
            device=device,
            log=ctx.log,
            num_workers=default_num_workers(len(prepared.train)) if workers < 0 else workers,
        )
        self.caches = CachePlanner(
            ctx,
            self.prefix,
            self.reader,
            mode=cfg.train.feature_cache,
            budget_mb=cfg.train.cache_budget_mb,
            reuse=cfg.train.feature_cache_reuse,
            backbone_id=built.backbone_id,
            weights_sha256=built.backbone.provenance.sha256,
            precision=precision,
            device=device,
            distributed=distributed,
            augmented_views=cfg.train.augmented_views,
            epochs=cfg.train.epochs,
        )
        self.paused = False
        # SetFreeze changes in the order they came: a later one may undo part of an
        # earlier one, so they are never merged into one unordered map.
        self._pending_freeze: list[dict[str, bool]] = []
        self.freeze_commands = 0  # SetFreeze commands taken this run (FreezeApplied.commands)
        self.freeze_schedule = ScheduledFreeze(self.model, cfg.freeze.schedule)
        self._t0 = time.perf_counter()
        self.time_left = TimeLeft(self.caches.log)  # the ETA, per phase of the run
        self.remaining_plan = LoopPlan(self)
        # Distributed: DDP averages the trainable parameters' gradients over the processes.
        self.ddp = distributed.wrap(self.model, self.forward)

    def start_clock(self, t0: float) -> None:
        """Times (elapsed, ETA) count from ``t0``, when the first epoch starts."""
        self._t0 = t0

    def close(self) -> None:
        """Release every cache and loader (worker processes stop with their loader)."""
        self.caches.close()
        self.reader.close()
        self.prefix.forget_runners()
        self.ddp = None  # it holds the process group, which must end before the process

    # ---- commands

    def poll_commands(self, epoch: int) -> None:
        ctx = self.ctx
        scheduled = self.freeze_schedule.due(epoch)
        if scheduled:
            self.apply_freeze_change(scheduled, epoch, scheduled=True)
        while True:
            command = ctx.next_command(wait=self.paused)
            if command is None:
                if self.paused:
                    ctx.check_stop()
                    continue
                break
            if isinstance(command, ev.Cancel):
                raise Cancelled()
            if isinstance(command, ev.Pause) and not self.paused:
                self.paused = True
                self.time_left.paused()
                ctx.log("info", f"paused at epoch {epoch + 1}")
            elif isinstance(command, ev.Resume) and self.paused:
                self.paused = False
                self.time_left.resumed()
                ctx.log("info", "resumed")
            elif isinstance(command, ev.SetFreeze):
                self._pending_freeze.append(dict(command.changes))
        ctx.check_stop()
        if self._pending_freeze:
            commands, self._pending_freeze = self._pending_freeze, []
            self.apply_freeze_change(commands, epoch)

    def apply_freeze_change(
        self, commands: list[dict[str, bool]], epoch: int, scheduled: bool = False
    ) -> None:
        """Apply freeze changes in their order and report the result: SetFreeze commands
        as sent, or (``scheduled``) the run file's freeze.schedule entries for ``epoch``."""
        ctx, model, step = self.ctx, self.model, self.progress.step
        valid = []
        if not scheduled:
            self.freeze_commands += len(commands)
            if self.distributed.active:
                # The processes must change together at the same step; a command reaches one.
                ctx.log(
                    "warning",
                    "freeze change ignored: live freeze changes do not apply to a distributed "
                    "run; put them in the run file's freeze.schedule, e.g. under [freeze]: "
                    'schedule = [{ epoch = 3, changes = { "backbone.blocks" = true } }]',
                )
                commands = []
        for command in commands:
            try:
                check_freeze_names(model, command)
            except UserError as exc:
                ctx.log("error", f"freeze change ignored: {exc}")
            else:
                valid.append(command)
        # Equal to applying each command in turn (see ordered_freeze_map).
        changes = ordered_freeze_map(valid)
        if not changes:
            # The sender still learns that these commands were taken, and what trains.
            trainable, total = count_params(model)
            note = "on" if self.caches.caches["train"] is not None else "off"
            ctx.emit(
                ev.FreezeApplied(
                    step, epoch, {}, trainable, total, note, trainable_state(model), self.freeze_commands
                )
            )
            return
        apply_freeze_map(model, changes)
        if self.ddp is not None:
            # DDP reduces the gradients of the parameters that trained when it was made;
            # every process makes the new one at the same point (an epoch's start).
            self.ddp = self.distributed.wrap(self.model, self.forward)
        self.time_left.freeze_changed()
        for param in model.parameters():
            if not param.requires_grad:
                param.grad = None
        self.prefix.forget_runners()
        self.prefix.set_modes()
        stale = self.caches.stale()
        if stale:
            trainable_now = ", ".join(n for n, v in changes.items() if v) or "a stage"
            self.caches.leave(f"{trainable_now} trainable", step, stale)
            note = "left"
        else:
            note = "on" if self.caches.caches["train"] is not None else "off"
        trainable, total = count_params(model)
        record = {
            "step": step,
            "epoch": epoch + 1,
            "changes": dict(changes),
            "trainable_params": trainable,
            "feature_cache": note,
        }
        self.progress.freeze_changes.append({**record, "scheduled": True} if scheduled else record)
        desc = ", ".join(f"{name} {'trainable' if on else 'frozen'}" for name, on in changes.items())
        count = f"{trainable:,}/{total:,} parameters trainable"
        if scheduled:
            ctx.log("info", f"scheduled freeze change at epoch {epoch + 1}: {desc}; {count} (step {step})")
        else:
            ctx.log("info", f"freeze change at step {step} (epoch {epoch + 1}): {desc}; {count}")
        ctx.emit(
            ev.FreezeApplied(
                step,
                epoch,
                dict(changes),
                trainable,
                total,
                note,
                trainable_state(model),
                self.freeze_commands,
            )
        )

    # ---- forward passes

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Logits from chain stage ``start`` on. The frozen stretch runs under
        inference_mode; the trainable stages under autocast; the head in fp32."""
        prefix = self.prefix
        n = len(prefix)
        k = max(start, prefix.first_trainable())
        if k > start:
            x = prefix.run_frozen(x, start, k)
            if not torch.is_inference_mode_enabled():
                x = x.clone()  # an inference tensor cannot be saved for backward
        if k < n:
            with autocast(self.device, self.precision):
                x = prefix.run(x, k, n)
        return self.model.head(x.float())

    def threads_for(self, start: int):
        """One thread for a step that only runs the head on cached features: its ops are
        too small to gain from a thread pool, and pay for its synchronisation."""
        if start >= len(self.prefix) and self.device.type == "cpu":
            return single_threaded()
        return contextlib.nullcontext()

    # ---- one epoch

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        seed = self.seed * 100_003 + epoch
        self.poll_commands(epoch)
        self.caches.ensure(self.progress.step)
        # Seeded after the caches are made: whether this epoch builds them (a resumed run
        # does) must not change the random draws of training.
        torch.manual_seed(seed)
        self.prefix.set_modes()
        cache = self.caches.caches["train"]
        self.prefix.prepare_from(cache.chain_index if cache is not None else 0)
        self.time_left.training_started()
        # With the cache, the order is drawn over its images (readable ones only), each as
        # one of its augmented views where it holds several, and given as the cache's rows;
        # if the cache is left mid-epoch, the rest of the order maps back to dataset items.
        draws = torch.Generator().manual_seed(seed)
        if cache is not None:
            order = epoch_rows(len(cache) // cache.views_per_image, cache.views_per_image, draws)
        else:
            order = torch.randperm(len(self.prepared.train), generator=draws)
        order = self.distributed.shard(order)
        n = len(order)
        total_loss = 0.0
        correct = 0
        seen = 0
        position = 0
        batch_index = 0
        used: list[torch.Tensor] = []  # the items this process trained on, for the check below
        with self.distributed.join(self.ddp):
            while position < n and cache is not None and self.caches.caches["train"] is cache:
                rows = order[position : position + self.batch_size]
                feats, labels = cache.take(rows)
                used.append(cache.keep[rows])
                loss, hits = self.train_step(self.prefix.to_device(feats), labels, cache.chain_index)
                position += len(rows)
                total_loss += loss * len(rows)
                correct += hits
                seen += len(rows)
                self.after_batch(epoch, batch_index, loss)
                batch_index += 1
            if position < n:
                remaining = order[position:]
                if cache is not None:
                    remaining = cache.keep[remaining]
                for images, labels, indices in self.reader.image_batches(
                    "train", True, remaining, seed, self.caches.decoded["train"]
                ):
                    used.append(indices)
                    loss, hits = self.train_step(self.prefix.to_device(images), labels, 0)
                    total_loss += loss * len(labels)
                    correct += hits
                    seen += len(labels)
                    self.after_batch(epoch, batch_index, loss)
                    batch_index += 1
        if self.distributed.active:
            level, message = self.distributed.coverage(used)
            self.ctx.log(level, f"epoch {epoch + 1}: {message}")
        total_loss, correct, seen = self.distributed.sum([total_loss, correct, seen])
        return total_loss / max(seen, 1), correct / max(seen, 1)

    def train_step(self, x: torch.Tensor, labels: torch.Tensor, start: int) -> tuple[float, int]:
        opt = self.optimisation
        with self.threads_for(start):
            labels = labels.to(self.device)
            opt.optimizer.zero_grad(set_to_none=True)
            logits = self.ddp(x, start) if self.ddp is not None else self.forward(x, start)
            loss = self.criterion(logits.float(), labels)
            if not torch.isfinite(loss):
                step = self.progress.step
                raise NonFiniteLoss(
                    f"the loss became {float(loss.detach())} at epoch {step // self.batches_per_epoch + 1} "
                    f"(step {step}); training stopped. Try a lower learning rate."
                )
            opt.scaler.scale(loss).backward()
            opt.scaler.step(opt.optimizer)
            opt.scaler.update()
            hits = int((logits.argmax(dim=1) == labels).sum())
            return float(loss.detach()), hits

    def after_batch(self, epoch: int, batch: int, loss: float) -> None:
        progress = self.progress
        elapsed = time.perf_counter() - self._t0
        eta = self.time_left.batch_ended(self.remaining_plan.at(epoch, batch))
        self.ctx.emit(
            ev.BatchEnded(
                epoch, batch, self.batches_per_epoch, progress.step, loss, self.optimisation.lr, elapsed, eta
            )
        )
        progress.step += 1
        self.poll_commands(epoch)

    # ---- validation

    def validate(self) -> EvaluationReport:
        # A cache left during the epoch is rebuilt here for the new freeze state, since
        # reading the images costs as much as building it.
        self.time_left.validation_started()
        self.caches.ensure(self.progress.step, ("val",))
        self.model.eval()
        cache = self.caches.caches["val"]
        paths = [path for path, _ in self.prepared.val]
        names = self.prepared.class_names
        smoothing = self.criterion.label_smoothing  # the same as training's
        if cache is not None:
            start = cache.chain_index
            rows_of = (
                cache.batches(256)
                if not self.distributed.active
                # this process's share
                else (
                    (*cache.take(rows), rows)
                    for rows in self.distributed.shard(torch.arange(len(cache))).split(256)
                )
            )
            batches = (
                (self.prefix.to_device(feats), labels, cache.keep[rows]) for feats, labels, rows in rows_of
            )
        else:
            start = 0
            order = self.distributed.shard(torch.arange(len(self.prepared.val)))
            batches = (
                (self.prefix.to_device(images), labels, indices)
                for images, labels, indices in self.reader.image_batches(
                    "val", False, order, 0, self.caches.decoded["val"]
                )
            )
        self.prefix.prepare_from(start)  # before a loader's threads start decoding
        with self.threads_for(start):
            report, self.validation_scores = score(
                lambda x: self.forward(x, start),
                batches,
                names,
                paths,
                label_smoothing=smoothing,
                gather=self.distributed.gather_outputs,
                keep_logits=len(paths) * len(names) <= MAX_KEPT_LOGITS,  # kept with the checkpoint
            )
        self.time_left.validation_ended(self.remaining_plan.input_of("val"))
        if report is None:
            raise UserError(
                f"none of the {len(paths)} validation images could be read; check "
                "the dataset folder, then start again"
            )
        return report

    @property
    def unreadable(self) -> dict[str, str]:
        return self.reader.unreadable
