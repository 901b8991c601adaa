"""The run folder: where a run's configuration, metrics, log and checkpoints live."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Iterable

import platformdirs

from ..errors import UserError
from .atomic import atomic_write_text

RUN_FILE = "run.toml"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
SPLIT_FILE = "split.json"
LOG_FILE = "run.log"
CHECKPOINTS = "checkpoints"
LOCK_FILE = ".run.lock"
LOCK_OWNER_FILE = ".run.lock.owner"

METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "epoch_seconds",
    "feature_cache",
)


class RunFolderError(UserError):
    """The run folder cannot be used as asked."""


def runs_dir() -> Path:
    """Where new run folders go unless one is given (``DTL_RUNS_DIR`` overrides)."""
    override = os.environ.get("DTL_RUNS_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_data_dir("desktop_tl", appauthor=False)) / "runs"


def cache_dir() -> Path:
    """Where cached features may spill (``DTL_CACHE_DIR`` overrides)."""
    override = os.environ.get("DTL_CACHE_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir("desktop_tl", appauthor=False))


def new_run_dir(backbone: str, parent: Path | None = None) -> Path:
    """A fresh, unique folder named by time and backbone."""
    parent = Path(parent) if parent else runs_dir()
    stem = time.strftime("%Y%m%d-%H%M%S") + "-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", backbone)
    candidate = parent / stem
    n = 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{stem}-{n}"
    return candidate


def check_new_run_dir(path: Path, *, locked_by_us: bool = False) -> None:
    """Refuse a folder that already holds a run, is in use or is a file (without creating
    anything). ``locked_by_us``: the caller holds the folder's lock (see :func:`lock_run_dir`)."""
    path = Path(path)
    holder = None if locked_by_us else run_in_progress(path)
    if holder:
        raise RunFolderInUse(_in_use_message(path, holder))
    if (path / RUN_FILE).exists():
        raise RunFolderError(
            f"{path} already holds a run; choose another output folder, "
            f"or continue that run with --resume {path}"
        )
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{path} is a file, not a folder; choose another output folder")


def prepare_new_run_dir(path: Path) -> Path:
    """Create the folder for a new run; refuse one that already holds a run."""
    path = Path(path)
    check_new_run_dir(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"cannot create run folder {path}: {exc.strerror or exc}") from None
    return path


def write_metrics(run_dir: Path, rows: Iterable[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in METRIC_COLUMNS})
    atomic_write_text(Path(run_dir) / METRICS_FILE, buffer.getvalue())


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / SUMMARY_FILE, json.dumps(summary, indent=2, default=str))


def update_summary(run_dir: Path, summary: dict[str, Any]) -> bool:
    """Write ``summary`` unless the one already there says more; returns whether it wrote.

    A complete summary (one with ``epochs_completed``) is never replaced by a stub, nor by
    one that covers fewer epochs: a failed retry must not erase what a good run recorded.
    """
    try:
        existing = read_summary(run_dir)
    except (OSError, ValueError):
        existing = {}  # unreadable: anything is better
    if summary_is_complete(existing) and not (
        summary_is_complete(summary) and summary["epochs_completed"] >= existing["epochs_completed"]
    ):
        return False
    write_summary(run_dir, summary)
    return True


def summary_is_complete(summary: dict[str, Any]) -> bool:
    return isinstance(summary, dict) and isinstance(summary.get("epochs_completed"), int)


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / SUMMARY_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


class RunLog:
    """Appends timestamped lines to ``run.log`` (a crash keeps what was written)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOG_FILE

    def write(self, level: str, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {level.upper():7s} {message}\n")


# ---------------------------------------------------------------------- disk space and errors


def megabytes(n_bytes: float) -> str:
    mb = max(0.0, n_bytes) / 2**20
    return f"{mb:.0f}" if mb >= 10 else f"{mb:.1f}"


def _existing_folder(path: Path) -> Path:
    """``path`` or its nearest existing parent (a new run folder is not made yet)."""
    path = Path(path).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def check_free_space(folder: Path, needed_bytes: int, what: str, then: str = "try again") -> None:
    """Refuse, before writing anything, when ``folder``'s disk cannot hold ``needed_bytes``."""
    where = _existing_folder(folder)
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return  # unknown: let the write itself report
    if free < needed_bytes:
        raise RunFolderError(
            f"not enough free space in {where} to {what}: it needs about "
            f"{megabytes(needed_bytes)} MB and {megabytes(free)} MB are free; free at least "
            f"{megabytes(needed_bytes - free)} MB on that disk, then {then}"
        )


def describe_os_error(exc: OSError, where: Path | str | None = None) -> str:
    """One line for a failed file operation: the path, what went wrong, what to do."""
    path = exc.filename or where or "a file"
    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"cannot write {path}: the disk is full; free some space on it, then try again"
    if code == errno.EROFS:
        return (
            f"cannot write {path}: it is on a read-only file system; make it writable, or "
            "copy the run folder somewhere writable and use the copy"
        )
    if code in (errno.EACCES, errno.EPERM):
        return f"cannot write {path}: permission denied; make it writable for you, then try again"
    return f"{path}: {exc.strerror or exc}"


# ---------------------------------------------------------------------- one run per folder


class RunFolderInUse(RunFolderError):
    """Another training run holds the run folder."""


class RunLock:
    """An exclusive hold on a run folder for as long as one run writes into it.

    An OS file lock (``filelock``: flock on Unix, LockFileEx on Windows) rather than a
    marker file: the system drops it when its process dies, even by kill -9, so a stale
    lock never needs guessing from pids. Who holds it is written beside it for messages.
    """

    def __init__(self, run_dir: Path, lock: Any) -> None:
        self.run_dir = Path(run_dir)
        self._lock = lock

    def release(self) -> None:
        if self._lock is None:
            return
        try:
            (self.run_dir / LOCK_OWNER_FILE).unlink(missing_ok=True)
        except OSError:
            pass  # a stale owner note is harmless: the lock itself decides
        self._lock.release()
        self._lock = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _owner_text(run_dir: Path) -> str:
    try:
        owner = json.loads((Path(run_dir) / LOCK_OWNER_FILE).read_text(encoding="utf-8"))
        return f"process {owner['pid']} on {owner['host']}, since {owner['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that is starting or has not said who it is"


def _in_use_message(run_dir: Path, holder: str) -> str:
    return (
        f"{run_dir} is in use by another training run ({holder}); wait for it to finish "
        "or stop it, then try again (or choose another output folder)"
    )


def lock_run_dir(run_dir: Path | str, wait_s: float = 1.0) -> RunLock:
    """Hold ``run_dir`` for this run; refuse if another run holds it.

    ``wait_s`` covers the instant :func:`run_in_progress` holds the lock to probe it.
    """
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    lock = FileLock(str(run_dir / LOCK_FILE), timeout=wait_s)
    try:
        lock.acquire()
    except Timeout:
        raise RunFolderInUse(_in_use_message(run_dir, _owner_text(run_dir))) from None
    except OSError as exc:
        raise RunFolderError(describe_os_error(exc, run_dir)) from None
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        atomic_write_text(run_dir / LOCK_OWNER_FILE, json.dumps(owner))
    except OSError as exc:
        lock.release()
        raise RunFolderError(describe_os_error(exc, run_dir)) from None
    return RunLock(run_dir, lock)


def run_in_progress(run_dir: Path | str) -> str | None:
    """Who is training in ``run_dir`` right now ("process N on HOST, since T"), or None."""
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    if not (run_dir / LOCK_FILE).exists():
        return None  # never locked (an older run), or not a run folder
    probe = FileLock(str(run_dir / LOCK_FILE), timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return _owner_text(run_dir)
    except OSError:
        return None  # e.g. a read-only copy of a run: nobody can be writing into it
    probe.release()
    return None


def remove_temporary_files(run_dir: Path) -> list[Path]:
    """Remove the temp files of atomic writes a killed run left (``.NAME.XXXX.tmp``).

    Only call it while holding the run's lock: then no writer can own them.
    """
    removed = []
    for path in Path(run_dir).glob(".*.tmp"):
        try:
            if path.is_file():
                path.unlink()
                removed.append(path)
        except OSError:
            pass
    return removed
