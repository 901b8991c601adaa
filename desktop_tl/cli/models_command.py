"""``desktop-tl models``: every backbone, and whether its pretrained weights are on this
machine and where from. Only checks that files exist; never loads weights."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import UserError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list backbones and whether their pretrained weights are on this machine",
        description="List every backbone the installed plugins provide, with whether its "
        "pretrained weights are available on this machine and from where.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--provider", metavar="ID", help="only this backbone provider")
    parser.add_argument(
        "--available",
        action="store_true",
        help="only the backbones whose pretrained weights are on this machine",
    )
    parser.set_defaults(run=run)


def collect(
    host: Any, provider_id: str | None = None, *, available_only: bool = False
) -> list[dict[str, Any]]:
    """One row per backbone: provider, model, name (provider:model), available, source,
    path, file_names (what the local weights folder would hold), detail. A provider that
    fails to report a model gets a row with source ``error``. ``available_only`` keeps
    the backbones whose pretrained weights are on this machine."""
    providers = host.backbone_providers()
    if provider_id is not None and provider_id not in providers:
        known = ", ".join(providers) or "none installed (see desktop-tl plugins)"
        raise UserError(f"no backbone provider has the id {provider_id!r} (providers: {known})")
    rows = []
    for pid, provider in providers.items():
        if provider_id is not None and pid != provider_id:
            continue
        for model, status in host.weights_statuses(pid).items():
            row: dict[str, Any] = {
                "provider": pid,
                "model": model,
                "name": f"{pid}:{model}",
                "available": bool(status.available),
                "source": status.source,
                "path": status.path,
                "detail": status.detail,
            }
            try:
                row["file_names"] = (
                    [] if status.source == "error" else list(provider.weight_file_names(model))
                )
            except Exception as exc:  # one broken provider must not hide the others
                row.update(
                    available=False,
                    source="error",
                    path=None,
                    file_names=[],
                    detail=f"weight_file_names failed: {type(exc).__name__}: {exc}",
                )
            if available_only and not row["available"]:
                continue
            rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    from ..plugin.manager import get_host

    host = get_host()
    rows = collect(host, args.provider, available_only=args.available)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not rows:
        if args.available:
            print(
                "No backbone has pretrained weights on this machine. Import a file with "
                "`desktop-tl weights import FILE --model NAME`, or train with --weights none."
            )
        else:
            print("No backbones: install a backbone plugin (see desktop-tl plugins).")
        return 0
    from ..core.weights import weights_dir

    width = max(len(row["name"]) for row in rows)
    print(f"{'BACKBONE':<{width}}  {'PRETRAINED':<10}  {'SOURCE':<11}  WHERE")
    for row in rows:
        if row["available"]:
            where = row["path"] or row["detail"]
        elif row["source"] == "error":
            where = row["detail"]
        else:
            where = f"needs {row['file_names'][0]}" if row["file_names"] else ""
        available = "yes" if row["available"] else "no"
        print(f"{row['name']:<{width}}  {available:<10}  {row['source']:<11}  {where}".rstrip())
    missing = sum(not row["available"] for row in rows)
    if missing:
        print(
            f"\n{missing} backbone(s) have no pretrained weights on this machine. Import a "
            "file with `desktop-tl weights import FILE --model NAME`, or put it under the "
            f"name shown in {weights_dir()}; or train with --weights none."
        )
    return 0
