"""Small real datasets and run configurations for engine, CLI and GUI tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from desktop_tl.cli import main
from desktop_tl.core.config import RunConfig
from desktop_tl.resources import sample_dataset_dir


def sample_subset(root: Path, classes=("brick", "grass"), n_train: int = 12, n_val: int = 6) -> Path:
    """Copy a few real texture photos per class from the bundled sample dataset into
    ``root`` as train/ and val/ folders."""
    source = sample_dataset_dir()
    for subset, count in (("train", n_train), ("val", n_val)):
        for name in classes:
            target = root / subset / name
            target.mkdir(parents=True, exist_ok=True)
            for image in sorted((source / subset / name).iterdir())[:count]:
                shutil.copy(image, target / image.name)
    return root


def lite0_config(data: Path, out: Path, **train) -> RunConfig:
    """EfficientNet-Lite0 (real ImageNet weights, offline) with a linear head."""
    config = RunConfig()
    config.data.path = str(data)
    config.model.backbone = "efficientnet_lite0"
    config.model.head = "linear"
    config.out = str(out)
    config.train.batch_size = 8
    config.train.epochs = 3
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


def train_with_cli(runs_folder: Path, data: Path, backbone: str, *options: str) -> Path:
    """``desktop-tl train`` on CPU, quietly, with ``runs_folder`` as the user's runs
    folder (no --out); returns the folder of the run it made."""
    before = set(runs_folder.iterdir()) if runs_folder.exists() else set()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DTL_RUNS_DIR", str(runs_folder))
        command = ["train", "--data", str(data), "--backbone", backbone, "--device", "cpu", "--quiet"]
        assert main([*command, *options]) == 0
    (run,) = set(runs_folder.iterdir()) - before
    return run
