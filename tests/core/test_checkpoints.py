"""Checkpoint folders: best is made from last's files without writing the model again, and
stays whole when last is written anew; a disk without hard links gets copies."""

from __future__ import annotations

import errno
import os

import pytest
import torch
from safetensors.torch import load_file

from desktop_tl.core import checkpoints
from desktop_tl.core.checkpoints import (
    META_FILE,
    MODEL_FILE,
    STATE_FILE,
    copy_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


def write_last(folder, epoch: int) -> dict[str, torch.Tensor]:
    weights = {"layer.weight": torch.full((4, 3), float(epoch)), "layer.bias": torch.arange(4.0) * epoch}
    save_checkpoint(
        folder,
        weights,
        {"epoch": epoch},
        {"step": epoch * 10, "moments": torch.ones(4)},
        extra=lambda tmp: (tmp / "validation_scores.json").write_text(f'{{"epoch": {epoch}}}'),
    )
    return weights


def test_best_shares_last_s_files_and_stays_whole_when_last_is_written_again(tmp_path):
    last, best = tmp_path / "checkpoints" / "last", tmp_path / "checkpoints" / "best"
    weights = write_last(last, 1)
    copy_checkpoint(last, best)

    assert sorted(p.name for p in best.iterdir()) == [META_FILE, MODEL_FILE, "validation_scores.json"]
    assert os.stat(best / MODEL_FILE).st_ino == os.stat(last / MODEL_FILE).st_ino  # not written again
    write_last(last, 2)  # the next epoch, not a better one

    kept = load_checkpoint(best)
    assert kept.meta == {"epoch": 1}
    assert all(torch.equal(kept.model_state()[k], v) for k, v in weights.items())
    assert (best / "validation_scores.json").read_text() == '{"epoch": 1}'
    assert load_checkpoint(last).meta == {"epoch": 2} and (last / STATE_FILE).is_file()
    assert sorted(p.name for p in tmp_path.joinpath("checkpoints").iterdir()) == ["best", "last"]


def test_a_disk_without_hard_links_gets_copies(tmp_path, monkeypatch):
    last, best = tmp_path / "last", tmp_path / "best"
    weights = write_last(last, 3)

    def refuse(source, target):  # what FAT and some network shares answer
        raise OSError(errno.EPERM, "Operation not permitted", str(target))

    monkeypatch.setattr(checkpoints.os, "link", refuse)
    copy_checkpoint(last, best)

    assert os.stat(best / MODEL_FILE).st_ino != os.stat(last / MODEL_FILE).st_ino
    assert (best / MODEL_FILE).read_bytes() == (last / MODEL_FILE).read_bytes()
    assert all(torch.equal(load_file(best / MODEL_FILE)[k], v) for k, v in weights.items())
    assert not (best / STATE_FILE).exists()


def test_a_best_that_cannot_be_made_names_the_folder_and_keeps_the_old_one(tmp_path, monkeypatch):
    last, best = tmp_path / "last", tmp_path / "best"
    write_last(last, 1)
    copy_checkpoint(last, best)
    write_last(last, 2)

    def full_disk(source, target):
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(checkpoints.os, "link", full_disk)
    monkeypatch.setattr(checkpoints.shutil, "copyfile", full_disk)
    with pytest.raises(checkpoints.CheckpointError) as raised:
        copy_checkpoint(last, best)
    assert "best" in str(raised.value)
    assert load_checkpoint(best).meta == {"epoch": 1}  # the previous best, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "last"]  # no temporary folder
