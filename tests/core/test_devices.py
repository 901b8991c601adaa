"""Device and precision choice; GPU runs where a GPU exists (marked, skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch

from desktop_tl.core.device import DeviceError, mps_available, resolve_device, resolve_precision
from desktop_tl.core.training import Trainer

from helpers_training import lite0_config, sample_subset


def test_auto_prefers_cuda_then_mps_then_cpu():
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_choosing_a_missing_gpu_says_what_to_do():
    with pytest.raises(DeviceError, match="no CUDA GPU.*auto or cpu"):
        resolve_device("cuda")


def test_fp16_on_cpu_is_refused_and_auto_never_emulates():
    with pytest.raises(DeviceError, match="fp16 is not supported on the CPU"):
        resolve_precision("fp16", torch.device("cpu"))
    assert resolve_precision("auto", torch.device("cpu")) in ("bf16", "fp32")
    assert resolve_precision("auto", torch.device("mps")) == "fp32"


def _train_on(device: str, tmp_path, precision: str = "auto"):
    photos = sample_subset(tmp_path / "photos", n_train=8, n_val=4)
    config = lite0_config(photos, tmp_path / "run", epochs=2, device=device, precision=precision)
    config.freeze.preset = "last:1"
    return Trainer(config).run()


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["auto", "fp16", "fp32"])
def test_training_on_cuda(tmp_path, precision):
    finished = _train_on("cuda", tmp_path, precision)
    assert finished.status == "completed", finished.reason
    assert finished.summary["device"].startswith("cuda")
    expected = {"fp16": "fp16", "fp32": "fp32"}.get(precision, finished.summary["precision"])
    assert finished.summary["precision"] == expected
    assert finished.summary["val_acc"] >= 0.75


@pytest.mark.mps
def test_training_on_mps(tmp_path):
    finished = _train_on("mps", tmp_path)
    assert finished.status == "completed", finished.reason
    assert finished.summary["device"] == "mps"
