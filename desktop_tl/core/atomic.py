"""Atomic file writes: a crash or a full disk never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Callable

_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the platform allows."""
    try:  # Linux: reading it from /proc leaves it alone for other threads
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:  # elsewhere the only way to read it is to set it and put it back
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def follow_umask(path: Path, directory: bool = False) -> None:
    """Give ``path`` the permissions a plain ``open``/``mkdir`` would have given it.

    ``mkstemp`` and ``mkdtemp`` (and some writers) create private 0600/0700 files, which
    would keep a colleague from reading a shared run folder.
    """
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        follow_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
