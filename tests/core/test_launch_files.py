"""Launch files for running a run elsewhere: the run file, the torchrun script and the
SLURM template, checked as files and by running the torchrun script for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_tl.core.config import ConfigError, RunConfig
from desktop_tl.core.launch_files import (
    LaunchPlan,
    existing_launch_files,
    schedule_from_freeze_changes,
    write_launch_files,
)
from desktop_tl.errors import UserError

from helpers_training import lite0_config, sample_subset

SCHEDULE = [{"epoch": 2, "changes": {"backbone.top": True}}]


@pytest.fixture
def window_config(tmp_path):
    """A run as the window holds it: an absolute data path, its own output folder."""
    config = lite0_config(sample_subset(tmp_path / "lab" / "photos"), tmp_path / "lab" / "out", epochs=1)
    config.freeze.preset = "head-only"
    config.train.device = "cpu"
    return config


def test_the_run_file_loads_back_as_the_same_run_with_the_data_found_from_the_folder(window_config, tmp_path):
    window_config.train.epochs = 3
    dest = tmp_path / "cluster" / "job"
    plan = LaunchPlan(processes_per_node=4, nodes=2, freeze_schedule=SCHEDULE, device="auto")
    written = write_launch_files(window_config, dest, plan)
    assert [p.name for p in written.paths] == [
        "run.toml",
        "launch_torchrun.sh",
        "slurm_job.sbatch",
        "README.txt",
    ]
    text = (dest / "run.toml").read_text()
    assert 'path = "../../lab/photos"' in text  # relative: folder and data move together
    loaded = RunConfig.load(dest / "run.toml")
    assert Path(loaded.data.path) == Path(window_config.data.path).resolve()
    assert (Path(loaded.data.path) / "train" / "brick").is_dir()
    assert loaded.freeze.schedule == SCHEDULE and loaded.out == "" and loaded.train.device == "auto"
    expected = window_config.to_dict()
    expected["data"]["path"] = loaded.data.path
    expected["freeze"]["schedule"] = SCHEDULE
    expected["out"], expected["train"]["device"] = "", "auto"
    assert loaded.to_dict() == expected


def test_the_scripts_start_torchrun_on_the_run_file(window_config, tmp_path):
    dest = tmp_path / "out"
    write_launch_files(
        window_config, dest, LaunchPlan(processes_per_node=4, nodes=3, time_limit="1-12:00:00")
    )
    local = (dest / "launch_torchrun.sh").read_text()
    assert 'cd "$(dirname "$0")"' in local
    assert 'NPROC="${NPROC:-4}"' in local
    assert '--standalone --nproc-per-node "$NPROC" --max-restarts 3' in local
    assert '-m desktop_tl train --distributed run.toml --out "$RUN_DIR"' in local
    slurm = (dest / "slurm_job.sbatch").read_text()
    for line in (
        "#SBATCH --nodes=3",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --time=1-12:00:00",
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        '--nnodes "$SLURM_NNODES"',
        "--rdzv-backend c10d",
        '--rdzv-endpoint "$head_node:29500"',
        '-m desktop_tl train --distributed run.toml --out "$RUN_DIR"',
    ):
        assert line in slurm, line
    for script in ("launch_torchrun.sh", "slurm_job.sbatch"):
        assert os.access(dest / script, os.X_OK)
        check = subprocess.run(["bash", "-n", str(dest / script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    readme = (dest / "README.txt").read_text()
    assert "edit the #SBATCH lines" in readme and "[data] path = ../lab/photos" in readme


def test_cpu_processes_and_a_data_path_for_the_other_machine(window_config, tmp_path):
    plan = LaunchPlan(processes_per_node=8, gpus=False, device="cpu", data_path="/scratch/photos")
    written = write_launch_files(window_config, tmp_path / "out", plan)
    assert "--gpus-per-node" not in (tmp_path / "out" / "slurm_job.sbatch").read_text()
    assert 'path = "/scratch/photos"' in (tmp_path / "out" / "run.toml").read_text()
    assert written.config.train.device == "cpu"


def test_bad_plans_and_existing_files_are_refused(window_config, tmp_path):
    with pytest.raises(ConfigError, match="processes per node must be a whole number from 1"):
        write_launch_files(window_config, tmp_path / "a", LaunchPlan(processes_per_node=0))
    with pytest.raises(ConfigError, match="not one a distributed run trains on"):
        write_launch_files(window_config, tmp_path / "a", LaunchPlan(device="mps"))
    with pytest.raises(ConfigError, match="is not a SLURM time"):
        write_launch_files(window_config, tmp_path / "a", LaunchPlan(time_limit="4 hours"))
    with pytest.raises(
        ConfigError, match="freeze.schedule entry 1: epoch = 2 is outside the run's epochs 1 to 1"
    ):
        write_launch_files(window_config, tmp_path / "a", LaunchPlan(freeze_schedule=SCHEDULE))
    assert not (tmp_path / "a").exists()
    write_launch_files(window_config, tmp_path / "b", LaunchPlan())
    assert len(existing_launch_files(tmp_path / "b")) == 4
    with pytest.raises(UserError, match="already has run.toml, launch_torchrun.sh"):
        write_launch_files(window_config, tmp_path / "b", LaunchPlan())
    write_launch_files(window_config, tmp_path / "b", LaunchPlan(processes_per_node=2), replace=True)
    assert 'NPROC="${NPROC:-2}"' in (tmp_path / "b" / "launch_torchrun.sh").read_text()


def test_a_schedule_from_a_runs_freeze_changes():
    changes = [
        {"step": 9, "epoch": 2, "changes": {"backbone.blocks": True}, "trainable_params": 1},
        {"step": 11, "epoch": 2, "changes": {"backbone.blocks.0": False}, "trainable_params": 1},
        {"step": 30, "epoch": 4, "changes": {"backbone": True}, "trainable_params": 1},
    ]
    assert schedule_from_freeze_changes(changes) == [
        {"epoch": 2, "changes": {"backbone.blocks": True}},
        {"epoch": 2, "changes": {"backbone.blocks.0": False}},
        {"epoch": 4, "changes": {"backbone": True}},
    ]


def test_the_torchrun_script_trains_one_run_on_two_cpu_processes(window_config, tmp_path):
    """The folder as the other machine gets it: moved along with its data."""
    dest = tmp_path / "lab" / "elsewhere"
    write_launch_files(window_config, dest, LaunchPlan(processes_per_node=2, gpus=False, device="cpu"))
    moved = tmp_path / "other-machine"
    shutil.move(tmp_path / "lab", moved)
    env = dict(os.environ)
    env.update(
        TORCHRUN=str(Path(sys.executable).with_name("torchrun")),
        DTL_CACHE_DIR=str(tmp_path / "cache"),
        DTL_ALLOW_DOWNLOAD="0",
        OMP_NUM_THREADS="1",
    )
    env.pop("TORCHELASTIC_RUN_ID", None)
    result = subprocess.run(
        [str(moved / "elsewhere" / "launch_torchrun.sh"), "--quiet"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    # The first lines say what failed first; torchrun's summary comes last.
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[:6000] + result.stderr[-3000:]
    runs = list((moved / "elsewhere" / "runs").iterdir())
    assert len(runs) == 1, runs
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["processes"] == 2
    assert summary["epochs_completed"] == 1


def test_only_live_changes_are_offered_as_a_schedule():
    from desktop_tl.core.launch_files import schedule_from_freeze_changes

    changes = [
        {"step": 4, "epoch": 2, "changes": {"backbone.top": True}, "scheduled": True},  # the file's own
        {"step": 9, "epoch": 3, "changes": {"backbone.blocks.6": True}},  # made while it trained
    ]
    assert schedule_from_freeze_changes(changes) == [{"epoch": 3, "changes": {"backbone.blocks.6": True}}]
