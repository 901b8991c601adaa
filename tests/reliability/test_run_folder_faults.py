"""Faults a hostile tester found in the run folder: a dataset that went away, a full or
read-only disk, two runs in one folder, file permissions, Ctrl+C in the first epoch, a kill
during the last checkpoint save and the temporary folders a kill leaves behind.

Full and read-only disks are real: a small tmpfs, and a read-only bind mount. They need
root (mount); elsewhere those tests are skipped with that reason.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from desktop_tl.cli import main
from desktop_tl.core import events as ev
from desktop_tl.core.atomic import atomic_write_text
from desktop_tl.core.run_folder import run_in_progress
from desktop_tl.core.training import Trainer

from helpers_disks import read_only, small_disk
from helpers_training import lite0_config, sample_subset


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return sample_subset(tmp_path_factory.mktemp("photos"), n_train=4, n_val=2)


def config(data, out, epochs=1, **train):
    return lite0_config(data, out, epochs=epochs, seed=3, **train)


def recorder():
    seen: list = []
    return seen, seen.append


def log_lines(events, *levels):
    return [e.message for e in events if isinstance(e, ev.LogMessage) and e.level in levels]


def fill_disk(mount: Path, leave_bytes: int) -> None:
    """Write a filler file so that only about ``leave_bytes`` stay free."""
    free = shutil.disk_usage(mount).free
    chunk = b"\0" * 2**20
    remaining = max(0, free - leave_bytes)
    with open(mount / "filler", "wb") as handle:
        while remaining > 0:
            try:
                handle.write(chunk[: min(len(chunk), remaining)])
                handle.flush()
            except OSError:
                break
            remaining -= min(len(chunk), remaining)


def one_clear_line(captured_err: str) -> str:
    lines = [line for line in captured_err.splitlines() if line.strip()]
    assert "Traceback" not in captured_err and 'File "' not in captured_err, captured_err
    assert len(lines) == 1, captured_err
    return lines[0]


def train_cli(data, out, *extra):
    return main(
        [
            "train",
            "--data",
            str(data),
            "--backbone",
            "efficientnet_lite0",
            "--head",
            "linear",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--seed",
            "3",
            "--out",
            str(out),
            "--quiet",
            *extra,
        ]
    )


# ---------------------------------------------------------------- 3: dataset moved


def test_resume_after_the_dataset_moved_says_the_folder_is_missing_and_keeps_the_summary(photos, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(photos, data)
    out = tmp_path / "run"
    assert Trainer(config(data, out)).run().status == "completed"
    before = (out / "summary.json").read_text()
    data.rename(tmp_path / "data-moved")

    events, on_event = recorder()
    finished = Trainer(config(data, out, epochs=2), on_event=on_event, resume=True).run()

    assert finished.status == "failed"
    assert str(data) in finished.reason and "missing" in finished.reason
    assert "put it back" in finished.reason
    assert log_lines(events, "warning") == []  # no warning per image
    assert not any("Traceback" in m for m in log_lines(events, "error", "warning", "info"))
    assert (out / "summary.json").read_text() == before


# ---------------------------------------------------------------- 4: full and read-only disks


def test_a_checkpoint_that_does_not_fit_gives_one_clear_line_naming_what_to_free(photos, tmp_path, capsys):
    # Room for one checkpoint of this model (about 14 MB) but not for the second.
    with small_disk(tmp_path / "disk", "22m") as disk:
        out = disk / "run"
        code = train_cli(photos, out)
        err = capsys.readouterr().err
        assert code == 1
        line = one_clear_line(err)
        assert "not enough free space" in line and str(out / "checkpoints") in line
        assert "MB" in line and "free" in line
        assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "failed" and "not enough free space" in summary["reason"]
        assert (out / "run.log").stat().st_size > 0


def test_a_full_disk_at_the_start_gives_one_clear_line_and_no_empty_log(photos, tmp_path, capsys):
    with small_disk(tmp_path / "disk", "2m") as disk:
        fill_disk(disk, leave_bytes=0)
        out = disk / "run"
        code = train_cli(photos, out)
        line = one_clear_line(capsys.readouterr().err)
        assert code == 1
        assert "not enough free space" in line and str(disk) in line
        assert not (out / "run.log").exists() or (out / "run.log").stat().st_size > 0


def test_resuming_a_finished_run_on_a_full_disk_keeps_its_summary(photos, tmp_path, capsys):
    with small_disk(tmp_path / "disk", "40m") as disk:
        out = disk / "run"
        assert Trainer(config(photos, out)).run().status == "completed"
        before = (out / "summary.json").read_text()
        fill_disk(disk, leave_bytes=2**20)  # small files still fit, a checkpoint does not
        code = main(["train", "--resume", str(out), "--epochs", "2", "--quiet"])
        line = one_clear_line(capsys.readouterr().err)
        assert code == 1 and "not enough free space" in line
        assert (out / "summary.json").read_text() == before


def test_resuming_in_a_read_only_run_folder_gives_one_clear_line(photos, tmp_path, capsys):
    out = tmp_path / "run"
    assert Trainer(config(photos, out)).run().status == "completed"
    before = (out / "summary.json").read_text()
    with read_only(out):
        code = main(["train", "--resume", str(out), "--epochs", "2", "--quiet"])
        line = one_clear_line(capsys.readouterr().err)
    assert code == 1
    assert str(out) in line and "read-only" in line
    assert (out / "summary.json").read_text() == before


# ---------------------------------------------------------------- 5: one run per folder


def test_a_second_training_into_the_same_folder_is_refused_while_the_first_runs(photos, tmp_path):
    out = tmp_path / "run"
    first = Trainer(config(photos, out, epochs=2))
    second_result: list = []
    running_seen: list = []
    go_on = threading.Event()

    def on_first_event(event):
        # While the first holds the folder, start a second run into it and a resume of it.
        if isinstance(event, ev.BatchEnded) and not second_result:
            running_seen.append(run_in_progress(out))
            second_result.append(Trainer(config(photos, out, epochs=3, lr=0.5)).run())
            second_result.append(Trainer(config(photos, out, epochs=3), resume=True).run())
            go_on.set()

    first.subscribe(on_first_event)
    finished = first.run()

    assert go_on.is_set() and finished.status == "completed", finished.reason
    for refused in second_result:
        assert refused.status == "failed"
        assert "in use by another training run" in refused.reason
        assert f"process {os.getpid()}" in refused.reason
    assert running_seen[0] and f"process {os.getpid()}" in running_seen[0]
    assert run_in_progress(out) is None  # released at the end
    assert "lr = 0.5" not in (out / "run.toml").read_text()  # the refused run wrote nothing
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_planned"] == 2


def test_a_lock_left_by_a_killed_process_does_not_block_the_run(photos, tmp_path):
    out = tmp_path / "run"
    assert Trainer(config(photos, out)).run().status == "completed"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from desktop_tl.core.run_folder import lock_run_dir;"
            "lock = lock_run_dir(sys.argv[1]); print('held', flush=True); time.sleep(60)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert f"process {holder.pid}" in run_in_progress(out)
        refused = Trainer(config(photos, out, epochs=2), resume=True).run()
        assert refused.status == "failed" and f"process {holder.pid}" in refused.reason
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
    assert run_in_progress(out) is None
    resumed = Trainer(config(photos, out, epochs=2), resume=True).run()
    assert resumed.status == "completed", resumed.reason


def test_the_prediction_view_says_a_run_it_opens_is_still_training(photos, tmp_path, qtbot):
    from desktop_tl.gui.prediction_view import PredictionView

    out = tmp_path / "run"
    assert Trainer(config(photos, out)).run().status == "completed"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from desktop_tl.core.run_folder import lock_run_dir;"
            "lock = lock_run_dir(sys.argv[1]); print('held', flush=True); time.sleep(60)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        view = PredictionView()
        qtbot.addWidget(view)
        view.load_run(out)
        qtbot.waitUntil(lambda: view.predictor is not None, timeout=60_000)
        assert "still training" in view.model_label.text()
        assert f"process {holder.pid}" in view.status_text()
    finally:
        holder.kill()
        holder.wait()
    view.load_run(out)  # the same run once nobody trains it
    qtbot.waitUntil(lambda: not view.busy, timeout=60_000)
    assert "still training" not in view.model_label.text()


# ---------------------------------------------------------------- 6: permissions


def test_run_folder_files_follow_the_umask(photos, tmp_path):
    previous = os.umask(0o022)
    try:
        out = tmp_path / "run"
        assert Trainer(config(photos, out)).run().status == "completed"
        atomic_write_text(tmp_path / "plain.txt", "x")
    finally:
        os.umask(previous)
    paths = [out, *out.rglob("*"), tmp_path / "plain.txt"]
    wrong = {
        str(p): oct(stat.S_IMODE(p.stat().st_mode))
        for p in paths
        if stat.S_IMODE(p.stat().st_mode) != (0o755 if p.is_dir() else 0o644)
    }
    assert wrong == {}


# ---------------------------------------------------------------- 7: stopped in the first epoch


@pytest.mark.parametrize("how", ["ctrl-c", "stop"])
def test_stopping_in_the_first_epoch_writes_a_cancelled_summary_and_resume_starts_over(photos, tmp_path, how):
    out = tmp_path / "run"
    trainer = Trainer(config(photos, out, epochs=2))

    def stop_at_first_batch(event):
        if isinstance(event, ev.BatchEnded) and event.step == 0:
            if how == "ctrl-c":
                raise KeyboardInterrupt  # what Ctrl+C raises in the training thread
            trainer.send(ev.Cancel())

    trainer.subscribe(stop_at_first_batch)
    stopped = trainer.run()
    assert stopped.status == "cancelled"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "cancelled" and summary["epochs_completed"] == 0
    assert not (out / "checkpoints" / "last").exists()

    events, on_event = recorder()
    resumed = Trainer(config(photos, out, epochs=2), on_event=on_event, resume=True).run()
    assert resumed.status == "completed", resumed.reason
    assert resumed.summary["epochs_completed"] == 2
    assert any("starting from the beginning" in m for m in log_lines(events, "info"))
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


# ---------------------------------------------------------------- 12 and 16: killed mid-save


def test_a_kill_during_the_final_best_save_is_finished_by_resume(photos, tmp_path):
    out = tmp_path / "run"
    assert Trainer(config(photos, out, epochs=1)).run().status == "completed"
    stale_best = tmp_path / "best-of-epoch-1"
    shutil.copytree(out / "checkpoints" / "best", stale_best)
    assert Trainer(config(photos, out, epochs=2), resume=True).run().status == "completed"
    state = torch.load(out / "checkpoints" / "last" / "training_state.pt", weights_only=True)
    assert state["best"]["epoch"] == 2  # the final epoch was the best one

    # What kill -9 between writing last and swapping in best leaves: last of epoch 2, best of
    # epoch 1, a half-written temporary best folder and no summary.
    shutil.rmtree(out / "checkpoints" / "best")
    shutil.copytree(stale_best, out / "checkpoints" / "best")
    half = out / "checkpoints" / ".best.k1ll3d"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\0" * 100)
    (out / "summary.json").unlink()

    finished = Trainer(config(photos, out, epochs=2), resume=True).run()

    assert finished.status == "completed", finished.reason
    best_meta = json.loads((out / "checkpoints" / "best" / "meta.json").read_text())
    assert best_meta["epoch"] == 2
    best = load_file(out / "checkpoints" / "best" / "model.safetensors")
    last = load_file(out / "checkpoints" / "last" / "model.safetensors")
    assert all(torch.equal(best[k], last[k]) for k in last)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert summary["best_epoch"] == 2 and summary["confusion"]
    assert not half.exists()
    # once finished, a further resume is refused and changes nothing
    again = Trainer(config(photos, out, epochs=2), resume=True).run()
    assert again.status == "failed" and "already finished" in again.reason


def test_temporary_files_left_by_a_kill_are_removed_at_the_next_start(photos, tmp_path):
    out = tmp_path / "run"
    assert Trainer(config(photos, out, epochs=1)).run().status == "completed"
    left = [out / "checkpoints" / ".last.a8c2x9", out / "checkpoints" / ".best.q7r1z0"]
    for folder in left:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"\0" * 10)
    temp_file = out / ".metrics.csv.abc123.tmp"
    temp_file.write_text("epoch\n")
    (out / "checkpoints" / "last.old").mkdir()  # a swap cut short after last was in place

    finished = Trainer(config(photos, out, epochs=2), resume=True).run()

    assert finished.status == "completed", finished.reason
    assert not any(p.exists() for p in left) and not temp_file.exists()
    assert not (out / "checkpoints" / "last.old").exists()
    assert json.loads((out / "checkpoints" / "last" / "meta.json").read_text())["epoch"] == 2
