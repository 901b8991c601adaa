"""The images a user leaves out of training (``data.exclude``): how an entry names an image,
when two entries name the same file, and setting those images aside before a data check.

The files stay where they are; the project lists them, relative to the dataset folder, so
a project moved to another machine or system still names the same images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def exclusion_key(path: str, root: str) -> str:
    """How ``data.exclude`` names the image at ``path``: relative to the dataset folder
    ``root`` with ``/`` separators, or the absolute path (``/`` separators) for an image
    outside it. A project moved to another machine or system still names the same files."""
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute, os.path.abspath(root))
    except ValueError:  # another drive on Windows
        relative = os.pardir
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return Path(absolute).as_posix()
    return Path(relative).as_posix()


def exclusion_keys(paths: Sequence[str], root: str) -> list[str]:
    """:func:`exclusion_key` of each of ``paths``: the same keys, at a fraction of the cost
    for the many paths inside ``root`` (a dataset of 10,000 images is keyed when it is
    checked and when the browser lists it)."""
    base = os.path.abspath(root)
    inside = base if base.endswith(os.sep) else base + os.sep
    keys = []
    for path in paths:
        absolute = os.path.abspath(path)
        if absolute.startswith(inside) and len(absolute) > len(inside):
            keys.append(absolute[len(inside) :].replace(os.sep, "/"))
        else:  # outside root, or not spelt as root is (letter case on Windows)
            keys.append(exclusion_key(absolute, base))
    return keys


def same_exclusion(entry: str) -> str:
    """``entry`` of ``data.exclude`` in the form two entries for one file share: either
    separator, no leading ``./``, letter case folded where the file system ignores it."""
    entry = entry.strip().replace("\\", "/")
    while entry.startswith("./"):
        entry = entry[2:]
    return os.path.normcase(entry)


def leave_out(samples: list, exclude: Sequence[str], root: str) -> tuple[list, list, list[str]]:
    """``samples`` split into (kept, left out), and the entries of ``exclude`` that name
    no sample (the image was moved or deleted since it was left out)."""
    if not exclude:
        return samples, [], []
    wanted = {same_exclusion(entry): entry for entry in exclude}
    kept, left_out, matched = [], [], set()
    keys = exclusion_keys([sample.path for sample in samples], root)
    for sample, key in zip(samples, keys):
        key = same_exclusion(key)
        if key in wanted:
            left_out.append(sample)
            matched.add(key)
        else:
            kept.append(sample)
    gone = [entry for key, entry in wanted.items() if key not in matched]
    return kept, left_out, gone
