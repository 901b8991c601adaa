"""`desktop-tl launch-files`: the run file and launch scripts for another machine."""

from __future__ import annotations

from desktop_tl.cli import main
from desktop_tl.core.config import RunConfig

from helpers_training import lite0_config, sample_subset


def test_launch_files_writes_the_folder_and_refuses_to_overwrite_it(tmp_path, capsys):
    toml = tmp_path / "project.toml"
    config = lite0_config(sample_subset(tmp_path / "photos", n_train=2, n_val=1), tmp_path / "out")
    config.freeze.schedule = [{"epoch": 2, "changes": {"backbone.top": True}}]
    config.save(toml)
    dest = tmp_path / "for-the-server"
    assert main(["launch-files", str(toml), "--to", str(dest), "--nproc", "2", "--cpu"]) == 0
    out = capsys.readouterr().out
    assert str(dest / "launch_torchrun.sh") in out and "note: data path ../photos" in out
    written = RunConfig.load(dest / "run.toml")
    assert written.train.device == "cpu" and written.freeze.schedule == config.freeze.schedule
    assert 'NPROC="${NPROC:-2}"' in (dest / "launch_torchrun.sh").read_text()

    assert main(["launch-files", str(toml), "--to", str(dest)]) == 2
    assert "already has run.toml" in capsys.readouterr().err
    assert main(["launch-files", str(toml), "--to", str(dest), "--nproc", "0", "--replace"]) == 2
    assert "processes per node must be a whole number from 1 to 1024, got 0" in capsys.readouterr().err
