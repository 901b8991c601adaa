"""Which files in a dataset folder are not images, and why they are left out."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from desktop_tl.plugin.images import IMAGE_EXTENSIONS

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


def why_not_a_regular_file(entry: os.DirEntry) -> str | None:
    """The reason a directory entry named like an image is not read, or ``None``.

    Opening a named pipe (FIFO) blocks until something writes to it, and a device may
    never end, so only regular files (or links to them) are read.
    """
    try:
        if entry.is_file():  # follows links
            return None
    except OSError:
        pass
    if entry.is_symlink() and not os.path.exists(entry.path):
        return "link to a file that does not exist"
    try:
        mode = os.stat(entry.path).st_mode
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if stat.S_ISFIFO(mode):
        kind = "a named pipe (FIFO)"
    elif stat.S_ISSOCK(mode):
        kind = "a socket"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device"
    else:
        kind = "a special file"
    return f"not a regular file ({kind}); reading it could wait forever, so it is skipped"
