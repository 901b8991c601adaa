"""``desktop-tl plugins``: every installed plugin, what it provides, and its status."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import TextIO

from ..plugin.descriptors import API_VERSION
from ..plugin.manager import DISABLED_ENV, FAILED, REFUSED, PluginHost, PluginRecord, get_host


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plugins",
        help="list installed plugins, what they provide and whether they loaded",
        description="List every desktop_tl plugin found through the 'desktop_tl' entry-point "
        f"group: name, distribution, version, what it provides, and its status or error. "
        f"Block plugins with {DISABLED_ENV}=name,...; set DTL_STRICT_PLUGINS=1 to let "
        "plugin errors raise.",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--verbose", "-v", action="store_true", help="print full tracebacks of plugin errors")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    host = get_host()
    if args.json:
        print(json.dumps(host_report(host), indent=2))
    else:
        print_table(host, sys.stdout, verbose=args.verbose)
    return 0


def host_report(host: PluginHost) -> dict:
    """Everything ``--json`` prints: the API version, one object per plugin, problems."""
    return {
        "api_version": API_VERSION,
        "plugins": [asdict(record) for record in host.records],
        "problems": list(host.problems),
    }


def print_table(host: PluginHost, out: TextIO, *, verbose: bool = False) -> None:
    records = host.records
    if not records:
        print(
            "No desktop_tl plugins are installed. Install the shipped ones with "
            "`pip install -e plugins/dtl_torchvision -e plugins/dtl_efficientnet_lite "
            "-e plugins/dtl_loaders -e plugins/dtl_heads`.",
            file=out,
        )
    else:
        header = ("NAME", "DISTRIBUTION", "VERSION", "STATUS", "PROVIDES")
        rows = [(r.name, r.distribution, r.version, r.status, ", ".join(r.provides) or "-") for r in records]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
        for row in [header, *rows]:
            cells = [cell.ljust(width) for cell, width in zip(row, widths)]
            print("  ".join([*cells, row[-1]]).rstrip(), file=out)
        for record in records:
            _print_details(record, out, verbose)
    if host.problems:
        print("\nProblems:", file=out)
        for problem in host.problems:
            print(f"  - {problem}", file=out)
    if not verbose and any(r.status in (FAILED, REFUSED) for r in records):
        print("\nRun `desktop-tl plugins --verbose` for full tracebacks.", file=out)


def _print_details(record: PluginRecord, out: TextIO, verbose: bool) -> None:
    if record.error:
        text = record.error if verbose else (record.summary or record.error)
        lines = text.splitlines() or [""]
        print(
            f"\n{record.name} ({record.distribution} {record.version}) {record.status}: {lines[0]}", file=out
        )
        for line in lines[1:]:
            print(f"    {line}", file=out)
    elif record.notes:
        print(f"\n{record.name} ({record.distribution} {record.version}):", file=out)
    else:
        return
    for note in record.notes:
        print(f"  note: {note}", file=out)
