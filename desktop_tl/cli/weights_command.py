"""``desktop-tl weights import FILE [--model NAME]``: verify a weights file and copy it
into the local weights folder, where offline resolution finds it."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="manage pretrained weights files on this machine",
        description="Manage the pretrained weights files that backbones are initialised from.",
    )
    actions = parser.add_subparsers(dest="weights_action", metavar="ACTION", parser_class=type(parser))
    importer = actions.add_parser(
        "import",
        help="verify a weights file and copy it into the local weights folder",
        description="Read FILE safely (.safetensors, or .pth/.pt without running any code "
        "in it), check that it loads into the model, and copy it into the local weights "
        "folder (DTL_WEIGHTS_DIR, else the user data folder) under its usual name.",
    )
    importer.add_argument("file", metavar="FILE", help="a .safetensors, .pth or .pt file")
    importer.add_argument(
        "--model",
        metavar="NAME",
        help="the backbone the weights are for (model or provider:model); "
        "default: recognised from the file name, e.g. resnet18-f37072fd.pth",
    )
    parser.set_defaults(run=run, weights_parser=parser)


def run(args: argparse.Namespace) -> int:
    if args.weights_action != "import":
        args.weights_parser.error("choose an action: import")
    from ..core.weights import import_weights_report

    report = import_weights_report(args.file, model_name=args.model)
    print(f"Imported {args.file} -> {report.target} (sha256 {report.sha256})")
    for note in report.notes:
        print(f"Note: {note}.")
    return 0
