"""The training loop: a plain, Qt-free function of a configuration.

It reports what happens through events (see :mod:`desktop_tl.core.events`) and accepts
commands between batches (cancel, pause/resume, change the freeze map). Every parameter
stays in the optimiser; a frozen one simply has no gradient, so a freeze change mid-run
needs no new optimiser and takes effect at the next batch.

Determinism: the shuffle order and the random state of each epoch derive from the seed
and the epoch number alone, so a resumed run ends where an uninterrupted one would have.
"""

from __future__ import annotations

import copy
import math
import queue
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import UserError
from . import events as ev
from .checkpoints import find_run_checkpoint, load_checkpoint, save_checkpoint, versions
from .config import RunConfig
from .device import autocast, resolve_device, resolve_precision
from .feature_cache import FeatureStore, extract_features
from .layers import (
    apply_freeze,
    apply_freeze_map,
    backbone_chain,
    count_params,
    set_train_mode,
    trainable_state,
)
from .metrics import classification_report
from .model import BuiltModel, build_model
from .run_folder import (
    CHECKPOINTS,
    RUN_FILE,
    SPLIT_FILE,
    RunFolderError,
    RunLog,
    new_run_dir,
    prepare_new_run_dir,
    write_metrics,
    write_summary,
)

EventCallback = Callable[[object], None]


class _Cancelled(Exception):
    pass


class _NonFinite(Exception):
    pass


class Trainer:
    """Runs one training run. Create it, then call :meth:`run` (on a worker thread if a UI
    must stay responsive); :meth:`send` is safe from any thread."""

    def __init__(
        self,
        config: RunConfig,
        *,
        host: Any = None,
        on_event: EventCallback | None = None,
        resume: bool = False,
    ) -> None:
        self.config = copy.deepcopy(config)
        self.host = host
        self.resume = resume
        self._on_event = on_event
        self._commands: "queue.Queue[object]" = queue.Queue()
        self._cancel = threading.Event()
        self.run_dir: Path | None = None
        self.built: BuiltModel | None = None
        self.prepared = None
        self._log: RunLog | None = None

    # ------------------------------------------------------------------ public

    def send(self, command: object) -> None:
        """Queue a command (Cancel, Pause, Resume, SetFreeze); applied at the next batch."""
        if isinstance(command, ev.Cancel):
            self._cancel.set()
        self._commands.put(command)

    def run(self) -> ev.RunFinished:
        """Train to the end; returns (and emits) the final :class:`RunFinished`."""
        try:
            finished = self._run()
        except _Cancelled:
            finished = self._finish("cancelled", "stopped by the user")
        except UserError as exc:
            finished = self._finish("failed", str(exc))
        except Exception as exc:  # a bug or a library failure: keep its traceback in the log
            self._emit_log("error", traceback.format_exc())
            finished = self._finish("failed", f"{type(exc).__name__}: {exc}")
        self._emit(finished)
        return finished

    # ------------------------------------------------------------------ plumbing

    def _emit(self, event: object) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def _emit_log(self, level: str, message: str) -> None:
        if self._log is not None:
            try:
                self._log.write(level, message)
            except OSError:
                pass
        self._emit(ev.LogMessage(level, message))

    def _stage(self, stage: str, message: str, done: int = 0, total: int = 0) -> None:
        self._emit(ev.StageChanged(stage, message, done, total))

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise _Cancelled()

    # ------------------------------------------------------------------ the run

    def _run(self) -> ev.RunFinished:
        from ..plugin.manager import get_host
        from .data import DataPreparationCancelled, PreparedData, prepare_data

        self.host = self.host or get_host()
        cfg = self.config
        checkpoint = None
        if self.resume:
            run_dir = Path(cfg.out)
            if not (run_dir / RUN_FILE).exists():
                raise RunFolderError(f"{run_dir} is not a run folder (no {RUN_FILE}); nothing to resume")
            checkpoint = find_run_checkpoint(run_dir, "last")
            self.run_dir = run_dir
        else:
            run_dir = Path(cfg.out) if cfg.out else new_run_dir(cfg.model.backbone)
            self.run_dir = prepare_new_run_dir(run_dir)
            cfg.out = str(self.run_dir)
        self._log = RunLog(self.run_dir)
        self._emit_log("info", f"run folder: {self.run_dir}")

        # ---- data
        self._stage("data", "Checking images…")
        if self.resume and (self.run_dir / SPLIT_FILE).exists():
            prepared = PreparedData.load_manifest(self.run_dir / SPLIT_FILE)
        else:
            try:
                prepared = prepare_data(
                    cfg.data,
                    self.host,
                    progress=lambda done, total: self._stage("data", "Checking images…", done, total),
                    should_stop=self._cancel.is_set,
                )
            except DataPreparationCancelled:
                raise _Cancelled() from None
        self.prepared = prepared
        for path, reason in prepared.bad_files:
            self._emit_log("warning", f"skipped unreadable image {path}: {reason}")
        class_names = list(prepared.class_names)

        # ---- model
        self._stage("model", f"Building {cfg.model.backbone}…")
        torch.manual_seed(cfg.train.seed)
        built = build_model(cfg, self.host, len(class_names))
        self.built = built
        model = built.model
        cfg.model.backbone = built.backbone_id
        provenance = built.backbone.provenance
        if not provenance.pretrained:
            self._emit_log("warning", f"{built.backbone_id} starts from random weights (not pretrained)")
        else:
            self._emit_log("info", f"weights: {provenance.source} {provenance.path or ''} {provenance.detail}".rstrip())

        device = resolve_device(cfg.train.device)
        precision = resolve_precision(cfg.train.precision, device)
        self.device, self.precision = device, precision

        state: dict[str, Any] = {}
        if checkpoint is not None:
            model.load_state_dict(checkpoint.model_state())
            apply_freeze_map(model, checkpoint.meta["freeze_map"])
            state = checkpoint.training_state()
        else:
            apply_freeze(model, cfg.freeze.preset, cfg.freeze.overrides)
        model.to(device)
        if device.type != "mps":
            model.to(memory_format=torch.channels_last)

        optimizer = _make_optimizer(cfg, model)
        scheduler = _make_scheduler(cfg, optimizer)
        scaler = torch.amp.GradScaler(device.type, enabled=(precision == "fp16"))
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
        history: list[dict[str, Any]] = []
        freeze_changes: list[dict[str, Any]] = []
        best = {"val_acc": -1.0, "val_loss": math.inf, "epoch": -1}
        stale_epochs = 0
        start_epoch = 0
        step = 0
        if state:
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and "scheduler" in state:
                scheduler.load_state_dict(state["scheduler"])
            if "scaler" in state:
                scaler.load_state_dict(state["scaler"])
            start_epoch = int(state["epoch"]) + 1
            step = int(state["step"])
            history = list(state["history"])
            freeze_changes = list(state.get("freeze_changes", []))
            best = dict(state["best"])
            stale_epochs = int(state["stale_epochs"])
            self._emit_log("info", f"resuming after epoch {start_epoch} of {cfg.train.epochs}")
        else:
            prepared.save_manifest(self.run_dir / SPLIT_FILE)
        cfg.save(self.run_dir / RUN_FILE)
        write_metrics(self.run_dir, history)

        loop = _EpochLoop(self, cfg, model, device, precision, optimizer, scaler, criterion, prepared)
        self._emit(
            ev.RunStarted(
                run_dir=str(self.run_dir),
                epochs=cfg.train.epochs,
                batches_per_epoch=loop.batches_per_epoch,
                class_names=tuple(class_names),
                num_train=len(prepared.train),
                num_val=len(prepared.val),
                device=str(device),
                precision=precision,
                start_epoch=start_epoch,
            )
        )
        trainable, total = count_params(model)
        self._emit_log(
            "info",
            f"training {trainable:,} of {total:,} parameters on {device} ({precision}), "
            f"{len(prepared.train)} training and {len(prepared.val)} validation images",
        )

        self._t0 = time.perf_counter()
        status, reason = "completed", ""
        last_eval = None
        epoch = start_epoch - 1
        loop.step = step
        loop.freeze_changes = freeze_changes
        try:
            for epoch in range(start_epoch, cfg.train.epochs):
                epoch_t0 = time.perf_counter()
                train_loss, train_acc = loop.train_epoch(epoch)
                last_eval = loop.evaluate(epoch)
                lr = optimizer.param_groups[-1]["lr"]
                if scheduler is not None:
                    scheduler.step()
                report = last_eval["report"]
                metrics = {
                    "epoch": epoch + 1,
                    "train_loss": train_loss,
                    "train_acc": train_acc,
                    "val_loss": last_eval["loss"],
                    "val_acc": report.accuracy,
                    "lr": lr,
                    "epoch_seconds": time.perf_counter() - epoch_t0,
                    "feature_cache": loop.cache_status,
                }
                history.append(metrics)
                is_best = (report.accuracy, -last_eval["loss"]) > (best["val_acc"], -best["val_loss"])
                if last_eval["loss"] < best["val_loss"] - 1e-6:
                    stale_epochs = 0
                else:
                    stale_epochs += 1
                if is_best:
                    best = {"val_acc": report.accuracy, "val_loss": last_eval["loss"], "epoch": epoch + 1}
                training_state = {
                    "epoch": epoch,
                    "step": loop.step,
                    "optimizer": optimizer.state_dict(),
                    "history": history,
                    "best": best,
                    "stale_epochs": stale_epochs,
                    "freeze_changes": loop.freeze_changes,
                }
                if scheduler is not None:
                    training_state["scheduler"] = scheduler.state_dict()
                if scaler.is_enabled():
                    training_state["scaler"] = scaler.state_dict()
                meta = self._checkpoint_meta(built, class_names, metrics, epoch)
                model_state = model.state_dict()
                save_checkpoint(self.run_dir / CHECKPOINTS / "last", model_state, meta, training_state)
                if is_best:
                    save_checkpoint(self.run_dir / CHECKPOINTS / "best", model_state, meta)
                write_metrics(self.run_dir, history)
                full_metrics = {
                    **metrics,
                    "per_class_precision": report.precision,
                    "per_class_recall": report.recall,
                    "support": report.support,
                    "confusion": report.confusion,
                }
                self._emit(ev.EpochEnded(epoch, full_metrics, is_best, loop.step))
                self._emit_log(
                    "info",
                    f"epoch {epoch + 1}/{cfg.train.epochs}: train loss {train_loss:.4f}, "
                    f"val loss {last_eval['loss']:.4f}, val acc {report.accuracy:.3f}",
                )
                self._notify_plugins(epoch, metrics)
                if cfg.train.early_stopping_patience and stale_epochs >= cfg.train.early_stopping_patience:
                    status = "early-stopped"
                    reason = (
                        f"validation loss did not improve for {stale_epochs} epochs "
                        f"(best at epoch {best['epoch']})"
                    )
                    break
        except _Cancelled:
            status, reason = "cancelled", "stopped by the user"
        except _NonFinite as exc:
            status, reason = "failed", str(exc)

        summary = self._summary(status, reason, history, best, class_names, last_eval, loop)
        write_summary(self.run_dir, summary)
        self._emit_log("info" if status in ("completed", "early-stopped") else "warning",
                       f"run {status}{': ' + reason if reason else ''}")
        return ev.RunFinished(status, reason, str(self.run_dir), summary)

    # ------------------------------------------------------------------ helpers

    def _checkpoint_meta(self, built: BuiltModel, class_names, metrics, epoch) -> dict[str, Any]:
        return {
            "format": "desktop_tl.checkpoint/1",
            "classes": class_names,
            "backbone": built.backbone_id,
            "weights": built.backbone.provenance.to_dict(),
            "head": {"id": built.head_id, "options": built.head_options},
            "feature_dim": built.backbone.feature_dim,
            "freeze_map": trainable_state(built.model),
            "preprocessing": built.backbone.preprocessing.to_dict(),
            "metrics": metrics,
            "epoch": epoch + 1,
            "versions": versions(),
        }

    def _notify_plugins(self, epoch: int, metrics: dict[str, Any]) -> None:
        notify = getattr(self.host, "notify_epoch_end", None)
        if notify is None:
            return
        errors = notify(str(self.run_dir), epoch, dict(metrics))
        for error in errors or ():
            self._emit_log("warning", f"plugin error in dtl_on_epoch_end: {error}")

    def _summary(self, status, reason, history, best, class_names, last_eval, loop) -> dict[str, Any]:
        built = self.built
        last = history[-1] if history else {}
        summary: dict[str, Any] = {
            "status": status,
            "reason": reason,
            "val_acc": last.get("val_acc"),
            "val_loss": last.get("val_loss"),
            "best_val_acc": best["val_acc"] if best["val_acc"] >= 0 else None,
            "best_epoch": best["epoch"] if best["epoch"] > 0 else None,
            "epochs_completed": len(history),
            "epochs_planned": self.config.train.epochs,
            "classes": class_names,
            "train_seconds": round(time.perf_counter() - self._t0, 3),
            "backbone": built.backbone_id if built else self.config.model.backbone,
            "weights": built.backbone.provenance.to_dict() if built else None,
            "device": str(self.device),
            "precision": self.precision,
            "feature_cache": loop.cache_log,
            "freeze_changes": loop.freeze_changes,
            "num_train": len(self.prepared.train),
            "num_val": len(self.prepared.val),
            "skipped_files": [
                {"path": p, "reason": r}
                for p, r in [*self.prepared.bad_files, *loop.unreadable.items()]
            ],
            "run_dir": str(self.run_dir),
            "versions": versions(),
        }
        if last_eval is not None:
            report = last_eval["report"]
            summary["confusion"] = report.confusion
            summary["per_class_precision"] = report.precision
            summary["per_class_recall"] = report.recall
            summary["misclassified"] = last_eval["misclassified"]
        return summary

    def _finish(self, status: str, reason: str) -> ev.RunFinished:
        summary = {"status": status, "reason": reason}
        if self.run_dir is not None and self.run_dir.exists():
            try:
                write_summary(self.run_dir, summary)
            except OSError:
                pass
            self._emit_log("error" if status == "failed" else "warning", f"run {status}: {reason}")
        else:
            self._emit(ev.LogMessage("error" if status == "failed" else "warning", f"run {status}: {reason}"))
        return ev.RunFinished(status, reason, str(self.run_dir or ""), summary)


# ---------------------------------------------------------------------- optimiser


def _make_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    head = [p for p in model.head.parameters()]
    backbone = [p for p in model.backbone.parameters()]
    lr = cfg.train.lr
    groups = [
        {"params": backbone, "lr": lr * cfg.train.backbone_lr_mult, "name": "backbone"},
        {"params": head, "lr": lr, "name": "head"},
    ]
    wd = cfg.train.weight_decay
    if cfg.train.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd)
    if cfg.train.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.train.momentum, weight_decay=wd)


def _make_scheduler(cfg: RunConfig, optimizer):
    if cfg.train.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.train.epochs)
    if cfg.train.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.train.step_size, gamma=cfg.train.gamma)
    return None


# ---------------------------------------------------------------------- epochs


class _EpochLoop:
    """Runs epochs over images or cached features, applying commands between batches."""

    def __init__(self, trainer: Trainer, cfg, model, device, precision, optimizer, scaler, criterion, prepared):
        from .data import build_transform, default_num_workers

        self.trainer = trainer
        self.cfg = cfg
        self.model = model
        self.device = device
        self.precision = precision
        self.optimizer = optimizer
        self.scaler = scaler
        self.criterion = criterion
        self.prepared = prepared
        self.chain = [module for _, module in backbone_chain(model)]
        self.chain_names = [name for name, _ in backbone_chain(model)]
        pre = trainer.built.backbone.preprocessing
        self.eval_transform = build_transform(pre, "none", train=False)
        self.train_transform = build_transform(pre, cfg.data.augment, train=True)
        self.unreadable: dict[str, str] = {}
        workers = cfg.data.num_workers
        self.num_workers = default_num_workers(len(prepared.train)) if workers < 0 else workers
        self.batch_size = cfg.train.batch_size
        self.batches_per_epoch = max(1, math.ceil(len(prepared.train) / self.batch_size))
        self.step = 0
        self.freeze_changes: list[dict[str, Any]] = []
        self.cache_log: list[dict[str, Any]] = []
        self.train_cache: FeatureStore | None = None
        self.val_cache: FeatureStore | None = None
        self.paused = False
        self._pending_freeze: dict[str, bool] = {}
        self._epoch_t0 = None

    # ---- what part of the chain trains

    def first_trainable(self) -> int:
        for index, module in enumerate(self.chain):
            if any(p.requires_grad for p in module.parameters()):
                return index
        return len(self.chain)

    def cache_allowed(self) -> str | None:
        """None if features may be cached now, else the reason they may not."""
        if self.cfg.train.feature_cache == "off":
            return "feature cache turned off"
        if self.cfg.data.augment != "none":
            return f"augmentation '{self.cfg.data.augment}' changes images every epoch"
        if self.first_trainable() == 0:
            return "the whole backbone is trainable"
        return None

    @property
    def cache_status(self) -> str:
        if self.train_cache is not None:
            return f"on@{self.chain_names[self.train_cache.chain_index - 1]}"
        return "off"

    # ---- commands

    def poll_commands(self, epoch: int) -> None:
        trainer = self.trainer
        while True:
            try:
                command = trainer._commands.get(block=self.paused, timeout=0.1 if self.paused else None)
            except queue.Empty:
                if self.paused:
                    trainer._check_cancel()
                    continue
                break
            if isinstance(command, ev.Cancel):
                raise _Cancelled()
            if isinstance(command, ev.Pause) and not self.paused:
                self.paused = True
                trainer._emit_log("info", f"paused at epoch {epoch + 1}")
            elif isinstance(command, ev.Resume) and self.paused:
                self.paused = False
                trainer._emit_log("info", "resumed")
            elif isinstance(command, ev.SetFreeze):
                self._pending_freeze.update(command.changes)
        trainer._check_cancel()
        if self._pending_freeze:
            changes, self._pending_freeze = self._pending_freeze, {}
            self.apply_freeze_change(changes, epoch)

    def apply_freeze_change(self, changes: dict[str, bool], epoch: int) -> None:
        trainer = self.trainer
        try:
            apply_freeze_map(self.model, changes)
        except UserError as exc:
            trainer._emit_log("error", f"freeze change ignored: {exc}")
            return
        for param in self.model.parameters():
            if not param.requires_grad:
                param.grad = None
        set_train_mode(self.model)
        note = "unchanged"
        if self.train_cache is not None and self.first_trainable() < self.train_cache.chain_index:
            self.leave_cache(f"{', '.join(n for n, v in changes.items() if v)} unfrozen")
            note = "left"
        trainable, total = count_params(self.model)
        record = {"step": self.step, "epoch": epoch + 1, "changes": dict(changes),
                  "trainable_params": trainable, "feature_cache": note}
        self.freeze_changes.append(record)
        desc = ", ".join(f"{name} {'trainable' if on else 'frozen'}" for name, on in changes.items())
        trainer._emit_log("info", f"freeze change at step {self.step} (epoch {epoch + 1}): {desc}; "
                                  f"{trainable:,}/{total:,} parameters trainable")
        trainer._emit(ev.FreezeApplied(self.step, epoch, dict(changes), trainable, total, note))

    def leave_cache(self, reason: str) -> None:
        self.train_cache = None
        self.val_cache = None
        self.cache_log.append({"step": self.step, "event": "left", "reason": reason})
        self.trainer._emit_log("info", f"feature cache left: {reason}")

    # ---- forward passes

    def run_chain(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for module in self.chain[start:stop]:
            x = module(x)
        return x

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Logits from chain stage ``start`` on; the frozen stretch runs without autograd."""
        k = max(start, self.first_trainable())
        with autocast(self.device, self.precision):
            if k > start:
                with torch.no_grad():
                    x = self.run_chain(x, start, k)
            x = self.run_chain(x, k, len(self.chain))
            return self.model.head(x)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if x.dim() == 4 and self.device.type != "mps":
            x = x.contiguous(memory_format=torch.channels_last)
        if x.dtype == torch.float16 and self.device.type == "cpu":
            x = x.float()
        return x

    def image_batches(self, items, transform, order: torch.Tensor | None, seed: int):
        """(images, labels, item indices) batches over ``items`` in ``order``; images that
        became unreadable since they were checked are skipped and reported once."""
        from .data import ImageDataset, make_loader

        selected = items if order is None else [items[i] for i in order.tolist()]
        dataset = ImageDataset(selected, transform, with_index=True)
        loader = make_loader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            seed=seed,
            device=self.device,
        )
        for batch in loader.batches():
            indices = batch.indices if order is None else order[batch.indices]
            yield batch.images, batch.labels, indices
        for path, reason in loader.unreadable:
            if path not in self.unreadable:
                self.unreadable[path] = reason
                self.trainer._emit_log("warning", f"skipped unreadable image {path}: {reason}")

    # ---- the cache

    def ensure_cache(self, epoch: int) -> None:
        reason = self.cache_allowed()
        if reason is not None:
            if self.train_cache is not None:
                self.leave_cache(reason)
            if not self.cache_log or self.cache_log[-1].get("reason") != reason:
                self.cache_log.append({"step": self.step, "event": "off", "reason": reason})
            return
        k = self.first_trainable()
        if self.train_cache is not None and self.train_cache.chain_index <= k:
            return
        where = self.chain_names[k - 1]
        self.trainer._emit_log("info", f"extracting features once at {where} (frozen layers before it)")
        self.train_cache = self.extract(self.prepared.train, k, "training")
        self.val_cache = self.extract(self.prepared.val, k, "validation")
        self.cache_log.append({"step": self.step, "event": "built", "at": where,
                               "bytes": self.train_cache.nbytes + self.val_cache.nbytes})

    def extract(self, items, k: int, label: str) -> FeatureStore:
        trainer = self.trainer
        total = len(items)
        self.model.eval()

        def run_prefix(images):
            with torch.inference_mode(), autocast(self.device, self.precision):
                return self.run_chain(self.to_device(images), 0, k)

        def progress(done):
            trainer._stage("features", f"Extracting {label} features…", done, total)

        store = extract_features(
            run_prefix,
            self.image_batches(items, self.eval_transform, None, 0),
            k,
            progress=progress,
            should_stop=trainer._cancel.is_set,
        )
        trainer._check_cancel()
        return store

    # ---- one epoch

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        cfg = self.cfg
        seed = cfg.train.seed * 100_003 + epoch
        torch.manual_seed(seed)
        self.poll_commands(epoch)
        self.ensure_cache(epoch)
        set_train_mode(self.model)
        cache = self.train_cache
        # With the cache, the order is drawn over its rows (readable images only); if the
        # cache is left mid-epoch, the rest of the order maps back to dataset items.
        n = len(cache) if cache is not None else len(self.prepared.train)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        total_loss = 0.0
        correct = 0
        seen = 0
        position = 0
        batch_index = 0
        while position < n and self.train_cache is not None:
            rows = order[position : position + self.batch_size]
            feats, labels = cache.take(rows)
            loss, hits = self.train_step(self.to_device(feats), labels, cache.chain_index)
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
            for images, labels, _indices in self.image_batches(self.prepared.train, self.train_transform, remaining, seed):
                loss, hits = self.train_step(self.to_device(images), labels, 0)
                total_loss += loss * len(labels)
                correct += hits
                seen += len(labels)
                self.after_batch(epoch, batch_index, loss)
                batch_index += 1
        return total_loss / max(seen, 1), correct / max(seen, 1)

    def train_step(self, x: torch.Tensor, labels: torch.Tensor, start: int) -> tuple[float, int]:
        labels = labels.to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.forward(x, start)
        loss = self.criterion(logits.float(), labels)
        if not torch.isfinite(loss):
            raise _NonFinite(
                f"the loss became {float(loss)} at epoch {self._epoch_of_step()} (step {self.step}); "
                "training stopped and the last good checkpoint was kept. "
                "Try a lower learning rate."
            )
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        hits = int((logits.argmax(dim=1) == labels).sum())
        return float(loss.detach()), hits

    def _epoch_of_step(self) -> int:
        return self.step // self.batches_per_epoch + 1

    def after_batch(self, epoch: int, batch: int, loss: float) -> None:
        trainer = self.trainer
        elapsed = time.perf_counter() - trainer._t0
        done_steps = self.step + 1
        start_step = getattr(self, "_start_step", None)
        if start_step is None:
            start_step = self._start_step = self.step
        total_steps = self.cfg.train.epochs * self.batches_per_epoch
        rate = elapsed / max(done_steps - start_step, 1)
        eta = rate * max(total_steps - done_steps, 0)
        trainer._emit(
            ev.BatchEnded(epoch, batch, self.batches_per_epoch, self.step, loss,
                          self.optimizer.param_groups[-1]["lr"], elapsed, eta)
        )
        self.step += 1
        self.poll_commands(epoch)

    # ---- evaluation

    @torch.inference_mode()
    def evaluate(self, epoch: int) -> dict[str, Any]:
        self.model.eval()
        losses = []
        preds = []
        targets = []
        probs = []
        item_indices = []
        if self.val_cache is not None and self.train_cache is not None:
            cache = self.val_cache
            for start in range(0, len(cache), 256):
                rows = torch.arange(start, min(start + 256, len(cache)))
                feats, labels = cache.take(rows)
                logits = self.forward(self.to_device(feats), cache.chain_index).float()
                self._collect(logits, labels, losses, preds, targets, probs)
                item_indices.append(cache.keep[rows])
        else:
            for images, labels, indices in self.image_batches(self.prepared.val, self.eval_transform, None, 0):
                logits = self.forward(self.to_device(images), 0).float()
                self._collect(logits, labels, losses, preds, targets, probs)
                item_indices.append(indices)
        target = torch.cat(targets)
        pred = torch.cat(preds)
        prob = torch.cat(probs)
        items = torch.cat(item_indices)
        report = classification_report(target, pred, len(self.prepared.class_names))
        names = self.prepared.class_names
        wrong = (pred != target).nonzero().flatten().tolist()
        misclassified = [
            {
                "path": self.prepared.val[int(items[i])][0],
                "true": names[int(target[i])],
                "pred": names[int(pred[i])],
                "prob": round(float(prob[i]), 4),
            }
            for i in wrong
        ]
        return {"loss": float(torch.cat(losses).mean()), "report": report, "misclassified": misclassified}

    def _collect(self, logits, labels, losses, preds, targets, probs):
        labels = labels.to(logits.device)
        losses.append(nn.functional.cross_entropy(logits, labels, reduction="none").cpu())
        p = logits.softmax(dim=1)
        top = p.max(dim=1)
        preds.append(top.indices.cpu())
        probs.append(top.values.cpu())
        targets.append(labels.cpu())


