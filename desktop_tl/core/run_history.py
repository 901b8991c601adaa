"""Run history: every run folder read back as a record, renamed and annotated (runs side
by side: :mod:`desktop_tl.core.run_comparison`).

A run folder is the unit of history (nothing else stores run state), so this module only
reads what the engine wrote (``run.toml``, ``summary.json``, ``metrics.csv``, ``run.log``)
plus one small file of its own, ``notes.json``, holding the display name and the note a
person gave the run. Reading never raises for a damaged, half-written or newer folder:
the record carries the problem as one clear sentence so that a list of runs always shows.
(That tolerance, one check per file a run may lack or have damaged, is why it is long.)
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from ..errors import UserError
from .atomic import atomic_write_text
from .run_folder import (
    LOCK_FILE,
    LOG_FILE,
    METRICS_FILE,
    RUN_FILE,
    SPLIT_FILE,
    SUMMARY_FILE,
    run_in_progress,
    runs_dir,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

NOTES_FILE = "notes.json"
NOTES_FORMAT = "desktop_tl.notes/1"
#: A run without a summary whose log changed this recently counts as still training
#: (used only when the run folder module offers no lock to ask).
RUNNING_LOG_AGE_S = 60.0
MAX_NAME_LENGTH = 120
FINISHED_STATUSES = ("completed", "early-stopped", "cancelled", "failed")


class RunHistoryError(UserError):
    """A run cannot be found, read or changed as asked."""


@dataclass
class RunRecord:
    """What the history shows of one run folder. ``problem`` is set when the folder is
    damaged, half-written or from a newer version; the rest is whatever could be read."""

    path: Path
    name: str  # the display name (notes.json) or the folder name
    note: str = ""
    status: str = "unknown"  # completed, early-stopped, cancelled, failed, running, interrupted, damaged
    reason: str = ""
    problem: str = ""
    started: float | None = None  # seconds since the epoch
    dataset: str = ""
    backbone: str = ""
    freeze: str = ""
    head: str = ""
    epochs_completed: int | None = None
    epochs_planned: int | None = None
    val_acc: float | None = None
    best_val_acc: float | None = None
    val_loss: float | None = None
    duration_s: float | None = None
    classes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    split_val: tuple[str, ...] | None = None  # the validation images, for comparability

    @property
    def folder_name(self) -> str:
        return self.path.name

    @property
    def renamed(self) -> bool:
        return self.name != self.path.name

    @property
    def dataset_name(self) -> str:
        return Path(self.dataset).name if self.dataset else ""

    @property
    def date_text(self) -> str:
        if self.started is None:
            return ""
        return datetime.fromtimestamp(self.started).strftime("%Y-%m-%d %H:%M")

    @property
    def duration_text(self) -> str:
        return format_duration(self.duration_s)

    @property
    def epochs_text(self) -> str:
        if self.epochs_completed is None and self.epochs_planned is None:
            return ""
        done = "?" if self.epochs_completed is None else str(self.epochs_completed)
        return f"{done}/{self.epochs_planned}" if self.epochs_planned else done

    def metrics(self) -> list[dict[str, float]]:
        """The per-epoch rows of ``metrics.csv`` as numbers ([] when there are none yet)."""
        return read_metrics(self.path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "folder": self.folder_name,
            "name": self.name,
            "note": self.note,
            "status": self.status,
            "reason": self.reason,
            "problem": self.problem,
            "started": (
                datetime.fromtimestamp(self.started).isoformat(timespec="seconds")
                if self.started is not None
                else None
            ),
            "dataset": self.dataset,
            "backbone": self.backbone,
            "freeze": self.freeze,
            "head": self.head,
            "epochs_completed": self.epochs_completed,
            "epochs_planned": self.epochs_planned,
            "val_acc": self.val_acc,
            "best_val_acc": self.best_val_acc,
            "val_loss": self.val_loss,
            "duration_s": self.duration_s,
            "classes": list(self.classes),
        }


# ---------------------------------------------------------------------- reading


def looks_like_run(path: Path) -> bool:
    """A folder the engine wrote into (even if only partly)."""
    path = Path(path)
    return path.is_dir() and any(
        (path / name).exists() for name in (RUN_FILE, SUMMARY_FILE, METRICS_FILE, LOG_FILE)
    )


def list_runs(folders: Iterable[str | os.PathLike[str]] | None = None) -> list[RunRecord]:
    """Every run in ``folders`` (default: the runs folder), newest first. A folder may be a
    folder of runs or a run itself; a folder that does not exist is skipped."""
    folders = [runs_dir()] if folders is None else [Path(f) for f in folders]
    seen: set[Path] = set()
    records: list[RunRecord] = []
    for folder in folders:
        folder = Path(folder)
        if looks_like_run(folder):
            candidates = [folder]
        else:
            try:
                candidates = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                continue
        for candidate in candidates:
            key = candidate.resolve()
            if key in seen or not looks_like_run(candidate):
                continue
            seen.add(key)
            records.append(read_run(candidate))
    records.sort(key=lambda r: (r.started or 0.0, r.folder_name), reverse=True)
    return records


def read_run(path: str | os.PathLike[str]) -> RunRecord:
    """The record of one run folder; problems are reported in ``record.problem``."""
    path = Path(path)
    if not path.is_dir():
        raise RunHistoryError(f"run folder {path} does not exist (it may have been deleted or moved)")
    record = RunRecord(path=path, name=path.name)
    problems: list[str] = []

    notes = _read_json(path / NOTES_FILE, problems, optional=True)
    if isinstance(notes, dict):
        name = notes.get("name")
        if isinstance(name, str) and name.strip():
            record.name = name.strip()
        if isinstance(notes.get("note"), str):
            record.note = notes["note"]

    config = _read_toml(path / RUN_FILE, problems)
    if config:
        record.config = config
        data = config.get("data") if isinstance(config.get("data"), dict) else {}
        model = config.get("model") if isinstance(config.get("model"), dict) else {}
        freeze = config.get("freeze") if isinstance(config.get("freeze"), dict) else {}
        train = config.get("train") if isinstance(config.get("train"), dict) else {}
        record.dataset = str(data.get("path", ""))
        record.backbone = str(model.get("backbone", ""))
        record.head = str(model.get("head", ""))
        record.freeze = _freeze_text(freeze)
        if isinstance(train.get("epochs"), int):
            record.epochs_planned = train["epochs"]

    summary = _read_json(path / SUMMARY_FILE, problems, optional=True)
    if summary is not None and not isinstance(summary, dict):
        problems.append(f"{SUMMARY_FILE} does not hold a JSON object")
        summary = None
    if summary:
        record.summary = summary
        record.status = str(summary.get("status") or "unknown")
        record.reason = str(summary.get("reason") or "")
        record.val_acc = _number(summary.get("val_acc"))
        record.best_val_acc = _number(summary.get("best_val_acc"))
        record.val_loss = _number(summary.get("val_loss"))
        record.duration_s = _number(summary.get("train_seconds"))
        if isinstance(summary.get("epochs_completed"), int):
            record.epochs_completed = summary["epochs_completed"]
        if isinstance(summary.get("epochs_planned"), int):
            record.epochs_planned = summary["epochs_planned"]
        if isinstance(summary.get("classes"), list):
            record.classes = [str(c) for c in summary["classes"]]
        if summary.get("backbone"):
            record.backbone = str(summary["backbone"])
        newer = _newer_version(summary)
        if newer:
            problems.append(newer)

    split = _read_json(path / SPLIT_FILE, problems, optional=True)
    if isinstance(split, dict):
        if not record.classes and isinstance(split.get("class_names"), list):
            record.classes = [str(c) for c in split["class_names"]]
        val = split.get("val")
        if isinstance(val, list):
            record.split_val = tuple(
                sorted(str(item[0]) if isinstance(item, list) and item else str(item) for item in val)
            )

    if is_running(path, has_summary=bool(summary)):
        record.status = "running"
        rows = read_metrics(path)
        if rows:
            record.epochs_completed = len(rows)
            record.val_acc = rows[-1].get("val_acc")
            accs = [r["val_acc"] for r in rows if r.get("val_acc") is not None]
            record.best_val_acc = max(accs) if accs else None
    elif not summary:
        if config is None and not (path / RUN_FILE).exists():
            problems.append(f"the folder has no {RUN_FILE}; it was not written completely")
        record.status = "damaged" if problems else "interrupted"
        if record.status == "interrupted":
            record.reason = (
                "the run stopped without writing a summary "
                "(the program was closed or crashed); `desktop-tl train --resume` continues it"
            )
        rows = read_metrics(path)
        if rows:
            record.epochs_completed = len(rows)
            record.val_acc = rows[-1].get("val_acc")
    elif problems and record.status == "unknown":
        record.status = "damaged"

    record.started = _started(path)
    record.problem = "; ".join(problems)
    return record


def is_running(path: Path, has_summary: bool | None = None) -> bool:
    """Whether a run is still training: asks the run folder's lock (held by the training
    process for as long as it writes). A run from before the lock existed counts as
    running when it has no summary and its log changed in the last minute."""
    path = Path(path)
    if (path / LOCK_FILE).exists():
        return run_in_progress(path) is not None
    if has_summary is None:
        has_summary = (path / SUMMARY_FILE).exists()
    if has_summary:
        return False
    try:
        age = time.time() - (path / LOG_FILE).stat().st_mtime
    except OSError:
        return False
    return age < RUNNING_LOG_AGE_S


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """``metrics.csv`` as rows of numbers; a missing or damaged file gives what could be read."""
    file = Path(path) / METRICS_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    rows: list[dict[str, float]] = []
    for raw in csv.DictReader(text.splitlines()):
        row: dict[str, float] = {}
        for key, value in raw.items():
            if key is None or key == "feature_cache":
                continue
            number = _number(value)
            if number is not None:
                row[key] = number
        if "epoch" in row:
            rows.append(row)
    return rows


def find_run(spec: str, folders: Iterable[str | os.PathLike[str]] | None = None) -> RunRecord:
    """A run given as a folder path, a folder name in the runs folder or a display name."""
    candidate = Path(spec).expanduser()
    if candidate.is_dir():
        if not looks_like_run(candidate):
            raise RunHistoryError(f"{candidate} is not a run folder (it has no {RUN_FILE} or {SUMMARY_FILE})")
        return read_run(candidate)
    folder_list = [runs_dir()] if folders is None else [Path(f) for f in folders]
    records = list_runs(folder_list)
    by_folder = [r for r in records if r.folder_name == spec]
    if by_folder:
        return by_folder[0]
    by_name = [r for r in records if r.name == spec]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        names = ", ".join(r.folder_name for r in by_name)
        raise RunHistoryError(f"{len(by_name)} runs are named {spec!r} ({names}); give the folder instead")
    where = ", ".join(str(f) for f in folder_list)
    raise RunHistoryError(f"no run {spec!r} in {where}; `desktop-tl runs` lists the runs there")


# ---------------------------------------------------------------------- name and note


def set_display_name(path: str | os.PathLike[str], name: str) -> RunRecord:
    """Give the run a display name (kept in its ``notes.json``); an empty name restores
    the folder name. The folder itself is never renamed."""
    name = (name or "").strip()
    if "\n" in name or "\r" in name:
        raise RunHistoryError("a run name must be one line")
    if len(name) > MAX_NAME_LENGTH:
        raise RunHistoryError(f"a run name may have at most {MAX_NAME_LENGTH} characters, not {len(name)}")
    return _update_notes(path, name=name)


def set_note(path: str | os.PathLike[str], note: str) -> RunRecord:
    """Keep a free-text note with the run (in its ``notes.json``)."""
    return _update_notes(path, note=(note or "").strip())


def _update_notes(path: str | os.PathLike[str], **changes: str) -> RunRecord:
    path = Path(path)
    if not path.is_dir():
        raise RunHistoryError(f"run folder {path} does not exist any more (it was deleted or moved)")
    file = path / NOTES_FILE
    notes: dict[str, Any] = {}
    try:
        loaded = json.loads(file.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            notes = loaded
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass  # a damaged notes file is replaced; it held only the name and note
    notes["format"] = NOTES_FORMAT
    notes.update(changes)
    try:
        atomic_write_text(file, json.dumps(notes, indent=2, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise RunHistoryError(f"cannot write {file}: {exc.strerror or exc}") from None
    return read_run(path)


def move_to_trash(path: str | os.PathLike[str]) -> None:
    """Move a run folder to the system trash (never erased outright); refuse one that
    is still training or is not a run folder."""
    path = Path(path)
    if not path.is_dir():
        raise RunHistoryError(f"run folder {path} does not exist any more (it was deleted or moved)")
    if not looks_like_run(path):
        raise RunHistoryError(f"{path} is not a run folder; only run folders are moved to the trash here")
    if is_running(path):
        raise RunHistoryError(f"{path.name} is still training; stop it before deleting it")
    try:
        from send2trash import send2trash
    except ImportError:  # pragma: no cover - a declared dependency
        raise RunHistoryError(
            "moving to the trash needs the send2trash package; the run was left where it is"
        ) from None
    try:
        send2trash(str(path))
    except Exception as exc:  # send2trash raises OSError subclasses and its own TrashPermissionError
        raise RunHistoryError(f"could not move {path} to the trash ({exc}); nothing was deleted") from None


# ---------------------------------------------------------------------- results out


def per_class_rows(record: RunRecord) -> list[dict[str, Any]]:
    """Precision, recall and support per class from the run's last evaluation."""
    summary = record.summary
    confusion = summary.get("confusion")
    if not isinstance(confusion, list) or not confusion:
        raise RunHistoryError(
            f"{record.name} has no evaluation results "
            f"({record.status}; no epoch finished with a validation pass)"
        )
    classes = record.classes or [str(i) for i in range(len(confusion))]
    precision = summary.get("per_class_precision") or []
    recall = summary.get("per_class_recall") or []
    rows = []
    for index, name in enumerate(classes):
        row = confusion[index] if index < len(confusion) else []
        rows.append(
            {
                "class": name,
                "precision": _number(precision[index]) if index < len(precision) else None,
                "recall": _number(recall[index]) if index < len(recall) else None,
                "support": int(sum(row)) if row else 0,
                "correct": int(row[index]) if index < len(row) else 0,
            }
        )
    return rows


def write_per_class_csv(record: RunRecord, target: str | os.PathLike[str]) -> Path:
    rows = per_class_rows(record)
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=["class", "precision", "recall", "support", "correct"], lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)) for k, v in row.items()}
        )
    target = Path(target)
    try:
        atomic_write_text(target, buffer.getvalue())
    except OSError as exc:
        raise RunHistoryError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


# ---------------------------------------------------------------------- formatting


def format_share(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 0.5:  # a run on cached features can take less; "0 s" reads as broken
        return "under 1 s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# ---------------------------------------------------------------------- helpers


def _read_json(file: Path, problems: list[str], optional: bool) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not optional:
            problems.append(f"{file.name} is missing")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{file.name} cannot be read ({exc})")
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(f"{file.name} is damaged (not valid JSON: {exc.msg} at line {exc.lineno})")
        return None


def _read_toml(file: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{file.name} cannot be read ({exc})")
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{file.name} is damaged (not valid TOML: {exc})")
        return None


def _newer_version(summary: dict[str, Any]) -> str:
    from .. import __version__

    written = (
        (summary.get("versions") or {}).get("desktop_tl")
        if isinstance(summary.get("versions"), dict)
        else None
    )
    if isinstance(written, str) and _version_key(written) > _version_key(__version__):
        return (
            f"written by desktop-tl {written}, newer than this {__version__}; "
            "what this version understands is shown"
        )
    return ""


def _version_key(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _freeze_text(freeze: dict[str, Any]) -> str:
    preset = str(freeze.get("preset", ""))
    overrides = freeze.get("overrides")
    if isinstance(overrides, dict) and overrides:
        return f"{preset} + {len(overrides)} change{'s' if len(overrides) != 1 else ''}"
    return preset


def _started(path: Path) -> float | None:
    """When the run began: the first stamp in its log, else when its run file was written."""
    try:
        with (path / LOG_FILE).open(encoding="utf-8", errors="replace") as handle:
            first = handle.readline()
        return time.mktime(time.strptime(first[:19], "%Y-%m-%d %H:%M:%S"))
    except (OSError, ValueError):
        pass
    for name in (RUN_FILE, SUMMARY_FILE, METRICS_FILE):
        try:
            return (path / name).stat().st_mtime
        except OSError:
            continue
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def same_path(a: str, b: str) -> bool | None:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return None
