"""Checks on paths given on the command line, made before anything reads or creates them."""

from __future__ import annotations

import errno
import os

from ..errors import UserError


def check_path(path: str | os.PathLike, what: str) -> None:
    """Raise :class:`UserError` when the operating system cannot even look ``path`` up:
    a name longer than the file system allows (ENAMETOOLONG) makes ``Path.exists()``
    and every later step raise ``OSError`` instead of answering. ``what`` names the
    argument for the message (e.g. ``"--data"``). A path that merely does not exist is
    left for the caller to report in its own words."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise UserError(too_long_message(path, what)) from None


def too_long_message(path: str | os.PathLike, what: str) -> str:
    longest = max((len(part) for part in str(path).replace("\\", "/").split("/")), default=0)
    return (
        f"the path given for {what} is too long for this file system (a name of {longest} "
        f"characters; most allow 255, and the whole path {len(str(path))}): "
        f"{_shorten(str(path))}. Use a shorter name"
    )


def _shorten(text: str, keep: int = 60) -> str:
    return text if len(text) <= 2 * keep else f"{text[:keep]}...{text[-keep:]}"
