"""``desktop-tl gui``: open the desktop window (also what ``desktop-tl`` alone does)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "gui",
        help="open the desktop window",
        description="Open the desktop window, optionally with a project (a run file) or "
        "the bundled sample dataset. With --run it trains straight away; with "
        "--exit-when-done, --screenshot and --report it is a scripted smoke test that "
        "works without a display (QT_QPA_PLATFORM=offscreen).",
    )
    parser.add_argument("project", nargs="?", metavar="PROJECT.toml", help="a project or run file to open")
    parser.add_argument(
        "--demo", action="store_true", help="open the sample dataset with EfficientNet-Lite0, ready to train"
    )
    parser.add_argument(
        "--run", dest="start_run", action="store_true", help="start training as soon as the window is ready"
    )
    parser.add_argument(
        "--exit-when-done",
        action="store_true",
        help="close when the run has finished (exit status 0 if it completed)",
    )
    parser.add_argument(
        "--screenshot", metavar="FILE.png", help="save a picture of the window when the run has finished"
    )
    parser.add_argument(
        "--report", metavar="FILE.json", help="write a JSON report of the run and the window's responsiveness"
    )
    parser.add_argument(
        "--size",
        metavar="WxH",
        help="open the window at this size, e.g. 1024x640 (the report then "
        "lists layout problems at that size)",
    )
    parser.add_argument(
        "--epochs", type=int, metavar="N", help="override the number of epochs of the project or demo"
    )
    parser.add_argument(
        "--settings",
        metavar="FILE.ini",
        help="keep the window's settings in this file instead of the user's (for scripted runs)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    scripted = args.start_run or args.exit_when_done
    if scripted and not (args.project or args.demo):
        raise UserError("--run and --exit-when-done need something to train: give PROJECT.toml or --demo")
    if args.project and args.demo:
        raise UserError("give either PROJECT.toml or --demo, not both")
    if args.project and not Path(args.project).is_file():
        raise UserError(f"project file {args.project} does not exist")
    if args.epochs is not None and args.epochs < 1:
        raise UserError("--epochs must be at least 1")
    if args.screenshot and not args.screenshot.lower().endswith((".png", ".jpg", ".jpeg")):
        raise UserError("--screenshot must name a .png or .jpg file")
    size = parse_size(args.size) if args.size else None
    from ..display_check import display_problem

    problem = display_problem()  # before Qt, which would abort with a bare message
    if problem:
        raise UserError(problem)
    from ..gui.app import run_gui  # Qt is imported only when the window is wanted

    return run_gui(
        args.project,
        demo=args.demo,
        start_run=args.start_run,
        exit_when_done=args.exit_when_done,
        screenshot=args.screenshot,
        report=args.report,
        epochs=args.epochs,
        settings_path=args.settings,
        size=size,
    )


def parse_size(text: str) -> tuple[int, int]:
    """``"1024x640"`` as (1024, 640), or a UserError saying how to write it."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UserError(f"--size {text!r} is not WIDTHxHEIGHT in pixels; write e.g. 1024x640")
    width, height = (int(p) for p in parts)
    if width < 200 or height < 150:
        raise UserError(f"--size {text} is too small for the window; give at least 200x150")
    return width, height
