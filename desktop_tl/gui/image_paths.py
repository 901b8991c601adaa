"""Which image files a drop or a choice of files and folders names.

A file counts as given; a folder stands for the image files inside it, searched
recursively and sorted, up to :data:`MAX_IMAGES_PER_FOLDER` of them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from PySide6.QtCore import QMimeData

#: Most images taken from one dropped or chosen folder.
MAX_IMAGES_PER_FOLDER = 2000


def image_extensions() -> tuple[str, ...]:
    from ..core.images import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


def expand_image_paths(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[str], int]:
    """Files as given; folders replaced by the image files inside them (recursively,
    sorted). Returns the paths and how many were left out over the per-folder limit."""
    extensions = image_extensions()
    result: list[str] = []
    left_out = 0
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
            left_out += max(0, len(found) - MAX_IMAGES_PER_FOLDER)
            result.extend(found[:MAX_IMAGES_PER_FOLDER])
        else:
            result.append(str(path))
    return result, left_out


def local_paths(mime: QMimeData | None) -> list[str]:
    """The local files and folders a drag carries."""
    if mime is None or not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile()]
