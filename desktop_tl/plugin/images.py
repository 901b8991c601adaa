"""The image files desktop_tl reads, shared by the engine and dataset loader plugins."""

from __future__ import annotations

#: File name extensions (lower case) treated as images when listing a dataset folder.
IMAGE_EXTENSIONS: tuple[str, ...] = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


def is_image_file_name(name: str) -> bool:
    """True when ``name`` ends with one of :data:`IMAGE_EXTENSIONS` (any case)."""
    import os

    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
