"""The training loop: a plain, Qt-free function of a configuration.

It reports what happens through events (see :mod:`desktop_tl.core.events`) and accepts
commands between batches (cancel, pause/resume, change the freeze map). Every parameter
stays in the optimiser; a frozen one simply has no gradient, so a freeze change mid-run
needs no new optimiser and takes effect at the next batch.

Determinism: the shuffle order and the random state of each epoch derive from the seed
and the epoch number alone, so a resumed run ends where an uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
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
from .checkpoints import (
    CheckpointError,
    find_run_checkpoint,
    load_checkpoint,
    save_checkpoint,
    tensor_bytes,
    tidy_checkpoints,
    versions,
)
from .config import RunConfig
from .device import autocast, resolve_device, resolve_precision
from .feature_cache import FeatureStore
from .layers import (
    apply_freeze,
    apply_freeze_map,
    backbone_chain,
    check_freeze_names,
    count_params,
    ordered_freeze_map,
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
    RunLock,
    RunLog,
    check_free_space,
    check_new_run_dir,
    describe_os_error,
    lock_run_dir,
    new_run_dir,
    prepare_new_run_dir,
    read_summary,
    remove_temporary_files,
    update_summary,
    write_metrics,
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
        self._t0: float | None = None  # set when the first epoch starts
        self._early_log: list[tuple[str, str]] = []  # written to run.log once the folder exists
        self._lock: RunLock | None = None  # held from the folder's first write to the end
        # What the last saved checkpoint covers, so a failure still leaves a full summary.
        self._progress: dict[str, Any] | None = None

    # ------------------------------------------------------------------ public

    def send(self, command: object) -> None:
        """Queue a command (Cancel, Pause, Resume, SetFreeze); applied at the next batch."""
        if isinstance(command, ev.Cancel):
            self._cancel.set()
        self._commands.put(command)

    def run(self) -> ev.RunFinished:
        """Train to the end; returns (and emits) the final :class:`RunFinished`."""
        try:
            try:
                finished = self._run()
            except _Cancelled:
                finished = self._finish("cancelled", "stopped by the user")
            except KeyboardInterrupt:  # Ctrl+C: the same as Stop, the run stays resumable
                finished = self._finish("cancelled", "interrupted (Ctrl+C)")
            except UserError as exc:
                finished = self._finish("failed", str(exc))
            except OSError as exc:  # a full or read-only disk: the path and what to do, no traceback
                finished = self._finish("failed", describe_os_error(exc, self.run_dir))
            except Exception as exc:  # a bug or a library failure: keep its traceback in the log
                self._emit_log("error", traceback.format_exc())
                finished = self._finish("failed", f"{type(exc).__name__}: {exc}")
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
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
        else:
            self._early_log.append((level, message))
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
            self._lock = lock_run_dir(run_dir)
            self.run_dir = run_dir
            self._open_log()
            self._remove_interrupted_writes()
            checkpoint = _resume_checkpoint(run_dir)
            if checkpoint is None:
                self._emit_log("info", "no epoch of this run had finished; starting from the beginning")
        else:
            # The folder is made only once the data and the model are known to be usable,
            # so a refused configuration leaves nothing behind.
            run_dir = Path(cfg.out) if cfg.out else new_run_dir(cfg.model.backbone)
            check_new_run_dir(run_dir)

        # ---- data
        self._stage("data", "Checking images…")
        if self.resume and (self.run_dir / SPLIT_FILE).exists():
            prepared = PreparedData.load_manifest(self.run_dir / SPLIT_FILE)
            _check_data_present(prepared)
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
        for message in prepared.warnings:
            self._emit_log("warning", message)
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

        if checkpoint is None:
            apply_freeze(model, cfg.freeze.preset, cfg.freeze.overrides)
        device = resolve_device(cfg.train.device)
        precision = resolve_precision(cfg.train.precision, device)
        self.device, self.precision = device, precision
        # Room for at least one checkpoint, checked before the folder or anything in it is
        # written (a full disk would otherwise fail later, leaving an empty run.log).
        checkpoint_bytes = tensor_bytes(model.state_dict()) + (1 << 20)
        if not self.resume:
            check_free_space(run_dir, checkpoint_bytes, "start this run (a checkpoint of this model)",
                             "try again, or choose another output folder")
            self.run_dir = prepare_new_run_dir(run_dir)
            # Two runs started at once both passed the check above: the lock picks one, and
            # the run.toml check is repeated under it.
            self._lock = lock_run_dir(self.run_dir)
            check_new_run_dir(self.run_dir, locked_by_us=True)
            cfg.out = str(self.run_dir)
            self._open_log()
            self._remove_interrupted_writes()

        state: dict[str, Any] = {}
        if checkpoint is not None:
            model.load_state_dict(checkpoint.model_state())
            apply_freeze_map(model, checkpoint.meta["freeze_map"])
            state = checkpoint.training_state()
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
        lowest = {"val_loss": math.inf, "epoch": -1}  # early stopping watches the loss alone
        stale_epochs = 0
        start_epoch = 0
        step = 0
        finishing = False  # resuming a run that trained every epoch but was not finished
        if state:
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and "scheduler" in state:
                scheduler.load_state_dict(state["scheduler"])
                if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
                    scheduler.T_max = cfg.train.epochs  # --epochs may have lengthened the run
            if "scaler" in state:
                scaler.load_state_dict(state["scaler"])
            start_epoch = int(state["epoch"]) + 1
            step = int(state["step"])
            history = list(state["history"])
            freeze_changes = list(state.get("freeze_changes", []))
            best = dict(state["best"])
            lowest = dict(state.get("lowest", lowest))
            stale_epochs = int(state["stale_epochs"])
            patience = cfg.train.early_stopping_patience
            stopped_early = bool(patience and stale_epochs >= patience)
            if start_epoch >= cfg.train.epochs or stopped_early:
                # A run killed while finishing (after its last checkpoint, before its summary)
                # is finished now; only one with its final summary is refused.
                if not _summary_is_final(read_summary(self.run_dir), len(history)):
                    finishing = True
                elif stopped_early:
                    raise RunFolderError(
                        f"{self.run_dir} stopped early after epoch {start_epoch} (validation loss did "
                        f"not improve for {stale_epochs} epochs); there is nothing to resume"
                    )
                else:
                    raise RunFolderError(
                        f"{self.run_dir} already finished its {start_epoch} epochs; to train longer, "
                        f"resume with --epochs N (N > {start_epoch})"
                    )
            check_free_space(self.run_dir / CHECKPOINTS, checkpoint_bytes,
                             "continue this run (a checkpoint of this model)",
                             f"resume again with --resume {self.run_dir}")
            self._restore_best(checkpoint, best, start_epoch)
            if finishing:
                self._emit_log("info", f"all {start_epoch} epochs had finished but the run was stopped "
                                       "before its summary was written; evaluating and finishing it")
            else:
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
        saved_epochs = len(history)  # epochs the checkpoint on disk covers
        self._progress = dict(history=list(history), best=dict(best), class_names=class_names,
                              last_eval=None, loop=loop)
        try:
            if finishing:
                last_eval = loop.evaluate(epoch)
                if cfg.train.early_stopping_patience and stale_epochs >= cfg.train.early_stopping_patience:
                    status = "early-stopped"
                    reason = (f"validation loss did not improve for {stale_epochs} epochs "
                              f"(lowest at epoch {lowest['epoch']})")
            end_epoch = start_epoch if finishing else cfg.train.epochs
            for epoch in range(start_epoch, end_epoch):
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
                if last_eval["loss"] < lowest["val_loss"] - 1e-6:
                    lowest = {"val_loss": last_eval["loss"], "epoch": epoch + 1}
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
                    "lowest": lowest,
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
                saved_epochs = len(history)
                self._progress = dict(history=list(history), best=dict(best), class_names=class_names,
                                      last_eval=last_eval, loop=loop)
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
                        f"(lowest at epoch {lowest['epoch']})"
                    )
                    break
        except (_Cancelled, KeyboardInterrupt) as exc:
            status = "cancelled"
            reason = "interrupted (Ctrl+C)" if isinstance(exc, KeyboardInterrupt) else "stopped by the user"
            del history[saved_epochs:]  # an epoch whose checkpoint was not written is not done
        except _NonFinite as exc:
            status = "failed"
            if history:
                reason = f"{exc} The checkpoint of epoch {history[-1]['epoch']}, the last good one, was kept."
            else:
                reason = f"{exc} No epoch had finished, so no checkpoint was written."
        finally:
            loop.close()

        test_result = None
        if status in ("completed", "early-stopped") and prepared.test:
            test_result = self._evaluate_test(model, prepared, loop)

        summary = self._summary(status, reason, history, best, class_names, last_eval, loop)
        if test_result is not None:
            summary.update(test_result)
        update_summary(self.run_dir, summary)
        self._emit_log("warning" if status == "failed" else "info",  # a user's Stop is no problem
                       f"run {status}{': ' + reason if reason else ''}")
        return ev.RunFinished(status, reason, str(self.run_dir), summary)

    # ------------------------------------------------------------------ helpers

    def _open_log(self) -> None:
        self._log = RunLog(self.run_dir)
        early, self._early_log = self._early_log, []
        for level, message in early:
            try:
                self._log.write(level, message)
            except OSError:
                break  # a full disk: the run itself will say so, with what to do
        self._emit_log("info", f"run folder: {self.run_dir}")

    def _remove_interrupted_writes(self) -> None:
        """Temp files and folders of writes a killed run left; safe under the run lock."""
        removed = [*remove_temporary_files(self.run_dir), *tidy_checkpoints(self.run_dir / CHECKPOINTS)]
        if removed:
            names = ", ".join(str(p.relative_to(self.run_dir)) for p in removed)
            self._emit_log("info", f"removed what an interrupted write left: {names}")

    def _restore_best(self, checkpoint, best: dict[str, Any], last_epoch: int) -> None:
        """Rewrite checkpoints/best from last when a kill cut the save of the best epoch.

        Best and last of one epoch hold the same model and metadata, and last is written
        first; so when the best epoch is the last one saved, best can be made again.
        """
        folder = self.run_dir / CHECKPOINTS / "best"
        if best.get("epoch", -1) <= 0:
            return
        try:
            saved_epoch = load_checkpoint(folder).meta.get("epoch")
        except CheckpointError:
            saved_epoch = None
        if saved_epoch == best["epoch"]:
            return
        if best["epoch"] == last_epoch:
            save_checkpoint(folder, checkpoint.model_state(), checkpoint.meta)
            self._emit_log("info", f"checkpoints/best held epoch {saved_epoch}, not the best epoch "
                                   f"{last_epoch}; rewrote it from checkpoints/last")
        else:
            self._emit_log("warning", f"checkpoints/best holds epoch {saved_epoch}, but the best "
                                      f"epoch was {best['epoch']}; its weights were lost when the run "
                                      "was interrupted")

    def _evaluate_test(self, model: nn.Module, prepared, loop) -> dict[str, Any]:
        """Score the best checkpoint on the held-out test images, once, at the end."""
        from .data import ImageDataset, make_loader

        best = self.run_dir / CHECKPOINTS / "best"
        checkpoint = find_run_checkpoint(self.run_dir, "best") if best.exists() else None
        if checkpoint is not None:
            model.load_state_dict(checkpoint.model_state())
        self._stage("test", "Scoring the test images…")
        model.eval()
        dataset = ImageDataset(prepared.test, loop.eval_transform, with_index=True)
        loader = make_loader(dataset, batch_size=loop.batch_size, shuffle=False, num_workers=0)
        targets, predictions = [], []
        with torch.inference_mode(), autocast(self.device, self.precision):
            for batch in loader.batches():
                images = batch.images.to(self.device)
                predictions.append(model(images).float().argmax(dim=1).cpu())
                targets.append(batch.labels)
        if not targets:
            return {"num_test": 0}
        report = classification_report(torch.cat(targets), torch.cat(predictions), len(prepared.class_names))
        self._emit_log("info", f"test accuracy {report.accuracy:.3f} on {sum(report.support)} images "
                               f"(checkpoint {'best' if checkpoint else 'last'})")
        return {
            "test_acc": report.accuracy,
            "num_test": sum(report.support),
            "test_confusion": report.confusion,
            "test_per_class_precision": report.precision,
            "test_per_class_recall": report.recall,
        }

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
        if self._progress is not None:  # what the saved checkpoint covers, with this ending
            try:
                summary = self._summary(status, reason, **self._progress)
            except Exception:  # a summary must never hide why the run ended
                pass
        # Only the run holding the folder writes into it; a refused resume leaves the
        # run's own summary as it was, and a stub never replaces a complete summary.
        owned = self._lock is not None and self.run_dir is not None
        if owned and self.run_dir.exists() and not (self.resume and self._t0 is None):
            try:
                update_summary(self.run_dir, summary)
            except OSError:
                pass
            self._emit_log("error" if status == "failed" else "info", f"run {status}: {reason}")
        else:
            self._emit(ev.LogMessage("error" if status == "failed" else "info", f"run {status}: {reason}"))
        return ev.RunFinished(status, reason, str(self.run_dir or ""), summary)


# ---------------------------------------------------------------------- resuming


def _resume_checkpoint(run_dir: Path):
    """The checkpoint to resume from; None when no epoch finished (start from the beginning)."""
    folder = run_dir / CHECKPOINTS
    if not any((folder / name).exists() for name in ("last", "last.old", "best", "best.old")):
        return None
    return find_run_checkpoint(run_dir, "last")


def _summary_is_final(summary: dict[str, Any], epochs: int) -> bool:
    """Whether ``summary`` is the one a run writes once it has finished all ``epochs``."""
    return summary.get("status") in ("completed", "early-stopped") and summary.get("epochs_completed") == epochs


def _check_data_present(prepared) -> None:
    """Refuse to resume when the run's images are gone (a moved or unmounted dataset),
    rather than skipping every image as unreadable."""
    root = Path(prepared.root)
    if not root.exists():
        raise RunFolderError(
            f"the data folder of this run, {root}, is missing (moved, renamed or not mounted?); "
            "put it back at that path (or mount it), then resume again"
        )
    items = [*prepared.train, *prepared.val]
    if items and not any(Path(path).exists() for path, _ in items):
        raise RunFolderError(
            f"none of the {len(items)} images of this run are in {root} any more; put them back "
            "at that path, then resume again"
        )


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

_SUBSETS = ("train", "val")


def _fold_batchnorm(modules: list[nn.Module]) -> nn.Module | None:
    """``nn.Sequential(*modules)`` for inference with every BatchNorm that directly follows
    a convolution folded into it: one op fewer per layer (on EfficientNet-Lite0 on a CPU,
    about a fifth less time). The originals are untouched (the folded convolutions are
    copies). ``None`` when nothing folds or the modules cannot be traced (control flow
    that depends on the data)."""
    import torch.fx as fx
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    class LeafConvTracer(fx.Tracer):  # convolution subclasses (e.g. "same" padding) stay whole
        def is_leaf_module(self, module: nn.Module, name: str) -> bool:
            return isinstance(module, (nn.Conv2d, nn.BatchNorm2d)) or super().is_leaf_module(module, name)

    sequence = nn.Sequential(*modules).eval()
    try:
        graph = LeafConvTracer().trace(sequence)
        folded = fx.GraphModule(sequence, graph)
    except Exception:
        return None
    targets = dict(folded.named_modules())
    changed = False
    for node in list(folded.graph.nodes):
        if node.op != "call_module" or type(targets.get(node.target)) is not nn.BatchNorm2d:
            continue
        source = node.args[0] if node.args else None
        if not isinstance(source, fx.Node) or source.op != "call_module" or len(source.users) != 1:
            continue
        conv, bn = targets.get(source.target), targets[node.target]
        if not isinstance(conv, nn.Conv2d) or bn.running_mean is None or len(node.args) != 1 or node.kwargs:
            continue
        parent_name, _, attr = source.target.rpartition(".")
        parent = folded.get_submodule(parent_name) if parent_name else folded
        setattr(parent, attr, fuse_conv_bn_eval(conv.eval(), bn.eval()))
        node.replace_all_uses_with(source)
        folded.graph.erase_node(node)
        changed = True
    if not changed:
        return None
    folded.graph.lint()
    folded.recompile()
    folded.delete_all_unused_submodules()
    return folded.eval()


class _ChainRunner:
    """Runs a stretch of chain stages in order (a callable without a reference to the
    loop, so that the loop is freed, with its caches and workers, when a run ends)."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.modules = modules

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.modules:
            x = module(x)
        return x


class _EpochLoop:
    """Runs epochs over images or cached features, applying commands between batches.

    Where an epoch's time goes decides what is kept between epochs:

    - the frozen prefix of the backbone (everything before the first trainable stage)
      runs under ``inference_mode`` and autocast, never recording autograd;
    - its output is cached (:mod:`desktop_tl.core.feature_cache`) wherever it cannot
      change: for validation images whenever a prefix exists, for training images when
      there is also no random augmentation. The cache follows the freeze state: it is
      left the moment a stage before it becomes trainable (mid-epoch if need be),
      rebuilt at the next epoch for the new first trainable stage, and moved deeper
      (from the cached rows, without the images) when more stages are frozen;
    - a stage whose output is larger than the image is not cached (early stages are
      cheap to run, their outputs big);
    - the frozen stages run as one module with BatchNorm folded into the convolutions;
    - images that must still be read every epoch are decoded once
      (:mod:`desktop_tl.core.image_cache`) and augmented as tensors;
    - per-image work in this process and steps that only train the head on cached
      features run on one thread (their ops are too small for a thread pool);
    - the classifier head always computes in fp32; its cost is small and its loss and
      gradients keep full precision.

    All caches share one memory budget (``train.cache_budget_mb``): training features
    first, then validation features, then decoded images; beyond it features spill to
    the cache directory and images are decoded again.
    """

    def __init__(self, trainer: Trainer, cfg, model, device, precision, optimizer, scaler, criterion, prepared):
        from .data import build_transform, default_num_workers
        from .device import feature_dtype
        from .feature_cache import MemoryBudget, reuse_enabled

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
        self.preprocessing = trainer.built.backbone.preprocessing
        self.eval_transform = build_transform(self.preprocessing, "none", train=False)
        self.augment = cfg.data.augment
        self.unreadable: dict[str, str] = {}
        workers = cfg.data.num_workers
        self.num_workers = default_num_workers(len(prepared.train)) if workers < 0 else workers
        self.batch_size = cfg.train.batch_size
        self.batches_per_epoch = max(1, math.ceil(len(prepared.train) / self.batch_size))
        self.step = 0
        self.freeze_changes: list[dict[str, Any]] = []
        self.cache_log: list[dict[str, Any]] = []
        self.caches: dict[str, FeatureStore | None] = {"train": None, "val": None}
        self.decoded: dict[str, Any] = {"train": None, "val": None}
        self.budget = MemoryBudget(int(cfg.train.cache_budget_mb) * 2**20)
        self.reuse = reuse_enabled() and cfg.train.feature_cache_reuse
        self.feature_dtype = feature_dtype(precision)
        self.cache_broken: str | None = None  # set when the cache directory fails us
        self._loaders: dict[tuple[str, bool], tuple[Any, Any, Any]] = {}
        self._frozen_runners: dict[tuple[int, int], Callable[[torch.Tensor], torch.Tensor]] = {}
        self._row_numel: dict[int, int] = {}
        self._off_logged: dict[str, str] = {}
        self.paused = False
        # SetFreeze changes in the order they came: a later one may undo part of an
        # earlier one, so they are never merged into one unordered map.
        self._pending_freeze: list[dict[str, bool]] = []
        self.freeze_commands = 0  # SetFreeze commands taken this run (FreezeApplied.commands)
        self._epoch_t0 = None

    @property
    def train_cache(self) -> FeatureStore | None:
        return self.caches["train"]

    @property
    def val_cache(self) -> FeatureStore | None:
        return self.caches["val"]

    def items(self, subset: str) -> list[tuple[str, int]]:
        return self.prepared.train if subset == "train" else self.prepared.val

    # ---- what part of the chain trains

    def first_trainable(self) -> int:
        for index, module in enumerate(self.chain):
            if any(p.requires_grad for p in module.parameters()):
                return index
        return len(self.chain)

    def cache_blocker(self, subset: str = "train") -> str | None:
        """None if ``subset``'s features may be cached now, else the reason they may not."""
        if self.cfg.train.feature_cache == "off":
            return "feature cache turned off"
        if self.cache_broken:
            return self.cache_broken
        if subset == "train" and self.augment != "none":
            return f"augmentation '{self.augment}' changes images every epoch"
        k = self.first_trainable()
        if k == 0:
            return "the whole backbone is trainable"
        row, image = self.row_numel(k), 3 * self.preprocessing.crop ** 2
        if row > image:
            # Early stages are cheap to run and their outputs large: keeping them would
            # cost more memory (or disk reads) than it saves time.
            return (f"the output of {self.chain_names[k - 1]} ({row:,} values per image) is "
                    f"larger than the image ({image:,}); recomputing it is cheaper")
        return None

    def row_numel(self, k: int) -> int:
        """Values per image in the output of chain stage ``k - 1`` (found once by running
        the frozen stages on one blank image)."""
        if k not in self._row_numel:
            crop = self.preprocessing.crop
            probe = torch.zeros(1, 3, crop, crop, device=self.device)
            for module in self.chain[:k]:
                module.eval()  # frozen stages: eval mode is theirs anyway (no statistics updates)
            with torch.inference_mode():
                self._row_numel[k] = int(self.run_chain(probe, 0, k).numel())
        return self._row_numel[k]

    def cache_allowed(self) -> str | None:
        """None if training features may be cached now, else the reason they may not."""
        return self.cache_blocker("train")

    @property
    def cache_status(self) -> str:
        """``on@<stage>`` (training and validation features cached after that stage),
        ``val@<stage>`` (validation features only) or ``off``."""
        if self.train_cache is not None:
            return f"on@{self.chain_names[self.train_cache.chain_index - 1]}"
        if self.val_cache is not None:
            return f"val@{self.chain_names[self.val_cache.chain_index - 1]}"
        return "off"

    def set_modes(self) -> None:
        """Train mode where parameters learn; the frozen prefix (parameter-free stages such
        as dropout included) in eval mode, so it is the fixed function the cache holds."""
        set_train_mode(self.model)
        for module in self.chain[: self.first_trainable()]:
            module.eval()

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
                self._pending_freeze.append(dict(command.changes))
        trainer._check_cancel()
        if self._pending_freeze:
            commands, self._pending_freeze = self._pending_freeze, []
            self.apply_freeze_change(commands, epoch)

    def apply_freeze_change(self, commands: list[dict[str, bool]], epoch: int) -> None:
        """Apply SetFreeze changes in the order they were sent and report the result."""
        trainer = self.trainer
        self.freeze_commands += len(commands)
        valid = []
        for command in commands:
            try:
                check_freeze_names(self.model, command)
            except UserError as exc:
                trainer._emit_log("error", f"freeze change ignored: {exc}")
            else:
                valid.append(command)
        # Equal to applying each command in turn (see ordered_freeze_map).
        changes = ordered_freeze_map(valid)
        if not changes:
            # The sender still learns that these commands were taken, and what trains.
            trainable, total = count_params(self.model)
            note = "on" if self.train_cache is not None else "off"
            trainer._emit(ev.FreezeApplied(self.step, epoch, {}, trainable, total, note,
                                           trainable_state(self.model), self.freeze_commands))
            return
        apply_freeze_map(self.model, changes)
        for param in self.model.parameters():
            if not param.requires_grad:
                param.grad = None
        self._frozen_runners.clear()  # a stage frozen again may have been trained meanwhile
        self.set_modes()
        k = self.first_trainable()
        stale = [s for s in _SUBSETS if self.caches[s] is not None and k < self.caches[s].chain_index]
        if stale:
            unfrozen = ", ".join(n for n, v in changes.items() if v) or "a stage"
            self.leave_cache(f"{unfrozen} unfrozen", stale)
            note = "left"
        else:
            note = "on" if self.train_cache is not None else "off"
        trainable, total = count_params(self.model)
        record = {"step": self.step, "epoch": epoch + 1, "changes": dict(changes),
                  "trainable_params": trainable, "feature_cache": note}
        self.freeze_changes.append(record)
        desc = ", ".join(f"{name} {'trainable' if on else 'frozen'}" for name, on in changes.items())
        trainer._emit_log("info", f"freeze change at step {self.step} (epoch {epoch + 1}): {desc}; "
                                  f"{trainable:,}/{total:,} parameters trainable")
        trainer._emit(ev.FreezeApplied(self.step, epoch, dict(changes), trainable, total, note,
                                       trainable_state(self.model), self.freeze_commands))

    def leave_cache(self, reason: str, subsets=_SUBSETS) -> None:
        left = [s for s in subsets if self.caches[s] is not None]
        for subset in left:
            self.caches[subset].close()
            self.caches[subset] = None
        if left:
            self.cache_log.append({"step": self.step, "event": "left", "subset": "+".join(left),
                                   "reason": reason})
            self.trainer._emit_log("info", f"feature cache left ({', '.join(left)}): {reason}")

    def close(self) -> None:
        """Release every cache and loader (worker processes stop with their loader)."""
        for subset in _SUBSETS:
            if self.caches[subset] is not None:
                self.caches[subset].close()
                self.caches[subset] = None
            if self.decoded[subset] is not None:
                self.decoded[subset].close()
                self.decoded[subset] = None
        self._loaders.clear()
        self._frozen_runners.clear()

    # ---- forward passes

    def run_chain(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for module in self.chain[start:stop]:
            x = module(x)
        return x

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Logits from chain stage ``start`` on. The frozen stretch runs under
        inference_mode; the trainable stages under autocast; the head in fp32."""
        n = len(self.chain)
        k = max(start, self.first_trainable())
        if k > start:
            x = self.run_frozen(x, start, k)
            if not torch.is_inference_mode_enabled():
                x = x.clone()  # an inference tensor cannot be saved for backward
        if k < n:
            with autocast(self.device, self.precision):
                x = self.run_chain(x, k, n)
        return self.model.head(x.float())

    def run_frozen(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Frozen chain stages ``start:stop`` under inference_mode and autocast, as one
        module with BatchNorm folded into the convolutions where that computes the same."""
        runner = self._frozen_runners.get((start, stop))
        if runner is None:
            runner = self._frozen_runners[(start, stop)] = self._make_frozen_runner(x, start, stop)
        with torch.inference_mode(), autocast(self.device, self.precision):
            return runner(x)

    def _make_frozen_runner(self, sample: torch.Tensor, start: int, stop: int):
        modules = self.chain[start:stop]
        plain = _ChainRunner(modules)
        for module in modules:
            module.eval()
        folded = _fold_batchnorm(modules)
        if folded is None:
            return plain
        if self.device.type != "mps":
            folded = folded.to(memory_format=torch.channels_last)
        with torch.inference_mode():  # the same function, checked in fp32 on real inputs
            probe = sample[:2].float() if sample.is_floating_point() else sample[:2]
            expected = plain(probe).float()
            error = (folded(probe).float() - expected).norm() / expected.norm().clamp_min(1e-12)
        if not bool(torch.isfinite(error)) or float(error) > 1e-3:
            self.trainer._emit_log("info", f"frozen stages {self.chain_names[start]}..{self.chain_names[stop - 1]} "
                                           "run without BatchNorm folding (it changed their output)")
            return plain
        return folded

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if x.is_floating_point() and x.dtype != torch.float32:
            # cached rows: fp16 features feed fp32 (or CPU) compute as fp32
            if self.precision == "fp32" or (x.dtype == torch.float16 and self.device.type == "cpu"):
                x = x.float()
        if x.dim() == 4 and self.device.type != "mps":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    # ---- reading images

    def _fetch(self, loader):
        """A loader's batches; decoding in this process runs on one thread (see
        :func:`~desktop_tl.core.device.single_threaded`)."""
        from .device import single_threaded

        batches = loader.batches()
        while True:
            if loader.num_workers == 0:
                with single_threaded():
                    batch = next(batches, None)
            else:
                batch = next(batches, None)
            if batch is None:
                break
            yield batch
        for path, reason in loader.unreadable:
            if path not in self.unreadable:
                self.unreadable[path] = reason
                self.trainer._emit_log("warning", f"skipped unreadable image {path}: {reason}")

    def extraction_batches(self, items):
        """One pass over ``items`` with the evaluation transform: (images, labels, item
        indices). The loader (and any workers) lives for this pass only."""
        from .data import ImageDataset, make_loader

        loader = make_loader(ImageDataset(items, self.eval_transform, with_index=True),
                             batch_size=self.batch_size, shuffle=False,
                             num_workers=self.num_workers, seed=0, device=self.device)
        for batch in self._fetch(loader):
            yield batch.images, batch.labels, batch.indices

    def image_batches(self, subset: str, train: bool, order, seed: int):
        """(images, labels, item indices) over ``subset``'s items in ``order``, from the
        decoded images where held; augmented when ``train`` and augmentation is on. The
        loader is built once per subset and decoded-image store and kept (persistent
        workers), only its order changes."""
        from .data import make_loader
        from .image_cache import DecodedImageDataset, EpochSampler

        key = (subset, train)
        decoded = self.decoded[subset]
        entry = self._loaders.get(key)
        if entry is None or entry[2] is not decoded:
            dataset = DecodedImageDataset(self.items(subset), decoded, self.preprocessing,
                                          self.augment, train)
            sampler = EpochSampler()
            loader = make_loader(dataset, batch_size=self.batch_size, shuffle=False,
                                 sampler=sampler, num_workers=self.num_workers,
                                 seed=self.cfg.train.seed, device=self.device)
            entry = self._loaders[key] = (loader, sampler, decoded)
        loader, sampler, _ = entry
        sampler.set_epoch(order.tolist() if torch.is_tensor(order) else list(order), seed)
        for batch in self._fetch(loader):
            yield batch.images, batch.labels, batch.indices

    # ---- the caches

    def ensure_caches(self, epoch: int, subsets=_SUBSETS) -> None:
        """Make the caches match the freeze state: build, move deeper or leave them;
        decode the images of subsets that are read as images."""
        from .feature_cache import features_dir

        k = self.first_trainable()
        wanted = []
        for subset in subsets:
            reason = self.cache_blocker(subset)
            store = self.caches[subset]
            if reason is not None:
                if store is not None:
                    self.leave_cache(reason, [subset])
                if self._off_logged.get(subset) != reason:
                    self._off_logged[subset] = reason
                    self.cache_log.append({"step": self.step, "event": "off", "subset": subset,
                                           "reason": reason})
                    self.trainer._emit_log("info", f"{subset} features not cached: {reason}")
                continue
            self._off_logged.pop(subset, None)
            if store is not None and store.chain_index > k:
                self.leave_cache("a stage before the cached one is trainable", [subset])
                store = None
            if store is None or store.chain_index < k:
                wanted.append(subset)
                if self.decoded[subset] is not None:  # features replace the images
                    self.decoded[subset].close()
                    self.decoded[subset] = None
        for subset in wanted:
            while not self.cache_broken:
                try:
                    if self.caches[subset] is None:
                        self.build_cache(subset, k)
                    else:
                        self.advance_cache(subset, k)
                    break
                except OSError as exc:
                    if self.reuse:  # the cache folder failed: keep features for this run only
                        self.reuse = False
                        self.trainer._emit_log("warning", f"cannot keep features in {features_dir()} "
                                                          f"({exc}); they are kept for this run only")
                        continue
                    self.cache_broken = f"the feature cache could not be written ({exc})"
                    self.trainer._emit_log("warning", f"{self.cache_broken}; training continues without it")
                    self.leave_cache(self.cache_broken)
        for subset in subsets:
            if self.caches[subset] is None and self.decoded[subset] is None:
                self.decode_images(subset)

    def feature_key(self, subset: str, k: int) -> str:
        from .feature_cache import feature_key, state_digest

        built = self.trainer.built
        context = {
            "backbone": built.backbone_id,
            "weights_sha256": built.backbone.provenance.sha256,
            "prefix_state": state_digest(self.chain[:k]),
            "preprocessing": self.preprocessing.to_dict(),
            "transform": repr(self.eval_transform),
            "stage": [k, self.chain_names[k - 1]],
            "precision": self.precision,
            "device": self.device.type,
        }
        return feature_key(context, self.items(subset))

    def build_cache(self, subset: str, k: int) -> None:
        from .feature_cache import open_entry, prune

        where = self.chain_names[k - 1]
        t0 = time.perf_counter()
        key = self.feature_key(subset, k)
        store = open_entry(key, self.budget) if self.reuse else None
        if store is not None:
            self.trainer._emit_log("info", f"{subset} features after {where} reused from an earlier run")
        else:
            self.trainer._emit_log("info", f"extracting {subset} features once after {where} "
                                           f"(the stages before it are frozen)")
            store = self.extract(subset, k, key)
            if store.path is not None:
                in_use = [s.path for s in self.caches.values() if s is not None and s.path is not None]
                prune(protect=[store.path, *in_use])
        self.caches[subset] = store
        self._log_store("built", subset, store, time.perf_counter() - t0)

    def _log_store(self, event: str, subset: str, store: FeatureStore, seconds: float, **extra) -> None:
        self.cache_log.append({
            "step": self.step, "event": event, "subset": subset,
            "at": self.chain_names[store.chain_index - 1], "rows": len(store),
            "bytes": store.nbytes, "memory_bytes": store.memory_bytes,
            "spilled_bytes": store.spilled_bytes, "dtype": str(store.dtype).replace("torch.", ""),
            "reused": store.reused, "key": (store.key or "")[:16], "seconds": round(seconds, 3),
            **extra,
        })

    def extract(self, subset: str, k: int, key: str | None = None) -> FeatureStore:
        from .feature_cache import (
            FeatureCacheCancelled,
            FeatureRangeError,
            extract_features,
            features_dir,
        )

        trainer = self.trainer
        items = self.items(subset)
        label = "training" if subset == "train" else "validation"
        total = len(items)
        for module in self.chain[:k]:
            module.eval()

        def run_prefix(images):
            return self.run_frozen(self.to_device(images), 0, k)

        def progress(done):
            trainer._stage("features", f"Extracting {label} features…", done, total)

        dtype = self.feature_dtype
        while True:
            try:
                return extract_features(
                    run_prefix, self.extraction_batches(items), k, budget=self.budget,
                    dtype=dtype, key=key, directory=features_dir(), persist=self.reuse and key is not None,
                    meta={"subset": subset, "at": self.chain_names[k - 1]},
                    progress=progress, should_stop=trainer._cancel.is_set,
                )
            except FeatureCacheCancelled:
                raise _Cancelled() from None
            except FeatureRangeError:
                if dtype == torch.bfloat16:
                    raise
                dtype = torch.bfloat16
                trainer._emit_log("info", f"{label} features exceed the fp16 range; caching them as bf16")

    def advance_cache(self, subset: str, k: int) -> None:
        """Move ``subset``'s cache to stage ``k`` by running the newly frozen stages once
        over the cached rows (no images read)."""
        from .feature_cache import FeatureWriter, features_dir

        old = self.caches[subset]
        t0 = time.perf_counter()
        for module in self.chain[:k]:
            module.eval()
        writer = FeatureWriter(k, budget=self.budget, dtype=old.dtype, directory=features_dir())
        try:
            for feats, labels, rows in old.batches(max(self.batch_size, 64)):
                out = self.run_frozen(self.to_device(feats), old.chain_index, k)
                writer.add(out, labels, old.keep[rows])
            store = writer.finish()
        except BaseException:
            writer.abort()
            raise
        previous = self.chain_names[old.chain_index - 1]
        old.close()
        self.caches[subset] = store
        self.trainer._emit_log("info", f"{subset} feature cache moved from after {previous} "
                                       f"to after {self.chain_names[k - 1]}")
        self._log_store("advanced", subset, store, time.perf_counter() - t0, **{"from": previous})

    def decode_images(self, subset: str) -> None:
        """Decode ``subset``'s images once and keep them (within the budget)."""
        from .image_cache import DecodedImages

        items = self.items(subset)
        total = len(items)
        t0 = time.perf_counter()
        label = "training" if subset == "train" else "validation"

        def progress(done):
            self.trainer._stage("images", f"Decoding {label} images…", done, total)

        if self.budget.available == 0:
            decoded = DecodedImages.empty(total)
        else:
            decoded = DecodedImages.build(items, self.preprocessing, self.budget,
                                          num_workers=self.num_workers, progress=progress,
                                          should_stop=self.trainer._cancel.is_set)
            self.trainer._check_cancel()
        self.decoded[subset] = decoded
        self.cache_log.append({"step": self.step, "event": "decoded", "subset": subset,
                               "images": decoded.held, "of": total, "bytes": decoded.nbytes,
                               "seconds": round(time.perf_counter() - t0, 3)})
        self.trainer._emit_log("info", f"{decoded.held} of {total} {label} images decoded once and "
                                       f"kept ({decoded.nbytes / 2**20:.1f} MiB)")

    # ---- one epoch

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        cfg = self.cfg
        seed = cfg.train.seed * 100_003 + epoch
        self.poll_commands(epoch)
        self.ensure_caches(epoch)
        # Seeded after the caches are made: whether this epoch builds them (a resumed run
        # does) must not change the random draws of training.
        torch.manual_seed(seed)
        self.set_modes()
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
        while position < n and cache is not None and self.train_cache is cache:
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
            for images, labels, _indices in self.image_batches("train", True, remaining, seed):
                loss, hits = self.train_step(self.to_device(images), labels, 0)
                total_loss += loss * len(labels)
                correct += hits
                seen += len(labels)
                self.after_batch(epoch, batch_index, loss)
                batch_index += 1
        return total_loss / max(seen, 1), correct / max(seen, 1)

    def threads_for(self, start: int):
        """One thread for a step that only runs the head on cached features: its ops are
        too small to gain from a thread pool, and pay for its synchronisation."""
        from .device import single_threaded

        if start >= len(self.chain) and self.device.type == "cpu":
            return single_threaded()
        return contextlib.nullcontext()

    def train_step(self, x: torch.Tensor, labels: torch.Tensor, start: int) -> tuple[float, int]:
        with self.threads_for(start):
            labels = labels.to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            logits = self.forward(x, start)
            loss = self.criterion(logits.float(), labels)
            if not torch.isfinite(loss):
                raise _NonFinite(
                    f"the loss became {float(loss.detach())} at epoch {self._epoch_of_step()} (step {self.step}); "
                    "training stopped. Try a lower learning rate."
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

    def evaluate(self, epoch: int) -> dict[str, Any]:
        # A cache left during the epoch is rebuilt here for the new freeze state, since
        # reading the images costs as much as building it.
        self.ensure_caches(epoch, ("val",))
        with torch.inference_mode():
            return self._evaluate()

    def _evaluate(self) -> dict[str, Any]:
        self.model.eval()
        losses = []
        preds = []
        targets = []
        probs = []
        item_indices = []
        cache = self.val_cache
        if cache is not None:
            with self.threads_for(cache.chain_index):
                for feats, labels, rows in cache.batches(256):
                    logits = self.forward(self.to_device(feats), cache.chain_index).float()
                    self._collect(logits, labels, losses, preds, targets, probs)
                    item_indices.append(cache.keep[rows])
        else:
            order = torch.arange(len(self.prepared.val))
            for images, labels, indices in self.image_batches("val", False, order, 0):
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
        # the same label smoothing as training, so the two loss curves are comparable
        smoothing = self.criterion.label_smoothing
        losses.append(
            nn.functional.cross_entropy(logits, labels, reduction="none", label_smoothing=smoothing).cpu()
        )
        p = logits.softmax(dim=1)
        top = p.max(dim=1)
        preds.append(top.indices.cpu())
        probs.append(top.values.cpu())
        targets.append(labels.cpu())
