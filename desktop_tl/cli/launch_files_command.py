"""``desktop-tl launch-files``: a run file with a torchrun script and a SLURM template,
to train the run on another machine or a cluster."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "launch-files",
        help="write a run file, a torchrun script and a SLURM template to train elsewhere",
        description="Write RUN.toml's run, launch_torchrun.sh (one machine, several processes "
        "or GPUs), slurm_job.sbatch (a SLURM cluster) and README.txt into DIR.",
    )
    parser.add_argument("run_file", metavar="RUN.toml", help="a run or project file")
    parser.add_argument("--to", required=True, metavar="DIR", help="the folder to write into")
    parser.add_argument(
        "--nproc", type=int, default=1, metavar="N", help="processes per machine: one per GPU (default: 1)"
    )
    parser.add_argument("--nodes", type=int, default=1, metavar="M", help="machines, for SLURM (default: 1)")
    parser.add_argument("--cpu", action="store_true", help="CPU processes (gloo), no GPUs")
    parser.add_argument(
        "--data-path",
        metavar="PATH",
        help="the data folder on the other machine (default: the data's path relative to DIR)",
    )
    parser.add_argument(
        "--time", default="04:00:00", metavar="HH:MM:SS", help="SLURM time limit (default: 04:00:00)"
    )
    parser.add_argument(
        "--max-restarts",
        type=int,
        default=3,
        metavar="K",
        help="torchrun restarts of dead workers (default: 3)",
    )
    parser.add_argument("--replace", action="store_true", help="replace launch files already in DIR")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..core.config import RunConfig
    from ..core.launch_files import LaunchPlan, write_launch_files
    from .paths import check_path

    check_path(args.run_file, "RUN.toml")
    check_path(args.to, "--to")
    config = RunConfig.load(args.run_file)
    plan = LaunchPlan(
        processes_per_node=args.nproc,
        nodes=args.nodes,
        gpus=not args.cpu,
        data_path=args.data_path or "",
        device="cpu" if args.cpu else "auto",
        max_restarts=args.max_restarts,
        time_limit=args.time,
    )
    written = write_launch_files(config, args.to, plan, replace=args.replace)
    for path in written.paths:
        print(path)
    for note in written.notes:
        print(f"note: {note}")
    return 0
