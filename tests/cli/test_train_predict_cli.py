"""`desktop-tl train` and `desktop-tl predict` end to end, and their bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from desktop_tl.cli import main

from helpers_training import sample_subset


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return sample_subset(tmp_path_factory.mktemp("photos"), n_train=10, n_val=5)


def test_train_then_predict(photos, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--data",
            str(photos),
            "--backbone",
            "efficientnet_lite0",
            "--weights",
            "auto",
            "--head",
            "linear",
            "--freeze",
            "head-only",
            "--epochs",
            "3",
            "--batch-size",
            "8",
            "--lr",
            "1e-3",
            "--augment",
            "none",
            "--device",
            "cpu",
            "--seed",
            "1",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "completed: 3 epochs" in captured.out and str(out) in captured.out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 3

    # the run file re-runs the same configuration, flags override it
    code = main(
        ["train", str(out / "run.toml"), "--epochs", "1", "--out", str(tmp_path / "again"), "--quiet"]
    )
    assert code == 0, capsys.readouterr().err
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert again["epochs_completed"] == 1 and again["classes"] == summary["classes"]
    capsys.readouterr()

    image = next((photos / "val" / "brick").iterdir())
    assert main(["predict", str(out), str(image), "--top-k", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result[0]["path"] == str(image) and len(result[0]["top"]) == 2
    assert result[0]["top"][0]["class"] == "brick"

    assert main(["predict", str(out), str(photos / "val")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 10 and all(": " in line for line in lines)


@pytest.mark.parametrize(
    "args, words",
    [
        (["train", "--data", "/no/such/folder", "--quiet"], ["/no/such/folder"]),
        (["train", "--quiet"], ["no data given", "--demo"]),
        (["train", "--demo", "--backbone", "resnet1800", "--quiet"], ["resnet1800"]),
        (["train", "--demo", "--freeze", "last:zero"], ["freeze preset", "last:N"]),
        (["train", "--demo", "--epochs", "0"], ["train.epochs"]),
        (["train", "--demo", "--weights", "/no/weights.pth"], ["weights file", "does not exist"]),
        (["train", "--demo", "--head", "transformer", "--quiet"], ["transformer", "linear"]),
        (["train", "--resume", "/tmp"], ["not a run folder"]),
        (["train", "no-such-run.toml"], ["does not exist"]),
        (["predict", "/no/run", "x.jpg"], ["/no/run", "does not exist"]),
        (["train", "--epochs", "many"], ["invalid int value"]),
        (
            ["train", "--demo", "--freeze", "last:99", "--quiet"],
            ["last:99", "more blocks than this backbone has"],
        ),
        (
            ["train", "--demo", "--weights", "GARBAGE_PTH", "--quiet"],
            ["damaged or not a PyTorch weights file"],
        ),
        (["predict", "CORRUPT_RUN", "x.jpg"], ["damaged"]),
    ],
)
def test_bad_arguments_give_one_clear_line_and_a_nonzero_exit(args, words, tmp_path, capsys):
    if "--demo" in args and "--out" not in args:
        args = [*args, "--out", str(tmp_path / "run")]
    if "GARBAGE_PTH" in args:
        garbage = tmp_path / "garbage.pth"
        garbage.write_bytes(b"PK\x03\x04 this is not a zip archive at all" * 10)
        args[args.index("GARBAGE_PTH")] = str(garbage)
    if "CORRUPT_RUN" in args:
        best = tmp_path / "corrupt" / "checkpoints" / "best"
        best.mkdir(parents=True)
        (best / "meta.json").write_text(
            json.dumps(
                {
                    "backbone": "efficientnet_lite0",
                    "head": {"id": "linear", "options": {}},
                    "classes": ["a", "b"],
                    "preprocessing": {"resize": 256, "crop": 224, "mean": [0.5] * 3, "std": [0.5] * 3},
                }
            )
        )
        (best / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
        args[args.index("CORRUPT_RUN")] = str(tmp_path / "corrupt")
    # In this process (the entry point itself is run as a program below): an exception
    # that escaped main() would fail the test as a traceback would.
    try:
        code = main(args)
    except SystemExit as exc:  # argparse refuses a malformed value this way
        code = exc.code
    stderr = capsys.readouterr().err
    assert code != 0
    message = stderr.strip().splitlines()[-1]
    for word in words:
        assert word in stderr, stderr
    assert message.startswith("desktop-tl")


def test_the_program_prints_the_refusal_as_one_line_without_a_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "desktop_tl",
            "train",
            "--demo",
            "--freeze",
            "last:99",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("desktop-tl train: "), result.stderr
    assert "more blocks than this backbone has" in lines[0]


def test_predict_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "img.jpg").write_bytes(b"not really")
    assert main(["predict", str(tmp_path), str(tmp_path / "img.jpg")]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err


def test_torchvision_backbone_with_imported_weights_end_to_end(photos, tmp_path, monkeypatch, capsys):
    """A lab's weights file, imported once, is found offline and recorded in the run."""
    import torch
    import torchvision

    monkeypatch.setenv("DTL_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(3)
    weights_file = tmp_path / "downloads" / "resnet18-f37072fd.safetensors"
    weights_file.parent.mkdir()
    from safetensors.torch import save_file

    save_file(torchvision.models.resnet18().state_dict(), weights_file)

    assert main(["weights", "import", str(weights_file)]) == 0
    capsys.readouterr()
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--data",
            str(photos),
            "--backbone",
            "resnet18",
            "--freeze",
            "last:1",
            "--augment",
            "light",
            "--epochs",
            "2",
            "--batch-size",
            "10",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backbone"] == "torchvision:resnet18"
    assert summary["weights"]["source"] == "weights-dir" and summary["weights"]["pretrained"]
    assert summary["weights"]["path"] == str(tmp_path / "weights" / "resnet18-f37072fd.safetensors")
    meta = json.loads((out / "checkpoints" / "last" / "meta.json").read_text())
    assert meta["weights"]["sha256"] == summary["weights"]["sha256"]
    assert meta["freeze_map"]["backbone.layer4.1"] is True and meta["freeze_map"]["backbone.conv1"] is False
    assert any(entry.get("event") == "off" for entry in summary["feature_cache"])  # augmentation on
    capsys.readouterr()
    assert main(["predict", str(out), str(next((photos / "val" / "grass").iterdir())), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["error"] is None


def test_a_run_file_re_runs_beside_its_run_with_paths_relative_to_it(photos, tmp_path, monkeypatch, capsys):
    import shutil

    project = tmp_path / "project"
    shutil.copytree(photos, project / "images")
    (project / "exp.toml").write_text(
        '[data]\npath = "images"\n[model]\nbackbone = "efficientnet_lite0"\n'
        '[train]\nepochs = 1\nbatch_size = 10\n'
    )
    monkeypatch.chdir(tmp_path)  # not the project folder: "images" resolves against the file
    first = tmp_path / "first"
    assert main(["train", str(project / "exp.toml"), "--out", str(first), "--quiet"]) == 0
    saved = (first / "run.toml").read_text()
    assert str(project / "images") in saved
    capsys.readouterr()

    # the run's own run.toml re-runs into a new folder, never over the run it came from
    before = (first / "metrics.csv").read_text()
    assert main(["train", str(first / "run.toml"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "run folder:" in out and str(first) not in out.split("run folder:")[1]
    assert (first / "metrics.csv").read_text() == before


def test_resume_refuses_flags_it_would_ignore(photos, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.toml").write_text("[data]\npath = 'x'\n")
    assert main(["train", "--resume", str(run), "--lr", "0.1", "--augment", "light"]) == 2
    err = capsys.readouterr().err
    assert "only --epochs may change" in err and "--lr" in err and "--augment" in err
