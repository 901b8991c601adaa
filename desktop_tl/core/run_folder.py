"""The run folder: where a run's configuration, metrics, log and checkpoints live."""

from __future__ import annotations

import csv
import io
import json
import os
import re
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


def check_new_run_dir(path: Path) -> None:
    """Refuse a folder that already holds a run or is a file (without creating anything)."""
    path = Path(path)
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
