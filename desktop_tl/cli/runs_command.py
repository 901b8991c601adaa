"""``desktop-tl runs``: the run history, one run in detail, and runs side by side."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence, TextIO

from ..core.run_comparison import Comparison, compare_runs
from ..core.run_history import RunRecord, find_run, format_share, list_runs, set_display_name, set_note
from ..core.run_folder import runs_dir


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "runs",
        help="list past runs, show one, compare several",
        description="List the runs in the runs folder (DTL_RUNS_DIR overrides where it is) "
        "and in any --folder given: name, date, dataset, backbone, freeze, head, epochs, "
        "final and best validation accuracy, duration and status. A RUN is a run folder, "
        "a folder name in the runs folder, or a display name.",
    )
    _common(parser, argparse.SUPPRESS)
    actions = parser.add_subparsers(dest="runs_action", metavar="{show,compare,rename,note}")

    show = actions.add_parser(
        "show", help="one run: settings, metrics per epoch, evaluation", description="Show one run in detail."
    )
    show.add_argument("run_spec", metavar="RUN")
    _common(show, argparse.SUPPRESS)

    compare = actions.add_parser(
        "compare",
        help="two or more runs: settings that differ, final metrics",
        description="Compare runs: the settings that differ, the final metrics, and whether "
        "they are comparable (same dataset and class set).",
    )
    compare.add_argument("runs", metavar="RUN", nargs="+")
    _common(compare, argparse.SUPPRESS)

    rename = actions.add_parser("rename", help="give a run a display name ('' restores the folder name)")
    rename.add_argument("run_spec", metavar="RUN")
    rename.add_argument("name", metavar="NAME")
    _common(rename, argparse.SUPPRESS)

    note = actions.add_parser("note", help="keep a note with a run ('' removes it)")
    note.add_argument("run_spec", metavar="RUN")
    note.add_argument("text", metavar="TEXT")
    _common(note, argparse.SUPPRESS)
    parser.set_defaults(run=run, json=False, folder=None)


def _common(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--json", action="store_true", default=default, help="print machine-readable JSON")
    parser.add_argument(
        "--folder",
        action="append",
        metavar="DIR",
        default=default,
        help="also read runs from DIR (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    folders = [runs_dir(), *(args.folder or [])]
    action = getattr(args, "runs_action", None)
    out = sys.stdout
    if action == "show":
        record = find_run(args.run_spec, folders)
        if args.json:
            data = record.to_dict()
            data["config"] = record.config
            data["metrics"] = record.metrics()
            data["summary"] = record.summary
            print(json.dumps(data, indent=2, default=str), file=out)
        else:
            print_run(record, out)
        return 0
    if action == "compare":
        records = [find_run(spec, folders) for spec in args.runs]
        comparison = compare_runs(records)
        if args.json:
            print(json.dumps(comparison.to_dict(), indent=2, default=str), file=out)
        else:
            print_comparison(comparison, out)
        return 0
    if action in ("rename", "note"):
        record = find_run(args.run_spec, folders)
        if action == "rename":
            record = set_display_name(record.path, args.name)
            print(f"{record.folder_name} is now shown as {record.name!r}", file=out)
        else:
            record = set_note(record.path, args.text)
            print(f"note {'kept' if record.note else 'removed'} for {record.name}", file=out)
        return 0

    records = list_runs(folders)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2, default=str), file=out)
    else:
        print_table(records, folders, out)
    return 0


# ---------------------------------------------------------------------- printing


LIST_COLUMNS = (
    "NAME",
    "DATE",
    "DATASET",
    "BACKBONE",
    "FREEZE",
    "HEAD",
    "EPOCHS",
    "VAL ACC",
    "BEST",
    "DURATION",
    "STATUS",
)


def list_row(record: RunRecord) -> list[str]:
    return [
        record.name,
        record.date_text,
        record.dataset_name,
        record.backbone,
        record.freeze,
        record.head,
        record.epochs_text,
        format_share(record.val_acc),
        format_share(record.best_val_acc),
        record.duration_text,
        record.status,
    ]


def print_table(records: Sequence[RunRecord], folders: Sequence[Any], out: TextIO) -> None:
    if not records:
        where = ", ".join(str(f) for f in folders)
        print(f"No runs in {where}. Train one with `desktop-tl train --demo`.", file=out)
        return
    _print_columns(LIST_COLUMNS, [list_row(r) for r in records], out)
    problems = [r for r in records if r.problem]
    for record in problems:
        print(f"! {record.name}: {record.problem}", file=out)


def print_run(record: RunRecord, out: TextIO) -> None:
    pairs = [
        ("name", record.name),
        ("folder", str(record.path)),
        ("status", record.status + (f" ({record.reason})" if record.reason else "")),
        ("started", record.date_text),
        ("dataset", record.dataset),
        ("classes", ", ".join(record.classes)),
        ("backbone", record.backbone),
        ("freeze", record.freeze),
        ("head", record.head),
        ("epochs", record.epochs_text),
        ("val accuracy", format_share(record.val_acc)),
        ("best val accuracy", format_share(record.best_val_acc)),
        ("duration", record.duration_text),
    ]
    if record.note:
        pairs.append(("note", record.note))
    if record.problem:
        pairs.append(("problem", record.problem))
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        print(f"{key:<{width}}  {value}", file=out)
    rows = record.metrics()
    if rows:
        print("", file=out)
        columns = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")
        _print_columns(
            [c.upper() for c in columns], [[_cell(row.get(c), c) for c in columns] for row in rows], out
        )
    else:
        print("\nno epoch has finished, so there are no metrics yet", file=out)


def print_comparison(comparison: Comparison, out: TextIO) -> None:
    names = [r.name for r in comparison.runs]
    header = ["", *names]
    rows = [[label, *values] for label, values in comparison.metric_rows()]
    _print_columns(header, rows, out)
    print("", file=out)
    if comparison.differing:
        print("settings that differ:", file=out)
        _print_columns(
            ["SETTING", *names],
            [[key, *("" if v is None else str(v) for v in values)] for key, values in comparison.differing],
            out,
        )
    else:
        print("the runs have the same settings", file=out)
    for message in comparison.messages():
        print(f"! {message}", file=out)


def _cell(value: Any, column: str) -> str:
    if value is None:
        return ""
    if column == "epoch":
        return str(int(value))
    return f"{value:.4f}"


def _print_columns(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [
        max(len(str(h)), *(len(str(row[i])) for row in rows)) if rows else len(str(h))
        for i, h in enumerate(header)
    ]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)
