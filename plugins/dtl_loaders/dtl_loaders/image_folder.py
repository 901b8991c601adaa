"""The image-folder loader: one subfolder per class, optionally inside train/ val/ test/.

Layouts it reads::

    data/cat/1.jpg  data/dog/2.png                 classes only: the core splits them
    data/train/cat/1.jpg  data/val/cat/3.jpg ...   a split given by the folders

Images in nested folders below a class folder belong to that class. Class names are the
folder names, sorted as ``torchvision.datasets.ImageFolder`` sorts them, so class indices
match a model trained with it. A class folder without images is still listed, so that the
core can refuse it by name instead of silently training without that class.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from desktop_tl.plugin.descriptors import DatasetError, LoadedDataset, Sample

from .stray_files import why_not_an_image, why_skip_folder
from .subsets import SUBSET_NAMES


def can_load_folder(path: str) -> bool:
    return Path(path).is_dir()


def load_folder(path: str, options: dict[str, Any]) -> LoadedDataset:
    root = Path(path)
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist; check the path")
    if not root.is_dir():
        raise DatasetError(
            f"{root} is a file, not a folder; choose a folder with one subfolder per class"
        )
    ignored: list[tuple[str, str]] = []
    folders = _list_folders(root, ignored)
    split_folders = {name: SUBSET_NAMES.get(name.lower()) for name in folders}
    if "train" in split_folders.values():
        return _load_split_layout(root, folders, split_folders, ignored)
    return _load_classes(root, folders, ignored)


def _load_classes(root: Path, folders: list[str], ignored: list) -> LoadedDataset:
    samples: list[Sample] = []
    for name in folders:
        _collect_images(root / name, name, None, samples, ignored)
    return LoadedDataset(samples=samples, class_names=sorted(folders), root=str(root),
                         ignored=ignored)


def _load_split_layout(root: Path, folders: list[str], split_folders: dict, ignored: list
                       ) -> LoadedDataset:
    samples: list[Sample] = []
    class_names: set[str] = set()
    seen_subsets: dict[str, str] = {}
    for name in folders:
        subset = split_folders[name]
        if subset is None:
            ignored.append((str(root / name), "folder beside train/ that is not val/ or test/"))
            continue
        if subset in seen_subsets:
            ignored.append((str(root / name),
                            f"second {subset} folder; {seen_subsets[subset]}/ is used"))
            continue
        seen_subsets[subset] = name
        for class_name in _list_folders(root / name, ignored):
            class_names.add(class_name)
            _collect_images(root / name / class_name, class_name, subset, samples, ignored)
    return LoadedDataset(samples=samples, class_names=sorted(class_names), root=str(root),
                         ignored=ignored)


def _list_folders(folder: Path, ignored: list) -> list[str]:
    """Sub-folder names of ``folder``, sorted; files and system folders go to ``ignored``."""
    names = []
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as exc:
        raise DatasetError(f"cannot list folder {folder}: {exc.strerror or exc}") from None
    for entry in entries:
        if _is_dir(entry):
            reason = why_skip_folder(entry.name)
            if reason:
                ignored.append((entry.path, reason))
            else:
                names.append(entry.name)
        else:
            reason = why_not_an_image(entry.name) or "image outside any class folder"
            ignored.append((entry.path, reason))
    return names


def _collect_images(folder: Path, label: str, subset: str | None, samples: list,
                    ignored: list) -> None:
    visited = {os.path.realpath(folder)}

    def unreadable_folder(exc: OSError) -> None:
        ignored.append((str(exc.filename or folder), f"cannot list folder: {exc.strerror}"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable_folder,
                                                 followlinks=True):
        kept = []
        for name in sorted(dirnames):
            full = os.path.join(dirpath, name)
            reason = why_skip_folder(name)
            real = os.path.realpath(full)
            if reason is None and real in visited:
                reason = "link to a folder already read (loop or duplicate)"
            if reason:
                ignored.append((full, reason))
            else:
                visited.add(real)
                kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            reason = why_not_an_image(name)
            if reason:
                ignored.append((full, reason))
            else:
                samples.append(Sample(path=full, label=label, subset=subset))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks
    except OSError:
        return False
