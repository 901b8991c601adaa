"""Small real image datasets written on the fly, shared by the data and loader tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: One clearly different colour per class, so a class can be recognised from its pixels.
CLASS_COLOURS = [(200, 30, 30), (30, 160, 40), (40, 60, 210), (220, 200, 20), (120, 40, 160)]


def write_image(path: Path, colour=(128, 128, 128), size=(16, 16), seed: int = 0, **save_options) -> Path:
    """An RGB image of ``colour`` with a little noise (so JPEGs are not all alike)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = np.clip(
        np.array(colour, dtype=np.int16) + rng.integers(-8, 9, (size[1], size[0], 3)), 0, 255
    ).astype(np.uint8)
    Image.fromarray(pixels).save(path, **save_options)
    return path


def make_image_folder(
    root: Path, per_class: dict[str, int], subset: str | None = None, ext: str = ".png", size=(16, 16)
) -> dict[str, list[Path]]:
    """``root[/subset]/<class>/<class>_<i><ext>`` for each class; returns the paths."""
    root = Path(root)
    written: dict[str, list[Path]] = {}
    for class_index, (name, count) in enumerate(per_class.items()):
        folder = root / subset / name if subset else root / name
        folder.mkdir(parents=True, exist_ok=True)
        colour = CLASS_COLOURS[class_index % len(CLASS_COLOURS)]
        written[name] = [
            write_image(folder / f"{name}_{i:03d}{ext}", colour, size, seed=class_index * 1000 + i)
            for i in range(count)
        ]
    return written


def truncate_file(path: Path, keep_fraction: float = 0.5) -> Path:
    """Cut a file short, as an interrupted copy or download leaves it."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: max(1, int(len(data) * keep_fraction))])
    return Path(path)


class LoaderHost:
    """The part of the plugin host that data preparation uses, serving the real shipped
    loaders from ``dtl_loaders`` without scanning every installed plugin."""

    def __init__(self, loaders=None) -> None:
        if loaders is None:
            import dtl_loaders

            loaders = dtl_loaders.dtl_dataset_loaders()
        self._loaders = {loader.id: loader for loader in loaders}

    def dataset_loaders(self):
        return dict(self._loaders)
