"""One run under torchrun: two CPU processes (gloo) train real photos with DDP.

Each test launches PyTorch's own launcher as a subprocess, as a user would
(``python -m torch.distributed.run --nproc-per-node 2 -m desktop_tl train RUN.toml``),
and reads the run folder it leaves.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers_training import lite0_config, sample_subset

TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_command(*args: str, nproc: int = 2, launcher: tuple[str, ...] = ()) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        *(launcher or ("--master-port", str(free_port()))),
        "-m",
        "desktop_tl",
        "train",
        *args,
    ]


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S)


def single_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "desktop_tl", "train", *args]


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def epochs_written(run_dir: Path) -> int:
    try:
        return len(metrics(run_dir))
    except (OSError, csv.Error):
        return 0


def learning_columns(rows):
    """The columns that training decides (not the times)."""
    return [{k: row[k] for k in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")} for row in rows]


@pytest.fixture
def places(tmp_path):
    """A private runs folder and feature cache, and the environment the launches get."""
    env = dict(os.environ)
    env.update(
        DTL_RUNS_DIR=str(tmp_path / "runs"),
        DTL_CACHE_DIR=str(tmp_path / "cache"),
        DTL_ALLOW_DOWNLOAD="0",
        OMP_NUM_THREADS="1",
    )
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return tmp_path, env


def run_file(
    tmp_path: Path, *, data: Path | None = None, epochs: int = 2, device: str = "cpu", **train
) -> Path:
    data = data or sample_subset(tmp_path / "data")  # 24 training and 12 validation photos
    config = lite0_config(data, tmp_path / "unused", epochs=epochs, device=device, **train)
    config.out = ""
    config.freeze.preset = "head-only"
    path = tmp_path / "run.toml"
    config.save(path)
    return path


def kept_evaluation(run_dir: Path):
    """The evaluation of the run's best checkpoint from the scores the run kept with it."""
    from desktop_tl.core.data import PreparedData
    from desktop_tl.core.predict import Predictor

    prepared = PreparedData.load_manifest(run_dir / "split.json")
    kept = Predictor.from_run_dir(run_dir, checkpoint="best").kept_evaluation(
        list(prepared.val), prepared.root
    )
    assert kept is not None, "the best checkpoint kept no validation scores"
    return kept


def check_launch(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.parametrize("freeze", ["head-only", "last:1"])
def test_two_processes_train_one_run_like_one_process(places, freeze):
    tmp_path, env = places
    toml = run_file(tmp_path)
    check_launch(run(torchrun_command(str(toml), "--freeze", freeze, "--quiet"), env, tmp_path))
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs  # one run folder, written by rank 0 alone
    distributed = runs[0]
    log = (distributed / "run.log").read_text()
    assert "distributed: 2 processes (gloo)" in log
    assert summary(distributed)["processes"] == 2 and summary(distributed)["backend"] == "gloo"
    # The same run file without torchrun's environment: an ordinary single-process run.
    single = tmp_path / "single"
    check_launch(
        run(single_command(str(toml), "--freeze", freeze, "--quiet", "--out", str(single)), env, tmp_path)
    )
    assert "distributed:" not in (single / "run.log").read_text()
    assert "processes" not in summary(single)
    # The step of two processes covers the batch of one process's step, so the gradients
    # DDP averages are the same batch's; only batch norm statistics (per process) differ.
    assert abs(summary(distributed)["val_acc"] - summary(single)["val_acc"]) <= 0.02
    assert summary(distributed)["num_val"] == summary(single)["num_val"] == 12
    # The validation scores kept with the checkpoint are the whole split's, gathered.
    kept = kept_evaluation(distributed)
    assert kept.report.num_images == 12
    assert kept.report.accuracy == pytest.approx(summary(distributed)["best_val_acc"])
    if freeze == "head-only":
        # The features two processes extracted together are the single-process entry.
        assert "reused from an earlier run" in (single / "run.log").read_text()
        assert learning_columns(metrics(distributed)) == learning_columns(metrics(single))


def test_every_image_used_once_per_epoch_with_uneven_shards(places):
    """A flat folder split into training, validation and test images; an odd number of
    training images read as images (no feature cache), so one process has a batch fewer."""
    tmp_path, env = places
    source = sample_subset(tmp_path / "subset", n_train=12, n_val=6)
    flat = tmp_path / "flat"
    for name in ("brick", "grass"):
        (flat / name).mkdir(parents=True)
        for image in sorted([*(source / "train" / name).iterdir(), *(source / "val" / name).iterdir()]):
            shutil.copy(image, flat / name / image.name)
    (flat / "grass" / sorted(os.listdir(flat / "grass"))[0]).unlink()  # 35 images in all
    toml = run_file(tmp_path, data=flat, epochs=2)
    text = toml.read_text().replace("test_fraction = 0.0", "test_fraction = 0.2")
    toml.write_text(text)
    out = tmp_path / "run"
    check_launch(
        run(
            torchrun_command(
                str(toml),
                "--freeze",
                "last:1",
                "--feature-cache",
                "off",
                "--augment",
                "light",
                "--batch-size",
                "4",
                "--quiet",
                "--out",
                str(out),
            ),
            env,
            tmp_path,
        )
    )
    split = json.loads((out / "split.json").read_text())
    n_train, n_test = len(split["train"]), len(split["test"])
    log = (out / "run.log").read_text()
    lines = re.findall(
        r"epoch (\d): (\d+) training images, each used once, over 2 processes "
        r"\((\d+) \+ (\d+)\)",
        log,
    )
    assert [line[0] for line in lines] == ["1", "2"], log
    for _epoch, total, first, second in lines:
        assert int(total) == int(first) + int(second) == n_train
        assert abs(int(first) - int(second)) <= 1
    finished = summary(out)
    assert finished["status"] == "completed" and finished["num_test"] == n_test > 0
    assert finished["test_acc"] is not None


@pytest.mark.slow  # four launches, about half a minute
def test_resume_after_a_cancel(places):
    tmp_path, env = places
    toml = run_file(tmp_path, epochs=4)
    args = ("--freeze", "last:1", "--feature-cache", "off", "--quiet")
    uninterrupted = tmp_path / "uninterrupted"
    check_launch(run(torchrun_command(str(toml), *args, "--out", str(uninterrupted)), env, tmp_path))

    cancelled = tmp_path / "cancelled"
    launch = subprocess.Popen(
        torchrun_command(str(toml), *args, "--out", str(cancelled)),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + TIMEOUT_S
    while not epochs_written(cancelled) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(launch.pid, signal.SIGINT)  # Ctrl+C in the terminal reaches the whole group
    output, _ = launch.communicate(timeout=TIMEOUT_S)
    assert launch.returncode != 0, output
    assert summary(cancelled)["status"] == "cancelled", output
    done = json.loads((cancelled / "checkpoints" / "last" / "meta.json").read_text())["epoch"]
    assert 1 <= done < 4
    elsewhere = tmp_path / "resumed-on-one"
    shutil.copytree(cancelled, elsewhere)

    check_launch(run(torchrun_command("--resume", str(cancelled), "--quiet"), env, tmp_path))
    # The same number of processes: the run ends exactly where the uninterrupted one did.
    assert learning_columns(metrics(cancelled)) == learning_columns(metrics(uninterrupted))
    assert summary(cancelled)["status"] == "completed"

    check_launch(run(single_command("--resume", str(elsewhere), "--quiet"), env, tmp_path))
    log = (elsewhere / "run.log").read_text()
    assert "saved while training on 2 process(es) and continues on 1 at the next epoch boundary" in log
    assert summary(elsewhere)["epochs_completed"] == 4
    assert learning_columns(metrics(elsewhere))[:done] == learning_columns(metrics(uninterrupted))[:done]


def worker_pid(launcher_pid: int, rank: int) -> int | None:
    """The pid of torchrun's worker of ``rank`` (from its environment), if it runs."""
    try:
        children = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text().split()
    except OSError:
        return None
    for child in children:
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return int(child)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker through /proc")
def test_a_killed_worker_is_restarted_and_the_run_completes(places):
    tmp_path, env = places
    toml = run_file(tmp_path, epochs=4)
    out = tmp_path / "run"
    launcher = ("--max-restarts", "1", "--master-port", str(free_port()))
    command = torchrun_command(
        str(toml),
        "--freeze",
        "last:1",
        "--feature-cache",
        "off",
        "--quiet",
        "--out",
        str(out),
        launcher=launcher,
    )
    launch = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + TIMEOUT_S
    while not epochs_written(out) and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = worker_pid(launch.pid, 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    output, _ = launch.communicate(timeout=TIMEOUT_S)
    assert launch.returncode == 0, output
    assert "workers restarted by torchrun; resuming" in output
    finished = summary(out)
    assert finished["status"] == "completed" and finished["epochs_completed"] == 4
    assert [row["epoch"] for row in metrics(out)] == ["1", "2", "3", "4"]
    assert "resuming after epoch" in (out / "run.log").read_text()


def test_a_node_without_the_data_fails_at_once_naming_its_rank(places):
    """Two "machines" (two launchers, one process each) whose run files name the data
    relative to themselves; the second has no images there."""
    tmp_path, env = places
    first, second = tmp_path / "node0", tmp_path / "node1"
    sample_subset(first / "images")
    second.mkdir()
    for node in (first, second):
        toml = run_file(node, data=node / "images")
        toml.write_text(re.sub(r'path = ".*?"', 'path = "images"', toml.read_text(), count=1))
    port = str(free_port())
    launches = []
    for rank, node in enumerate((first, second)):
        launcher = (
            "--nnodes",
            "2",
            "--node-rank",
            str(rank),
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            port,
        )
        launches.append(
            subprocess.Popen(
                torchrun_command(
                    "run.toml", "--quiet", "--out", str(tmp_path / "run"), nproc=1, launcher=launcher
                ),
                env=env,
                cwd=node,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [launch.communicate(timeout=TIMEOUT_S)[0] for launch in launches]
    assert all(launch.returncode != 0 for launch in launches), outputs
    missing = str((second / "images").resolve())
    assert f"rank 1 (on {socket.gethostname()}): data path {missing} does not exist" in outputs[0], outputs[0]
    assert not (tmp_path / "run").exists()  # refused before rank 0 made its folder


@pytest.mark.cuda
def test_nccl_on_every_gpu(places):
    """One process per GPU (nccl); run with ``pytest tests/distributed -m cuda`` on a GPU machine."""
    if torch.cuda.device_count() < 2:
        pytest.skip("nccl between processes needs two GPUs or more")
    tmp_path, env = places
    toml = run_file(tmp_path, device="auto")
    out = tmp_path / "run"
    nproc = torch.cuda.device_count()
    check_launch(
        run(
            torchrun_command(str(toml), "--freeze", "last:1", "--quiet", "--out", str(out), nproc=nproc),
            env,
            tmp_path,
        )
    )
    assert f"distributed: {nproc} processes (nccl)" in (out / "run.log").read_text()
    assert summary(out)["status"] == "completed"
