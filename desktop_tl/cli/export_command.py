"""``desktop-tl export``: a trained run as ONNX, torch.export or safetensors, in a bundle."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    from ..core.export import CHECKPOINTS, DEFAULT_PARITY_IMAGES, FORMATS, INT8_METHODS

    parser = subparsers.add_parser(
        "export", help="export a trained run (ONNX, torch.export .pt2, safetensors) as a bundle"
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder")
    parser.add_argument("--format", required=True, metavar="FORMAT", help=f"one of {', '.join(FORMATS)}")
    parser.add_argument(
        "--checkpoint", default="best", metavar="WHICH", help=f"{' or '.join(CHECKPOINTS)} (default: best)"
    )
    parser.add_argument(
        "--out", default=None, metavar="DIR", help="bundle folder (default: beside the run, RUN_DIR-FORMAT)"
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write an int8-quantised ONNX model and state its accuracy change",
    )
    parser.add_argument(
        "--int8-method",
        default="static",
        choices=INT8_METHODS,
        help="static: calibrated on training images, faster than float on CPU "
        "(default); dynamic: needs no images, slower on CPU",
    )
    parser.add_argument("--force", action="store_true", help="replace an earlier export bundle in DIR")
    parser.add_argument(
        "--parity-images",
        type=int,
        default=DEFAULT_PARITY_IMAGES,
        metavar="N",
        help=f"validation images for the parity check (default: {DEFAULT_PARITY_IMAGES})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..core.export import export
    from ..errors import UserError

    if args.parity_images < 1:
        raise UserError("--parity-images must be at least 1")
    progress = None if args.quiet else (lambda message: print(message, file=sys.stderr))
    result = export(
        args.run_dir,
        args.format.lower(),
        checkpoint=args.checkpoint,
        out=args.out,
        int8=args.int8,
        int8_method=args.int8_method,
        force=args.force,
        max_parity_images=args.parity_images,
        progress=progress,
    )
    print(result.summary())
    return 0
