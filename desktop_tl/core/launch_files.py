"""Files that run a configured run on another machine: the run file, a torchrun launch
script for one machine with several processes (GPUs), and a SLURM batch template.

The scripts start PyTorch's own launcher (``torchrun``) on ``desktop-tl train
--distributed``; nothing here launches or talks to anything. The run file is the window's
configuration with the data path as the other machine will see it (by default relative
to the folder written, so the folder and the data can move together).
"""

from __future__ import annotations

import copy
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from .atomic import atomic_write_text
from .config import DEVICES, ConfigError, RunConfig

RUN_FILE = "run.toml"
TORCHRUN_SCRIPT = "launch_torchrun.sh"
SLURM_SCRIPT = "slurm_job.sbatch"
README = "README.txt"
FILE_NAMES = (RUN_FILE, TORCHRUN_SCRIPT, SLURM_SCRIPT, README)
RENDEZVOUS_PORT = 29500
_SLURM_TIME = re.compile(r"^(\d+-)?\d{1,3}(:\d\d){0,2}$")


@dataclass
class LaunchPlan:
    """How the run is to be started elsewhere."""

    processes_per_node: int = 1  # one per GPU, or a few on a CPU-only machine
    nodes: int = 1  # machines, for the SLURM template
    gpus: bool = True  # a process per GPU (nccl); False: CPU processes (gloo)
    data_path: str = ""  # the data folder on the other machine; "": relative to the destination
    device: str = "auto"  # train.device in the run file written
    max_restarts: int = 3  # torchrun brings dead workers back this often; the run resumes
    time_limit: str = "04:00:00"  # SLURM --time
    freeze_schedule: list[dict[str, Any]] | None = None  # None: the configuration's own
    notes: list[str] = field(default_factory=list)  # filled in: what the user should know

    def check(self) -> None:
        for name, value, low, high in (
            ("processes per node", self.processes_per_node, 1, 1024),
            ("nodes", self.nodes, 1, 100_000),
            ("max restarts", self.max_restarts, 0, 1000),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
        if self.device not in DEVICES or self.device == "mps":
            raise ConfigError(
                f"device {self.device!r} is not one a distributed run trains on; choose auto, cuda or cpu"
            )
        if self.gpus and self.device == "cpu":
            raise ConfigError(
                "device cpu with one process per GPU; choose device auto or cuda, or CPU processes"
            )
        if not _SLURM_TIME.match(self.time_limit):
            raise ConfigError(
                f"time limit {self.time_limit!r} is not a SLURM time; write HH:MM:SS or D-HH:MM:SS, e.g. 04:00:00"
            )


@dataclass
class WrittenLaunchFiles:
    folder: Path
    paths: list[Path]
    config: RunConfig  # the run file's configuration, as written
    notes: list[str]  # what to check on the other machine


def existing_launch_files(folder: Path) -> list[Path]:
    """The files :func:`write_launch_files` would replace in ``folder``."""
    return [Path(folder) / name for name in FILE_NAMES if (Path(folder) / name).exists()]


def launch_config(config: RunConfig, folder: Path, plan: LaunchPlan) -> tuple[RunConfig, list[str]]:
    """The run file's configuration for ``folder`` and what to know about it."""
    notes: list[str] = []
    out = copy.deepcopy(config)
    out.out = ""  # the scripts name the run folder (--out), the same on every node
    out.train.device = plan.device
    if plan.freeze_schedule is not None:
        out.freeze.schedule = copy.deepcopy(plan.freeze_schedule)
    if plan.data_path:
        out.data.path = plan.data_path
        if not Path(plan.data_path).is_absolute():
            notes.append(f"data path {plan.data_path} is taken relative to the folder of {RUN_FILE}")
    else:
        if not config.data.path:
            raise ConfigError("this run has no data folder yet; choose the data first")
        data = Path(config.data.path).expanduser().resolve()
        try:
            out.data.path = Path(os.path.relpath(data, Path(folder).resolve())).as_posix()
        except ValueError:  # another drive (Windows): no relative path leads there
            out.data.path = str(data)
            notes.append(f"the data is on another drive than {folder}; its path is written as {data}")
        else:
            notes.append(
                f"data path {out.data.path} (relative to {RUN_FILE}): keep the data at that place "
                "beside the folder, or edit [data] path in run.toml"
            )
    if out.model.weights not in ("auto", "none"):
        notes.append(f"weights file {out.model.weights} must exist at that path on the other machine")
    out.validate()
    return out, notes


def torchrun_script(plan: LaunchPlan) -> str:
    """A bash script that trains ``run.toml`` on this machine with torchrun."""
    one_per = "one per GPU" if plan.gpus else "on the CPU"
    return f"""#!/usr/bin/env bash
# Trains run.toml on this machine with {plan.processes_per_node} processes ({one_per})
# through PyTorch's launcher, torchrun; one run folder, under runs/ beside this script.
# Edit NPROC (or set it: NPROC=4 ./{TORCHRUN_SCRIPT}); extra arguments go to
# `desktop-tl train`, e.g. --epochs 20. torchrun must be the one of the Python
# environment desktop-tl is installed in (or set TORCHRUN=/path/to/torchrun).
set -euo pipefail
cd "$(dirname "$0")"
NPROC="${{NPROC:-{plan.processes_per_node}}}"
TORCHRUN="${{TORCHRUN:-torchrun}}"
# Fixed before torchrun starts, so workers it restarts continue this same run.
RUN_DIR="${{RUN_DIR:-runs/run-$(date +%Y%m%d-%H%M%S)}}"
"$TORCHRUN" --standalone --nproc-per-node "$NPROC" --max-restarts {plan.max_restarts} \\
    -m desktop_tl train --distributed {RUN_FILE} --out "$RUN_DIR" "$@"
"""


def slurm_script(plan: LaunchPlan) -> str:
    """A SLURM batch template: one torchrun per node, meeting on the first node."""
    gpus = f"#SBATCH --gpus-per-node={plan.processes_per_node}\n" if plan.gpus else ""
    return f"""#!/bin/bash
# SLURM batch job: trains run.toml on {plan.nodes} node(s) with {plan.processes_per_node}
# process(es) each. Submit from this folder: cd THIS_FOLDER && sbatch {SLURM_SCRIPT}
# Edit the #SBATCH lines for your cluster (partition, account, CPUs), and the line
# that makes desktop-tl's Python environment available. The folder must be on a file
# system every node sees (the run folder is written by the first process only).
#SBATCH --job-name=desktop-tl
#SBATCH --nodes={plan.nodes}
#SBATCH --ntasks-per-node=1
{gpus}#SBATCH --cpus-per-task=8
#SBATCH --time={plan.time_limit}
#SBATCH --output=slurm-%j.out
##SBATCH --partition=YOUR_PARTITION
##SBATCH --account=YOUR_ACCOUNT

set -euo pipefail
# source /path/to/venv/bin/activate    # or: module load ...; conda activate ...
cd "$SLURM_SUBMIT_DIR"
NPROC_PER_NODE={plan.processes_per_node}
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
# The same on every node, so that workers torchrun restarts continue this run.
RUN_DIR="${{RUN_DIR:-runs/run-$SLURM_JOB_ID}}"
srun torchrun \\
    --nnodes "$SLURM_NNODES" \\
    --nproc-per-node "$NPROC_PER_NODE" \\
    --max-restarts {plan.max_restarts} \\
    --rdzv-id "$SLURM_JOB_ID" \\
    --rdzv-backend c10d \\
    --rdzv-endpoint "$head_node:{RENDEZVOUS_PORT}" \\
    -m desktop_tl train --distributed {RUN_FILE} --out "$RUN_DIR" --quiet
"""


def readme_text(config: RunConfig, plan: LaunchPlan, notes: list[str]) -> str:
    schedule = config.freeze.schedule
    lines = [
        "This folder runs one desktop-tl training run on another machine, with PyTorch's",
        "launcher (torchrun) and DistributedDataParallel.",
        "",
        f"{RUN_FILE}          the run: data, model, freeze map, training settings.",
        f"                  [data] path = {config.data.path}",
        f"{TORCHRUN_SCRIPT}  one machine, {plan.processes_per_node} process(es): ./{TORCHRUN_SCRIPT}",
        f"{SLURM_SCRIPT}  a SLURM cluster, {plan.nodes} node(s): sbatch {SLURM_SCRIPT}",
        "",
        "Before running it there:",
        "- install desktop-tl in a Python environment on that machine (with the same backbone",
        "  plugins), and make its torchrun the one the scripts call;",
        "- put the data where [data] path in run.toml says (a relative path is taken from",
        "  this folder), or edit that line;",
        "- in slurm_job.sbatch, edit the #SBATCH lines and the environment line for your cluster.",
        "",
        "Each start makes a run folder under runs/ (set RUN_DIR to choose it). A worker that",
        f"dies is started again by torchrun (up to {plan.max_restarts} times) and the run continues",
        "from its last checkpoint. To continue a stopped run, from this folder:",
        "    torchrun --standalone --nproc-per-node N -m desktop_tl train --distributed --resume runs/RUN",
        "Open the run folder in the window (Runs view, add folder) to see its results.",
        "",
        "Live freeze changes do not reach a distributed run; the run file's freeze.schedule does.",
    ]
    if schedule:
        lines.append("This run's schedule:")
        for entry in schedule:
            changes = ", ".join(f"{k} {'trainable' if v else 'frozen'}" for k, v in entry["changes"].items())
            lines.append(f"    at the start of epoch {entry['epoch']}: {changes}")
    if notes:
        lines += ["", "Check:", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def write_launch_files(
    config: RunConfig, folder: str | Path, plan: LaunchPlan, *, replace: bool = False
) -> WrittenLaunchFiles:
    """Write the run file, both scripts and a README into ``folder`` (made if needed).

    Refuses to replace files already there unless ``replace``."""
    plan.check()
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file; choose a folder to write the launch files into")
    existing = existing_launch_files(folder)
    if existing and not replace:
        raise UserError(
            f"{folder} already has {', '.join(p.name for p in existing)}; choose another "
            "folder, or replace them (--replace)"
        )
    out, notes = launch_config(config, folder, plan)
    notes = [*notes, *plan.notes]
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text, executable in (
        (RUN_FILE, out.to_toml(), False),
        (TORCHRUN_SCRIPT, torchrun_script(plan), True),
        (SLURM_SCRIPT, slurm_script(plan), True),
        (README, readme_text(out, plan, notes), False),
    ):
        path = folder / name
        atomic_write_text(path, text)
        if executable:
            mode = path.stat().st_mode
            path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        written.append(path)
    return WrittenLaunchFiles(folder, written, out, notes)


def schedule_from_freeze_changes(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A freeze schedule that repeats a run's live freeze changes (its summary's
    ``freeze_changes``) at the start of the epochs they took effect in; changes of one
    epoch stay separate entries, applied in their order. Changes the run's own schedule
    made are left out: that schedule is in the run file already."""
    return [
        {"epoch": change["epoch"], "changes": dict(change["changes"])}
        for change in changes
        if isinstance(change.get("epoch"), int) and change.get("changes") and not change.get("scheduled")
    ]
