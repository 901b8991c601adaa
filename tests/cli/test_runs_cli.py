"""`desktop-tl runs`, `runs show`, `runs compare`, `runs rename` and `runs note` on runs
made by `desktop-tl train`, and their bad inputs."""

from __future__ import annotations

import json
import shutil

import pytest

from desktop_tl.cli import main

from helpers_training import sample_subset, train_with_cli


@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory):
    """Two real runs made by the CLI into the runs folder (no --out), differing in lr."""
    root = tmp_path_factory.mktemp("cli_runs")
    photos = sample_subset(root / "photos", n_train=4, n_val=2)
    folder = root / "runs"
    for lr in ("1e-3", "3e-3"):
        train_with_cli(folder, photos, "efficientnet_lite0", "--epochs", "1", "--batch-size", "4", "--lr", lr)
    return folder


@pytest.fixture
def runs_env(runs_folder, monkeypatch):
    monkeypatch.setenv("DTL_RUNS_DIR", str(runs_folder))
    return runs_folder


def test_runs_lists_the_runs_the_cli_made(runs_env, capsys):
    assert main(["runs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 2 and {r["status"] for r in listed} == {"completed"}
    assert all(r["backbone"] == "efficientnet_lite:efficientnet_lite0" for r in listed)
    assert all(r["epochs_completed"] == 1 and r["classes"] == ["brick", "grass"] for r in listed)

    assert main(["runs"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["NAME", "DATE", "DATASET", "BACKBONE"]
    assert len(table) == 3 and all("completed" in line for line in table[1:])


def test_show_rename_and_note(runs_env, capsys):
    folder = sorted(p.name for p in runs_env.iterdir())[0]
    assert main(["runs", "rename", folder, "baseline"]) == 0
    assert main(["runs", "note", "baseline", "lr 1e-3, head only"]) == 0
    capsys.readouterr()
    assert main(["runs", "show", "baseline", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["folder"] == folder and shown["name"] == "baseline"
    assert shown["note"] == "lr 1e-3, head only" and len(shown["metrics"]) == 1
    assert shown["config"]["model"]["backbone"] == "efficientnet_lite:efficientnet_lite0"
    assert main(["runs", "show", folder]) == 0
    text = capsys.readouterr().out
    assert "baseline" in text and "EPOCH" in text and "lr 1e-3, head only" in text
    assert main(["runs", "rename", folder, ""]) == 0  # back to the folder name
    capsys.readouterr()


def test_compare_shows_the_differing_settings(runs_env, capsys):
    first, second = sorted(str(p) for p in runs_env.iterdir())
    assert main(["runs", "compare", first, second, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["differing_settings"]["train.lr"] == [0.001, 0.003]
    assert result["not_comparable"] == {} and result["without_metrics"] == []
    assert main(["runs", "compare", first, second]) == 0
    text = capsys.readouterr().out
    assert "settings that differ" in text and "train.lr" in text and "final val accuracy" in text


def test_compare_with_a_run_without_metrics_says_so(runs_env, tmp_path, capsys):
    first = sorted(runs_env.iterdir())[0]
    stopped = tmp_path / "stopped_early"
    shutil.copytree(first, stopped)
    (stopped / "metrics.csv").unlink()
    (stopped / "summary.json").write_text(
        json.dumps({"status": "cancelled", "reason": "stopped by the user"})
    )
    assert main(["runs", "compare", str(first), str(stopped)]) == 0
    assert "stopped_early has no metrics yet (cancelled)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, words",
    [
        (["runs", "show", "no-such-run"], ["no run 'no-such-run'", "desktop-tl runs"]),
        (["runs", "compare", "no-such-run", "other"], ["no run 'no-such-run'"]),
        (["runs", "show", "."], ["is not a run folder"]),
    ],
)
def test_bad_runs_give_one_clear_line(runs_env, args, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


def test_a_damaged_run_is_listed_with_its_problem(runs_env, tmp_path, capsys):
    damaged = tmp_path / "damaged"
    shutil.copytree(sorted(runs_env.iterdir())[0], damaged)
    (damaged / "summary.json").write_text("{not json")
    assert main(["runs", "--folder", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "damaged" in out and "! damaged: summary.json is damaged" in out
    assert out.count("completed") == 2  # the others are untouched
