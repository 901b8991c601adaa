"""``desktop-tl predict``: classify images with a trained run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UserError
from .paths import check_path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="classify images with a trained run")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (or a checkpoint folder)")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    parser.add_argument("--top-k", type=int, default=3, metavar="K")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps", "auto"))
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)


def _expand(paths: list[str]) -> list[str]:
    from ..core.images import IMAGE_EXTENSIONS

    result: list[str] = []
    for raw in paths:
        check_path(raw, "IMAGE")
        path = Path(raw)
        if path.is_dir():
            result.extend(str(p) for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            result.append(raw)
    return result


def run(args: argparse.Namespace) -> int:
    from ..core.device import resolve_device
    from ..core.predict import Predictor

    if args.top_k < 1:
        raise UserError("--top-k must be at least 1")
    check_path(args.run_dir, "RUN_DIR")
    images = _expand(args.images)
    if not images:
        raise UserError("no images to predict: the folders given hold no image files")
    predictor = Predictor.from_run_dir(args.run_dir, device=str(resolve_device(args.device)))
    results = predictor.predict(images, top_k=args.top_k)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        for r in results:
            if r.error:
                print(f"{r.path}: error: {r.error}")
            else:
                print(f"{r.path}: " + ", ".join(f"{name} {prob:.3f}" for name, prob in r.top))
    return 1 if all(r.error for r in results) else 0
