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
    parser.add_argument(
        "--csv",
        metavar="FILE.csv",
        help="also write the predictions as a table: path, then label and probability for each of the top K",
    )
    parser.add_argument(
        "--explain",
        metavar="DIR",
        help="write a Grad-CAM heat map over each image, for its predicted class, as DIR/<image>.<class>.png",
    )
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
    if args.csv and not args.csv.lower().endswith(".csv"):
        raise UserError("--csv must name a .csv file")
    if args.explain and Path(args.explain).exists() and not Path(args.explain).is_dir():
        raise UserError(f"--explain {args.explain} is a file; give a folder for the heat maps")
    predictor = Predictor.from_run_dir(args.run_dir, device=str(resolve_device(args.device)))
    results = predictor.predict(images, top_k=args.top_k)
    if args.csv:
        from ..core.predict import write_predictions_csv

        write_predictions_csv(Path(args.csv), results, min(args.top_k, len(predictor.class_names)))
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        for r in results:
            if r.error:
                print(f"{r.path}: error: {r.error}")
            else:
                print(f"{r.path}: " + ", ".join(f"{name} {prob:.3f}" for name, prob in r.top))
    if args.explain:
        _write_explanations(Path(args.explain), predictor, results)
    return 1 if all(r.error for r in results) else 0


def _write_explanations(folder: Path, predictor, results) -> None:
    import sys

    from ..core.explain import Explainer
    from ..core.images import open_rgb

    explainer = Explainer(
        predictor.model, predictor.class_names, predictor.preprocessing, backbone_name="this run's backbone"
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {folder}: {exc.strerror or exc}") from None
    used: set[str] = set()
    for r in results:
        if r.error:
            continue
        try:
            (explanation,) = explainer.explain(r.path)
            image = open_rgb(r.path)
        except UserError as exc:
            print(f"{r.path}: no heat map: {exc}", file=sys.stderr)
            continue
        stem = Path(r.path).stem
        name, n = f"{stem}.{explanation.class_name}.png", 1
        while name in used:  # same file name in two folders
            n += 1
            name = f"{stem}-{n}.{explanation.class_name}.png"
        used.add(name)
        try:
            explanation.overlay(image).save(folder / name)
        except OSError as exc:
            raise UserError(f"cannot write {folder / name}: {exc.strerror or exc}") from None
