"""`desktop-tl train --distributed`: accepted under torchrun, refused elsewhere with the
torchrun command line that starts the run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from desktop_tl.cli import main
from desktop_tl.core.distributed import TORCHRUN_VARIABLES

from helpers_training import lite0_config, sample_subset


@pytest.fixture
def outside_torchrun(monkeypatch, tmp_path):
    for name in ("TORCHELASTIC_RUN_ID", *TORCHRUN_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DTL_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


def test_distributed_outside_torchrun_says_how_to_start_it(outside_torchrun, capsys):
    tmp_path = outside_torchrun
    toml = tmp_path / "my run.toml"
    lite0_config(sample_subset(tmp_path / "data", n_train=2, n_val=1), tmp_path / "out").save(toml)
    assert main(["train", "--distributed", str(toml)]) == 2
    err = capsys.readouterr().err
    assert f"torchrun --nproc-per-node N -m desktop_tl train --distributed '{toml}'" in err
    assert "RANK, WORLD_SIZE, LOCAL_RANK" in err and "leave out --distributed" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()  # nothing trained


def test_distributed_resume_outside_torchrun_names_the_run_folder(outside_torchrun, capsys):
    run_dir = outside_torchrun / "run"
    assert main(["train", "--distributed", "--resume", str(run_dir)]) == 2
    assert f"-m desktop_tl train --distributed --resume {run_dir}" in capsys.readouterr().err


def test_distributed_under_torchrun_is_accepted(tmp_path):
    """One torchrun worker: the run goes on to read its run file (missing here)."""
    missing = tmp_path / "missing.toml"
    env = {k: v for k, v in os.environ.items() if k != "TORCHELASTIC_RUN_ID"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "1",
            "--master-port",
            "0",
            "-m",
            "desktop_tl",
            "train",
            "--distributed",
            str(missing),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"run file {missing} does not exist" in result.stderr, result.stderr[-2000:]
    assert "was not started by it" not in result.stderr


def test_a_worker_restarted_after_the_run_finished_leaves_it_finished(outside_torchrun, monkeypatch, capsys):
    """A worker that dies while shutting down after the last epoch makes torchrun start
    them all again: they find the run finished and stop, rather than fail to resume it."""
    tmp_path = outside_torchrun
    toml = tmp_path / "run.toml"
    out = tmp_path / "out"
    lite0_config(sample_subset(tmp_path / "data", n_train=2, n_val=1), out, epochs=1).save(toml)
    assert main(["train", str(toml), "--quiet"]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    # What torchrun sets for a worker it started again.
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "restarted")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")  # nothing listens: the run must not wait for peers
    assert main(["train", "--distributed", str(toml), "--quiet"]) == 0
    assert f"{out} had already finished" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # untouched
