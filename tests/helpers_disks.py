"""Real small and read-only disks for tests: a tmpfs, and a read-only bind mount. Both need
root (mount); elsewhere the test using them is skipped with that reason."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest


def _run_root(args):
    return subprocess.run(args, capture_output=True, text=True)


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A real tmpfs of ``size`` mounted at ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = _run_root(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        _run_root(["umount", "-l", str(path)])


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` bind-mounted read-only over itself (chmod does not stop root)."""
    bound = _run_root(["mount", "--bind", str(path), str(path)])
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount read-only here (needs root): {bound.stderr.strip()}")
    try:
        remounted = _run_root(["mount", "-o", "remount,bind,ro", str(path)])
        if remounted.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {remounted.stderr.strip()}")
        yield path
    finally:
        _run_root(["umount", "-l", str(path)])
