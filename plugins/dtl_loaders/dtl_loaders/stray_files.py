"""Which files in a dataset folder are not images, and why they are left out."""

from __future__ import annotations

from pathlib import Path

from desktop_tl.core.images import IMAGE_EXTENSIONS

#: Files operating systems and file managers leave in folders (compared in lower case).
SYSTEM_FILES = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", ".directory"})

#: Folders that hold metadata rather than data (macOS archives, version control).
SYSTEM_FOLDERS = frozenset({"__macosx", ".git", ".svn", "__pycache__", "@eadir"})


def why_not_an_image(name: str) -> str | None:
    """The reason a file called ``name`` is skipped, or ``None`` when it is an image."""
    lower = name.lower()
    if lower in SYSTEM_FILES:
        return "system file, not an image"
    if name.startswith("."):
        return "hidden file"
    suffix = Path(name).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        kind = f"extension {suffix}" if suffix else "no extension"
        return f"not an image file ({kind}; images end in {', '.join(IMAGE_EXTENSIONS)})"
    return None


def why_skip_folder(name: str) -> str | None:
    """The reason a sub-folder called ``name`` is not searched, or ``None``."""
    if name.lower() in SYSTEM_FOLDERS:
        return "system folder, not data"
    if name.startswith("."):
        return "hidden folder"
    return None
