"""Continuing a run from its folder: which checkpoint to start from, whether anything is
left to do, and repairing what a killed run left half written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .checkpoints import (
    CheckpointError,
    copy_checkpoint,
    find_run_checkpoint,
    load_checkpoint,
    tidy_checkpoints,
)
from .run_folder import CHECKPOINTS, RunFolderError, read_summary, remove_temporary_files
from .run_progress import RunProgress

Log = Callable[[str, str], None]


def resume_checkpoint(run_dir: Path):
    """The checkpoint to resume from; None when no epoch finished (start from the beginning)."""
    folder = run_dir / CHECKPOINTS
    if not any((folder / name).exists() for name in ("last", "last.old", "best", "best.old")):
        return None
    return find_run_checkpoint(run_dir, "last")


def summary_is_final(summary: dict[str, Any], epochs: int) -> bool:
    """Whether ``summary`` is the one a run writes once it has finished all ``epochs``."""
    return (
        summary.get("status") in ("completed", "early-stopped") and summary.get("epochs_completed") == epochs
    )


def check_resumable(run_dir: Path, progress: RunProgress, train) -> bool:
    """Whether a run whose epochs are all done only has to finish (evaluate and write its
    summary); raises when there is nothing left to do. ``train`` is the run's TrainConfig."""
    done = progress.next_epoch
    stopped_early = progress.stopped_early(train.early_stopping_patience)
    if done < train.epochs and not stopped_early:
        return False
    # A run killed while finishing (after its last checkpoint, before its summary) is
    # finished now; only one with its final summary is refused.
    if not summary_is_final(read_summary(run_dir), len(progress.history)):
        return True
    if stopped_early:
        raise RunFolderError(
            f"{run_dir} stopped early after epoch {done} (validation loss did not improve for "
            f"{progress.stale_epochs} epochs); there is nothing to resume"
        )
    raise RunFolderError(
        f"{run_dir} already finished its {done} epochs; to train longer, resume with --epochs N (N > {done})"
    )


def check_data_present(prepared) -> None:
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


def remove_interrupted_writes(run_dir: Path, log: Log) -> None:
    """Temp files and folders of writes a killed run left; safe under the run lock."""
    removed = [*remove_temporary_files(run_dir), *tidy_checkpoints(run_dir / CHECKPOINTS)]
    if removed:
        names = ", ".join(str(p.relative_to(run_dir)) for p in removed)
        log("info", f"removed what an interrupted write left: {names}")


def restore_best(run_dir: Path, checkpoint, best: dict[str, Any], last_epoch: int, log: Log) -> None:
    """Rewrite checkpoints/best from last when a kill cut the save of the best epoch.

    Best and last of one epoch hold the same model, metadata and scores, and last is
    written first; so when the best epoch is the last one saved, best can be made again.
    """
    folder = run_dir / CHECKPOINTS / "best"
    if best.get("epoch", -1) <= 0:
        return
    try:
        saved_epoch = load_checkpoint(folder).meta.get("epoch")
    except CheckpointError:
        saved_epoch = None
    if saved_epoch == best["epoch"]:
        return
    if best["epoch"] == last_epoch:
        copy_checkpoint(checkpoint.path, folder)
        log(
            "info",
            f"checkpoints/best held epoch {saved_epoch}, not the best epoch "
            f"{last_epoch}; rewrote it from checkpoints/last",
        )
    else:
        log(
            "warning",
            f"checkpoints/best holds epoch {saved_epoch}, but the best epoch was "
            f"{best['epoch']}; its weights were lost when the run was interrupted",
        )
