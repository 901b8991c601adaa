"""A training run: a plain, Qt-free function of a configuration.

:class:`Trainer` tells the story of one run: open (or resume) its folder, prepare the
data, build the model, restore what a checkpoint holds, train epoch by epoch
(:mod:`desktop_tl.core.epoch_loop`), score the test split and write the summary. It
reports through events (:mod:`desktop_tl.core.events`) and accepts commands between
batches (cancel, pause/resume, change the freeze map).

Determinism: the shuffle order and the random state of each epoch derive from the seed
and the epoch number alone, so a resumed run ends where an uninterrupted one would have.

(About 600 lines: the story in :meth:`Trainer._run` is short; each of its steps, the run
folder, data, model, resume checks, the test split and the summary, is a small method
kept beside the story it serves, with the distributed run's rank-0-only writing in each.)
"""

from __future__ import annotations

import copy
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from . import distributed as dist_run
from . import events as ev
from .checkpoints import (
    copy_checkpoint,
    find_run_checkpoint,
    save_checkpoint,
    tensor_bytes,
    versions,
    warm_up_checkpoint_writers,
)
from .config import DataConfig, RunConfig
from .device import autocast, resolve_device, resolve_precision
from .epoch_loop import EpochLoop, NonFiniteLoss, ScheduledFreeze
from .evaluation import evaluate
from .layers import apply_freeze, apply_freeze_map, count_params, trainable_state
from .model import BuiltModel, build_model
from .optimisation import Optimisation
from .reports import EpochReport, EvaluationReport
from .resuming import (
    check_data_present,
    check_resumable,
    remove_interrupted_writes,
    restore_best,
    resume_checkpoint,
)
from .allocator import keep_large_buffers_returnable
from .cancelled import Cancelled
from .run_context import EventCallback, RunContext
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
    update_summary,
    write_metrics,
)
from .run_progress import RunProgress
from .validation_scores import write_scores

__all__ = ["EventCallback", "Trainer", "data_settings_match"]

# The data settings that decide what prepare_data returns (augmentation and workers do not).
_PREPARATION_FIELDS = ("path", "loader", "val_fraction", "test_fraction", "split_seed", "exclude")


def data_settings_match(a: DataConfig, b: DataConfig) -> bool:
    """Whether data prepared with settings ``a`` is what settings ``b`` would prepare."""

    def key(data: DataConfig):
        path = str(Path(data.path).expanduser().absolute()) if data.path else ""
        return (path, *(getattr(data, name) for name in _PREPARATION_FIELDS[1:]))

    return key(a) == key(b)


class Trainer:
    """Runs one training run. Create it, then call :meth:`run` (on a worker thread if a UI
    must stay responsive); :meth:`send` and :meth:`subscribe` are safe from any thread.

    ``prepared`` is data already checked and split (e.g. by a window's data check) with
    the data settings ``prepared_with`` (the run's own when not given); it is used as it
    is when those settings are the run's, and the images are checked again otherwise.
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        host: Any = None,
        on_event: EventCallback | None = None,
        resume: bool = False,
        prepared: Any = None,
        prepared_with: DataConfig | None = None,
    ) -> None:
        keep_large_buffers_returnable()  # memory bounded by the budget, not the photo count
        self.config = copy.deepcopy(config)
        self.host = host
        self.resume = resume
        self.run_dir: Path | None = None
        self.built: BuiltModel | None = None
        self.prepared = None
        self.device: torch.device | None = None
        self.precision: str | None = None
        self._given_data = prepared
        self._given_data_settings = copy.deepcopy(prepared_with) if prepared_with is not None else None
        self._ctx = RunContext()
        if on_event is not None:
            self._ctx.subscribe(on_event)
        self._t0: float | None = None  # set when the first epoch starts
        self._lock: RunLock | None = None  # held from the folder's first write to the end
        # What the last saved checkpoint covers, so a failure still leaves a full summary.
        self._saved: tuple[RunProgress, EvaluationReport | None, EpochLoop] | None = None
        # This process's place in a run started by torchrun (see core.distributed); only
        # its rank 0 writes the run folder.
        self.distributed = dist_run.SINGLE

    # ------------------------------------------------------------------ public

    def send(self, command: object) -> None:
        """Queue a command (Cancel, Pause, Resume, SetFreeze); applied at the next batch."""
        self._ctx.send(command)

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` for every event from now on, on the training thread
        (after the ``on_event`` given to the constructor). Returns an unsubscribe function."""
        return self._ctx.subscribe(callback)

    def run(self) -> ev.RunFinished:
        """Train to the end; returns (and emits) the final :class:`RunFinished`."""
        try:
            try:
                finished = self._run()
            except Cancelled:
                finished = self._finish("cancelled", "stopped by the user")
            except KeyboardInterrupt:  # Ctrl+C: the same as Stop, the run stays resumable
                finished = self._finish("cancelled", "interrupted (Ctrl+C)")
            except UserError as exc:
                finished = self._finish("failed", str(exc))
            except OSError as exc:  # a full or read-only disk: the path and what to do, no traceback
                finished = self._finish("failed", describe_os_error(exc, self.run_dir))
            except Exception as exc:  # a bug or a library failure: keep its traceback in the log
                self._ctx.log("error", traceback.format_exc())
                finished = self._finish("failed", f"{type(exc).__name__}: {exc}")
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            self.distributed.close()
        self._ctx.emit(finished)
        return finished

    # ------------------------------------------------------------------ the run

    def _run(self) -> ev.RunFinished:
        from ..plugin.manager import get_host

        self.host = self.host or get_host()
        cfg, log = self.config, self._ctx.log
        self._start_distributed()
        if self.resume:
            run_dir = self._open_run_to_resume()
            checkpoint = resume_checkpoint(run_dir)
            if checkpoint is None:
                log("info", "no epoch of this run had finished; starting from the beginning")
        else:
            # The folder is made only once the data and the model are known to be usable,
            # so a refused configuration leaves nothing behind.
            run_dir, checkpoint = Path(cfg.out) if cfg.out else new_run_dir(cfg.model.backbone), None
            run_dir = self.distributed.broadcast(run_dir)  # its name has rank 0's clock
            if self.distributed.is_main:
                check_new_run_dir(run_dir)
        prepared = self._prepare_data()
        built = self._build_model(fresh=checkpoint is None)
        if not self.resume:
            if self.distributed.is_main:
                self._make_run_folder(run_dir, built.model)
            self.run_dir = Path(self.distributed.broadcast(str(self.run_dir)))
            self.config.out = str(self.run_dir)
        progress = RunProgress()
        if checkpoint is not None:
            built.model.load_state_dict(checkpoint.model_state())
            apply_freeze_map(built.model, checkpoint.meta["freeze_map"])
        self._place_model(built.model)
        optimisation = Optimisation.build(cfg, built.model, self.device, self.precision)
        finishing = False  # resuming a run that trained every epoch but was not finished
        if checkpoint is not None:
            state = checkpoint.training_state()
            optimisation.restore(state, cfg.train.epochs)
            progress = RunProgress.from_state(state)
            finishing = self._check_resumable(progress, checkpoint, built.model)
            self._note_process_count(state.get("processes", 1))
        elif self.distributed.is_main:
            prepared.save_manifest(self.run_dir / SPLIT_FILE)
        if self.distributed.is_main:
            cfg.save(self.run_dir / RUN_FILE)
            write_metrics(self.run_dir, progress.history)

        loop = EpochLoop(
            self._ctx,
            cfg,
            built,
            prepared,
            self.device,
            self.precision,
            optimisation,
            progress,
            self.distributed,
        )
        if self.distributed.is_main:
            warm_up_checkpoint_writers()
        self._announce_start(loop, progress)
        status, reason, last_eval = self._train(loop, progress, finishing)
        test = None
        if status in ("completed", "early-stopped") and prepared.test:
            test = self._evaluate_test(built.model, loop)
        summary = self._summary(status, reason, progress, last_eval, loop, test)
        if self.distributed.is_main:
            update_summary(self.run_dir, summary)
        log(
            "warning" if status == "failed" else "info",  # a user's Stop is no problem
            f"run {status}{': ' + reason if reason else ''}",
        )
        return ev.RunFinished(status, reason, str(self.run_dir), summary, last_eval, test)

    def _train(
        self, loop: EpochLoop, progress: RunProgress, finishing: bool
    ) -> tuple[str, str, EvaluationReport | None]:
        """The epochs; how they ended, and the last validation report."""
        patience = self.config.train.early_stopping_patience
        status, reason, last_eval = "completed", "", None
        self._t0 = time.perf_counter()
        loop.start_clock(self._t0)
        self._saved = (progress.snapshot(), None, loop)
        saved_epochs = len(progress.history)  # epochs the checkpoint on disk covers
        try:
            if finishing:
                last_eval = loop.validate()
                if progress.stopped_early(patience):
                    status, reason = "early-stopped", progress.early_stop_reason()
            end_epoch = progress.next_epoch if finishing else self.config.train.epochs
            for epoch in range(progress.next_epoch, end_epoch):
                report, is_best = self._train_epoch(loop, progress, epoch)
                last_eval = report.validation
                saved_epochs = len(progress.history)
                self._saved = (progress.snapshot(), last_eval, loop)
                self._ctx.emit(ev.EpochEnded(epoch, report, is_best, progress.step))
                self._ctx.log(
                    "info",
                    f"epoch {epoch + 1}/{self.config.train.epochs}: train loss "
                    f"{report.train_loss:.4f}, val loss {report.val_loss:.4f}, "
                    f"val acc {report.val_acc:.3f}",
                )
                self._notify_plugins(epoch + 1, report.row())  # 1-based, as metrics["epoch"]
                if progress.stopped_early(patience):
                    status, reason = "early-stopped", progress.early_stop_reason()
                    break
        except (Cancelled, KeyboardInterrupt) as exc:
            status = "cancelled"
            reason = "interrupted (Ctrl+C)" if isinstance(exc, KeyboardInterrupt) else "stopped by the user"
            del progress.history[saved_epochs:]  # an epoch whose checkpoint was not written is not done
        except NonFiniteLoss as exc:
            status = "failed"
            if progress.history:
                reason = (
                    f"{exc} The checkpoint of epoch {progress.history[-1]['epoch']}, the last "
                    "good one, was kept."
                )
            else:
                reason = f"{exc} No epoch had finished, so no checkpoint was written."
        finally:
            loop.close()
        return status, reason, last_eval

    def _train_epoch(self, loop: EpochLoop, progress: RunProgress, epoch: int) -> tuple[EpochReport, bool]:
        """Train and validate one epoch, then write its checkpoints and metrics."""
        epoch_t0 = time.perf_counter()
        train_loss, train_acc = loop.train_epoch(epoch)
        validation = loop.validate()
        lr = loop.optimisation.lr
        loop.optimisation.end_epoch()
        report = EpochReport(
            epoch + 1,
            train_loss,
            train_acc,
            lr,
            time.perf_counter() - epoch_t0,
            loop.caches.status,
            validation,
        )
        metrics = report.row()
        is_best = progress.record(metrics)
        if not self.distributed.is_main:
            return report, is_best
        model_state = self.built.model.state_dict()
        meta = self._checkpoint_meta(metrics, epoch)
        scores, prepared = loop.validation_scores, self.prepared

        def keep_scores(folder: Path) -> None:  # the epoch's validation, for the window
            if scores is not None:
                write_scores(folder, scores, prepared.val, prepared.root)

        save_checkpoint(
            self.run_dir / CHECKPOINTS / "last",
            model_state,
            meta,
            {**progress.to_state(), **loop.optimisation.state(), "processes": self.distributed.world_size},
            extra=keep_scores,
        )
        if is_best:  # the same model, metadata and scores as last, without its training state
            copy_checkpoint(self.run_dir / CHECKPOINTS / "last", self.run_dir / CHECKPOINTS / "best")
        write_metrics(self.run_dir, progress.history)
        return report, is_best

    # ------------------------------------------------------------------ steps of the run

    def _start_distributed(self) -> None:
        """Join the process group when torchrun started this process; every process checks
        the paths it needs, so one that lacks them stops all at once, naming itself."""
        distributed = self.distributed = dist_run.start(self.config.train.device)
        if not distributed.active:
            return
        cfg = self.config
        needed = [("run folder", Path(cfg.out) / RUN_FILE)] if self.resume else []
        needed.append(("data path", Path(cfg.data.path).expanduser()))
        missing = [f"{what} {path} does not exist" for what, path in needed if not path.exists()]
        distributed.check_everywhere("; ".join(missing) or None)

    def _note_process_count(self, saved: int) -> None:
        world = self.distributed.world_size
        if saved != world:
            self._ctx.log(
                "info",
                f"this run was saved while training on {saved} process(es) and "
                f"continues on {world} at the next epoch boundary; the batches of "
                "the epochs to come are split differently, so the results will "
                "differ slightly from an uninterrupted run",
            )

    def _open_run_to_resume(self) -> Path:
        run_dir = Path(self.config.out)
        if not (run_dir / RUN_FILE).exists():
            raise RunFolderError(f"{run_dir} is not a run folder (no {RUN_FILE}); nothing to resume")
        self.run_dir = run_dir
        if self.distributed.is_main:
            self._lock = lock_run_dir(run_dir)
            self._open_log()
        self.distributed.barrier()  # the others read the checkpoints once rank 0 has tidied them
        return run_dir

    def _make_run_folder(self, run_dir: Path, model: torch.nn.Module) -> None:
        # Room for at least one checkpoint, checked before the folder or anything in it is
        # written (a full disk would otherwise fail later, leaving an empty run.log).
        check_free_space(
            run_dir,
            tensor_bytes(model.state_dict()) + (1 << 20),
            "start this run (a checkpoint of this model)",
            "try again, or choose another output folder",
        )
        self.run_dir = prepare_new_run_dir(run_dir)
        # Two runs started at once both passed the check above: the lock picks one, and
        # the run.toml check is repeated under it.
        self._lock = lock_run_dir(self.run_dir)
        check_new_run_dir(self.run_dir, locked_by_us=True)
        self.config.out = str(self.run_dir)
        self._open_log()

    def _open_log(self) -> None:
        self._ctx.attach_log(RunLog(self.run_dir))
        self._ctx.log("info", f"run folder: {self.run_dir}")
        if self.distributed.active:
            each = self.distributed.batch_size(self.config.train.batch_size)
            self._ctx.log(
                "info",
                f"distributed: {self.distributed.describe()}; {each} images per "
                f"process and step ({each * self.distributed.world_size} together)",
            )
        remove_interrupted_writes(self.run_dir, self._ctx.log)

    def _prepare_data(self):
        """The run's data: its saved split when resuming, the data given to the Trainer
        when it was prepared with the run's settings, else checked and split now."""
        from .data import PreparedData, prepare_data

        cfg, ctx = self.config, self._ctx
        ctx.stage("data", "Checking images…")
        given, settings = self._given_data, self._given_data_settings or cfg.data
        if self.resume and (self.run_dir / SPLIT_FILE).exists():
            prepared = PreparedData.load_manifest(self.run_dir / SPLIT_FILE)
            check_data_present(prepared)
        elif given is not None and not self.resume and data_settings_match(settings, cfg.data):
            prepared = given
        else:
            if given is not None:
                ctx.log(
                    "info", "the data settings changed since the images were checked; checking them again"
                )
            prepared = prepare_data(
                cfg.data,
                self.host,
                should_stop=ctx.should_stop,
                progress=lambda done, total: ctx.stage("data", "Checking images…", done, total),
            )
        self.prepared = prepared
        for path, reason in prepared.bad_files:
            ctx.log("warning", f"skipped unreadable image {path}: {reason}")
        if prepared.excluded:
            ctx.log("info", f"{len(prepared.excluded)} image(s) left out by you (data.exclude)")
        if prepared.excluded_gone:
            ctx.log(
                "info",
                f"{len(prepared.excluded_gone)} left-out image(s) are no longer in the dataset: "
                + ", ".join(prepared.excluded_gone[:5])
                + (" …" if len(prepared.excluded_gone) > 5 else ""),
            )
        for message in prepared.warnings:
            ctx.log("warning", message)
        return prepared

    def _build_model(self, fresh: bool) -> BuiltModel:
        cfg, log = self.config, self._ctx.log
        self._ctx.stage("model", f"Building {cfg.model.backbone}…")
        torch.manual_seed(cfg.train.seed)
        built = self.built = build_model(cfg, self.host, len(self.prepared.class_names))
        cfg.model.backbone = built.backbone_id
        provenance = built.backbone.provenance
        if not provenance.pretrained:
            log("warning", f"{built.backbone_id} starts from random weights (not pretrained)")
        else:
            log("info", f"weights: {provenance.source} {provenance.path or ''} {provenance.detail}".rstrip())
        if fresh:
            apply_freeze(built.model, cfg.freeze.preset, cfg.freeze.overrides)
        # A schedule naming no layer of this model is refused now, before the run folder.
        ScheduledFreeze(built.model, cfg.freeze.schedule)
        self.device = self.distributed.device or resolve_device(cfg.train.device)
        self.precision = resolve_precision(cfg.train.precision, self.device)
        return built

    def _place_model(self, model: torch.nn.Module) -> None:
        model.to(self.device)
        if self.device.type != "mps":
            model.to(memory_format=torch.channels_last)

    def _check_resumable(self, progress: RunProgress, checkpoint, model: torch.nn.Module) -> bool:
        """Refuse a resume with nothing left to do; whether it only has to finish. Makes
        sure of room for a checkpoint and that checkpoints/best holds the best epoch."""
        finishing = check_resumable(self.run_dir, progress, self.config.train)
        check_free_space(
            self.run_dir / CHECKPOINTS,
            tensor_bytes(model.state_dict()) + (1 << 20),
            "continue this run (a checkpoint of this model)",
            f"resume again with --resume {self.run_dir}",
        )
        if self.distributed.is_main:
            restore_best(self.run_dir, checkpoint, progress.best, progress.next_epoch, self._ctx.log)
        done, planned = progress.next_epoch, self.config.train.epochs
        if finishing:
            self._ctx.log(
                "info",
                f"all {done} epochs had finished but the run was stopped "
                "before its summary was written; evaluating and finishing it",
            )
        else:
            self._ctx.log("info", f"resuming after epoch {done} of {planned}")
        return finishing

    def _announce_start(self, loop: EpochLoop, progress: RunProgress) -> None:
        prepared, model = self.prepared, self.built.model
        if self.config.train.tensorboard and self.distributed.is_main:
            self._start_tensorboard_log(prepared.class_names)
        self._ctx.emit(
            ev.RunStarted(
                run_dir=str(self.run_dir),
                epochs=self.config.train.epochs,
                batches_per_epoch=loop.batches_per_epoch,
                class_names=tuple(prepared.class_names),
                num_train=len(prepared.train),
                num_val=len(prepared.val),
                device=str(self.device),
                precision=self.precision,
                start_epoch=progress.next_epoch,
            )
        )
        trainable, total = count_params(model)
        self._ctx.log(
            "info",
            f"training {trainable:,} of {total:,} parameters on {self.device} "
            f"({self.precision}), {len(prepared.train)} training and "
            f"{len(prepared.val)} validation images",
        )

    def _start_tensorboard_log(self, class_names) -> None:
        """The optional TensorBoard log subscribes to the run's events; it closes itself
        when the run finishes."""
        from . import tensorboard_log

        reason = tensorboard_log.missing_reason()
        if reason:
            self._ctx.log("warning", reason)
            return
        warn = lambda message: self._ctx.log("warning", message)  # noqa: E731
        self._ctx.subscribe(tensorboard_log.TensorBoardLog(self.run_dir, class_names, warn))

    def _evaluate_test(self, model: torch.nn.Module, loop: EpochLoop) -> EvaluationReport | None:
        """Score the best checkpoint on the held-out test images, once, at the end."""
        from .loaders import ImageDataset, make_loader

        prepared = self.prepared
        best = self.run_dir / CHECKPOINTS / "best"
        checkpoint = None
        if self.distributed.is_main:
            checkpoint = find_run_checkpoint(self.run_dir, "best") if best.exists() else None
            if checkpoint is not None:
                model.load_state_dict(checkpoint.model_state())
        self.distributed.broadcast_module(model)  # rank 0's checkpoint, without a shared disk
        self._ctx.stage("test", "Scoring the test images…")
        model.eval()
        share = self.distributed.shard(torch.arange(len(prepared.test)))
        dataset = ImageDataset(
            [prepared.test[i] for i in share.tolist()], loop.eval_transform, with_index=True
        )
        loader = make_loader(dataset, batch_size=loop.batch_size, shuffle=False, num_workers=0)
        device, precision = self.device, self.precision

        def forward(images):
            with autocast(device, precision):
                return model(images.to(device))

        batches = ((b.images, b.labels, share[b.indices]) for b in loader.batches())
        report = evaluate(
            forward,
            batches,
            prepared.class_names,
            [path for path, _ in prepared.test],
            gather=self.distributed.gather_outputs,
        )
        if report is not None:
            self._ctx.log(
                "info",
                f"test accuracy {report.accuracy:.3f} on {report.num_images} images "
                f"(checkpoint {'best' if checkpoint else 'last'})",
            )
        return report

    def _checkpoint_meta(self, metrics: dict[str, Any], epoch: int) -> dict[str, Any]:
        built = self.built
        return {
            "format": "desktop_tl.checkpoint/1",
            "classes": list(self.prepared.class_names),
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
        if notify is None or not self.distributed.is_main:
            return
        errors = notify(str(self.run_dir), epoch, dict(metrics))
        for error in errors or ():
            self._ctx.log("warning", f"plugin error in dtl_on_epoch_end: {error}")

    # ------------------------------------------------------------------ the ending

    def _summary(
        self,
        status: str,
        reason: str,
        progress: RunProgress,
        last_eval: EvaluationReport | None,
        loop: EpochLoop,
        test: EvaluationReport | None = None,
    ) -> dict[str, Any]:
        built, prepared, best = self.built, self.prepared, progress.best
        last = progress.history[-1] if progress.history else {}
        summary: dict[str, Any] = {
            "status": status,
            "reason": reason,
            "val_acc": last.get("val_acc"),
            "val_loss": last.get("val_loss"),
            "best_val_acc": best["val_acc"] if best["val_acc"] >= 0 else None,
            "best_epoch": best["epoch"] if best["epoch"] > 0 else None,
            "epochs_completed": len(progress.history),
            "epochs_planned": self.config.train.epochs,
            "classes": list(prepared.class_names),
            "train_seconds": round(time.perf_counter() - self._t0, 3),
            "backbone": built.backbone_id if built else self.config.model.backbone,
            "weights": built.backbone.provenance.to_dict() if built else None,
            "device": str(self.device),
            "precision": self.precision,
            "feature_cache": loop.caches.log,
            "freeze_changes": progress.freeze_changes,
            "num_train": len(prepared.train),
            "num_val": len(prepared.val),
            "num_excluded": len(prepared.excluded),
            "skipped_files": [
                {"path": p, "reason": r} for p, r in [*prepared.bad_files, *loop.unreadable.items()]
            ],
            "run_dir": str(self.run_dir),
            "versions": versions(),
        }
        if self.distributed.active:
            summary["processes"] = self.distributed.world_size
            summary["backend"] = self.distributed.backend
        if last_eval is not None:
            summary["confusion"] = last_eval.confusion
            summary["per_class_precision"] = last_eval.precision
            summary["per_class_recall"] = last_eval.recall
            summary["misclassified"] = last_eval.misclassified_dicts()
        if test is not None:
            summary.update(
                {
                    "test_acc": test.accuracy,
                    "num_test": test.num_images,
                    "test_confusion": test.confusion,
                    "test_per_class_precision": test.precision,
                    "test_per_class_recall": test.recall,
                }
            )
        elif status in ("completed", "early-stopped") and prepared.test:
            summary["num_test"] = 0  # every test image unreadable
        return summary

    def _finish(self, status: str, reason: str) -> ev.RunFinished:
        """The RunFinished of a run that ended outside the epochs (refused, cancelled while
        preparing, a failure); its summary covers what the saved checkpoint holds."""
        summary: dict[str, Any] = {"status": status, "reason": reason}
        validation = None
        if self._saved is not None:
            progress, validation, loop = self._saved
            try:
                summary = self._summary(status, reason, progress, validation, loop)
            except Exception:  # a summary must never hide why the run ended
                pass
        # Only the run holding the folder writes into it; a refused resume leaves the
        # run's own summary as it was, and a stub never replaces a complete summary.
        owned = self._lock is not None and self.run_dir is not None
        level = "error" if status == "failed" else "info"
        if owned and self.run_dir.exists() and not (self.resume and self._t0 is None):
            try:
                update_summary(self.run_dir, summary)
            except OSError:
                pass
            self._ctx.log(level, f"run {status}: {reason}")
        else:
            self._ctx.log(level, f"run {status}: {reason}", to_run_log=False)
        return ev.RunFinished(status, reason, str(self.run_dir or ""), summary, validation)
