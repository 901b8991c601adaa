"""``desktop-tl train``: a headless run from a run file and/or flags."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from ..core.config import ConfigError, RunConfig, parse_freeze_preset
from .paths import check_path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model without the window",
        description="Train a model. Flags override the values in RUN.toml.",
    )
    parser.add_argument("run_file", nargs="?", metavar="RUN.toml", help="a run or project file")
    parser.add_argument("--data", metavar="DIR", help="dataset folder or manifest file")
    parser.add_argument("--loader", metavar="ID", help="dataset loader id (default: auto)")
    parser.add_argument("--backbone", metavar="NAME", help="model name or provider:model")
    parser.add_argument("--weights", metavar="auto|none|FILE", help="pretrained weights")
    parser.add_argument("--head", metavar="ID", help="classifier head type (linear, mlp, ...)")
    parser.add_argument("--freeze", metavar="PRESET", help="head-only, none or last:N")
    parser.add_argument("--epochs", type=int, metavar="N")
    parser.add_argument("--batch-size", type=int, metavar="N")
    parser.add_argument("--lr", type=float, metavar="X", help="head learning rate")
    parser.add_argument("--backbone-lr-mult", type=float, metavar="X")
    parser.add_argument("--optimizer", choices=("adam", "adamw", "sgd"))
    parser.add_argument("--schedule", choices=("none", "cosine", "step"))
    parser.add_argument("--augment", choices=("none", "light", "strong"))
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--feature-cache", choices=("auto", "off"))
    parser.add_argument("--seed", type=int, metavar="N")
    parser.add_argument("--out", metavar="RUN_DIR", help="run folder to create")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    parser.add_argument(
        "--demo", action="store_true", help="the bundled sample dataset with EfficientNet-Lite0"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="train as one of the processes torchrun starts "
        "(torchrun --nproc-per-node N -m desktop_tl train --distributed RUN.toml); "
        "refused when torchrun did not start this process",
    )
    parser.set_defaults(run=run)


_FLAGS = {
    "data": ("data", "path"),
    "loader": ("data", "loader"),
    "augment": ("data", "augment"),
    "backbone": ("model", "backbone"),
    "weights": ("model", "weights"),
    "head": ("model", "head"),
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "lr": ("train", "lr"),
    "backbone_lr_mult": ("train", "backbone_lr_mult"),
    "optimizer": ("train", "optimizer"),
    "schedule": ("train", "schedule"),
    "device": ("train", "device"),
    "precision": ("train", "precision"),
    "feature_cache": ("train", "feature_cache"),
    "seed": ("train", "seed"),
}


def config_from_args(args: argparse.Namespace) -> tuple[RunConfig, bool]:
    """The run configuration the flags describe, and whether it resumes a run."""
    for value, what in (
        (args.run_file, "RUN.toml"),
        (args.data, "--data"),
        (args.out, "--out"),
        (args.resume, "--resume"),
        (args.weights, "--weights"),
    ):
        if value:
            check_path(value, what)
    if args.resume:
        if args.run_file or args.demo:
            raise ConfigError("--resume continues a run folder; give no RUN.toml or --demo with it")
        run_dir = Path(args.resume)
        if not (run_dir / "run.toml").exists():
            raise ConfigError(f"{run_dir} is not a run folder (no run.toml); nothing to resume")
        ignored = [
            f"--{flag.replace('_', '-')}"
            for flag in (*_FLAGS, "freeze", "out")
            if flag != "epochs" and getattr(args, flag) is not None
        ]
        if ignored:
            raise ConfigError(
                f"--resume continues a run exactly as it was configured; only --epochs may "
                f"change, so drop {', '.join(ignored)}"
            )
        config = RunConfig.load(run_dir / "run.toml")
        if args.epochs is not None:
            config.train.epochs = args.epochs
        config.out = str(run_dir)
        config.validate()
        return config, True
    from ..resources import DEMO_BACKBONE, demo_config, sample_dataset_dir

    if args.run_file:
        config = RunConfig.load(args.run_file)
    else:  # the window's demo run, unless flags change it
        config = demo_config() if args.demo else RunConfig()
    if args.run_file and config.out and Path(config.out).resolve() == Path(args.run_file).resolve().parent:
        config.out = ""  # re-running a run's own run.toml makes a new run beside it, never over it
    if args.demo:
        config.data.path = str(sample_dataset_dir())
        config.model.backbone = DEMO_BACKBONE
    for flag, (section, key) in _FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            setattr(getattr(config, section), key, value)
    if args.freeze is not None:
        parse_freeze_preset(args.freeze)
        config.freeze.preset = args.freeze
        config.freeze.overrides = {}
    if args.out:
        config.out = str(Path(args.out).resolve())
    if args.data is not None:
        config.data.path = str(Path(args.data).resolve())
    if args.weights not in (None, "auto", "none"):
        weights = Path(args.weights)
        if not weights.is_file():
            raise ConfigError(f"weights file {weights} does not exist")
        config.model.weights = str(weights.resolve())
    if not config.data.path:
        raise ConfigError(
            "no data given: pass --data DIR (a folder with one subfolder per class), "
            "a RUN.toml with [data] path, or --demo"
        )
    check_path(config.data.path, "data.path")
    if config.out:
        check_path(config.out, "out")
    config.validate()
    return config, False


def _refuse_an_unwritable_runs_folder(config: RunConfig, resume: bool) -> None:
    """Before any image is read, as a locked-down machine meets it on the first start."""
    from .. import first_start

    if not resume and not config.out:
        problem = first_start.runs_folder_problem()
        if problem:
            raise ConfigError(f"{problem}; or give --out DIR")


def _refuse_distributed_outside_torchrun(args: argparse.Namespace) -> None:
    from ..core.distributed import in_torchrun_environment, not_launched_message

    if args.distributed and not in_torchrun_environment():
        what = (
            f"--resume {shlex.quote(args.resume)}"
            if args.resume
            else shlex.quote(args.run_file or "RUN.toml")
        )
        raise ConfigError(not_launched_message(what))


def _run_already_finished(run_dir: Path, epochs: int) -> bool:
    """Whether the run in ``run_dir`` wrote its final summary: all ``epochs`` done, or
    stopped early."""
    from ..core.resuming import summary_is_final
    from ..core.run_folder import read_summary

    try:
        summary = read_summary(run_dir)
    except (OSError, ValueError):
        return False  # unreadable: resuming says what is wrong with the folder
    if not isinstance(summary, dict):
        return False
    return summary_is_final(summary, epochs) or summary.get("status") == "early-stopped"


def run(args: argparse.Namespace) -> int:
    _refuse_distributed_outside_torchrun(args)
    from ..core.distributed import environment_rank, restarted_by_torchrun
    from ..core.training import Trainer
    from .progress import ProgressPrinter

    # Under torchrun only rank 0 shows progress and the result; every rank reports a failure.
    main_process = environment_rank() == 0

    config, resume = config_from_args(args)
    if not resume and restarted_by_torchrun() and config.out and (Path(config.out) / "run.toml").exists():
        # torchrun brought a dead worker back: continue the run its first start made.
        out = config.out
        config = RunConfig.load(Path(out) / "run.toml")
        if _run_already_finished(Path(out), config.train.epochs):
            # A worker died after the run had finished (while shutting down): there is
            # nothing left to train, and resuming would refuse the finished run.
            if main_process:
                print(f"desktop-tl train: workers restarted by torchrun; {out} had already finished")
            return 0
        config.out, resume = out, True
        if main_process:
            print(f"desktop-tl train: workers restarted by torchrun; resuming {config.out}", file=sys.stderr)
    _refuse_an_unwritable_runs_folder(config, resume)
    # The printer shows the engine's warnings itself; without a logging set-up of the
    # user's, Python would print each one a second time.
    logging.getLogger("desktop_tl.engine").addHandler(logging.NullHandler())
    printer = ProgressPrinter(enabled=not args.quiet and main_process)
    trainer = Trainer(config, on_event=printer if main_process else None, resume=resume)
    try:
        finished = trainer.run()
    except KeyboardInterrupt:
        printer.close()
        raise
    printer.close()
    summary = finished.summary
    if finished.status in ("completed", "early-stopped"):
        if not main_process:
            return 0
        acc = summary.get("val_acc")
        best = summary.get("best_val_acc")
        print(
            f"{finished.status}: {summary.get('epochs_completed')} epochs, "
            f"val_acc {acc:.3f} (best {best:.3f}) in {summary.get('train_seconds', 0):.1f}s; "
            f"run folder: {finished.run_dir}"
        )
        return 0
    where = f" (run folder: {finished.run_dir})" if finished.run_dir else ""
    log_file = Path(finished.run_dir) / "run.log" if finished.run_dir else None
    if finished.status == "failed" and log_file is not None and log_file.is_file():
        where = f" (details in {log_file})"
    rank = "" if main_process else f" (rank {environment_rank()})"
    print(f"desktop-tl train{rank}: {finished.status}: {finished.reason}{where}", file=sys.stderr)
    return 1 if finished.status == "failed" else 130
