"""The image-folder loader: one subfolder per class, optionally inside train/ val/ test/.

Layouts it reads::

    data/cat/1.jpg  data/dog/2.png                 classes only: the core splits them
    data/train/cat/1.jpg  data/val/cat/3.jpg ...   a split given by the folders

Images in nested folders below a class folder belong to that class. Class names are the
folder names, sorted as ``torchvision.datasets.ImageFolder`` sorts them, so class indices
match a model trained with it. A class folder without images is still listed, so that the
core can refuse it by name instead of silently training without that class.

Links are followed, but each real folder and file is read once: a link that loops
(``cats/loop -> ..``) or leads into another class is not followed, and a file reached
twice counts once, where it lies without a link; each such case is a warning. Pipes,
sockets and devices named like images are skipped with a reason (reading a pipe waits
forever).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_tl.plugin import DatasetError, LoadedDataset, Sample

from .stray_files import why_not_a_regular_file, why_not_an_image, why_skip_folder
from .subsets import SUBSET_NAMES


def can_load_folder(path: str) -> bool:
    return Path(path).is_dir()


def load_folder(path: str, options: dict[str, Any]) -> LoadedDataset:
    root = Path(path)
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist; check the path")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file, not a folder; choose a folder with one subfolder per class")
    ignored: list[tuple[str, str]] = []
    folders = _list_folders(root, ignored)
    split_folders = {name: SUBSET_NAMES.get(name.lower()) for name in folders}
    walk = _DatasetWalk(root, ignored)
    if "train" in split_folders.values():
        class_names = _load_split_layout(root, folders, split_folders, walk)
    else:
        class_names = sorted(folders)
        for name in class_names:
            walk.add_class_folder(root / name, name, None)
    samples = walk.finish()
    return LoadedDataset(
        samples=samples, class_names=class_names, root=str(root), ignored=ignored, warnings=walk.warnings
    )


def _load_split_layout(
    root: Path, folders: list[str], split_folders: dict, walk: "_DatasetWalk"
) -> list[str]:
    class_names: set[str] = set()
    seen_subsets: dict[str, str] = {}
    for name in folders:
        subset = split_folders[name]
        if subset is None:
            walk.ignored.append((str(root / name), "folder beside train/ that is not val/ or test/"))
            continue
        if subset in seen_subsets:
            walk.ignored.append(
                (str(root / name), f"second {subset} folder; {seen_subsets[subset]}/ is used")
            )
            continue
        seen_subsets[subset] = name
    # train/ first: when folders are shared through links, the training copy is the one kept.
    for subset in sorted(seen_subsets, key=("train", "val", "test").index):
        name = seen_subsets[subset]
        walk.claim_folder(root / name)
        for class_name in _list_folders(root / name, walk.ignored):
            class_names.add(class_name)
            walk.add_class_folder(root / name / class_name, class_name, subset)
    return sorted(class_names)


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


@dataclass
class _Candidate:
    path: str
    real: str
    label: str
    subset: str | None
    through_link: bool


class _DatasetWalk:
    """Reads class folders so that each real folder and each real file is used once.

    Folders reached directly are read first; folder links are followed afterwards, and
    only to folders not read yet, so a link can neither loop (``cats/loop -> ..``) nor
    put another class's images into this one. A file reachable twice (a file link, a
    linked folder) is kept once, preferring the path that involves no link.
    """

    def __init__(self, root: Path, ignored: list) -> None:
        self.root = root
        self.root_real = os.path.realpath(root)
        self.ignored = ignored
        self.warnings: list[str] = []
        self._folders: dict[str, str] = {self.root_real: str(root)}  # real -> first path
        self._links: list[tuple[str, str, str | None]] = []
        self._candidates: list[_Candidate] = []

    def claim_folder(self, folder: Path) -> None:
        self._folders.setdefault(os.path.realpath(folder), str(folder))

    def add_class_folder(self, folder: Path, label: str, subset: str | None) -> None:
        if os.path.islink(folder):
            self._links.append((str(folder), label, subset))  # after every real folder
            return
        real = os.path.realpath(folder)
        if real in self._folders:
            self._not_followed(str(folder), real)
            return
        self._folders[real] = str(folder)
        self._read_tree(str(folder), real, label, subset, through_link=False)

    def finish(self) -> list[Sample]:
        """Follow the folder links, then resolve files reached more than once."""
        while self._links:
            path, label, subset = self._links.pop(0)
            real = os.path.realpath(path)
            if real in self._folders or _contains(real, self.root_real):
                self._not_followed(path, real)
                continue
            self._folders[real] = path
            self._read_tree(path, real, label, subset, through_link=True)
        return self._samples()

    # ------------------------------------------------------------------ reading

    def _read_tree(
        self, folder: str, real_folder: str, label: str, subset: str | None, through_link: bool
    ) -> None:
        pending = [(folder, real_folder)]
        while pending:
            current, real_current = pending.pop()
            try:
                entries = sorted(os.scandir(current), key=lambda entry: entry.name)
            except OSError as exc:
                self.ignored.append((current, f"cannot list folder: {exc.strerror or exc}"))
                continue
            subfolders = []
            for entry in entries:
                if _is_dir(entry):
                    reason = why_skip_folder(entry.name)
                    if reason:
                        self.ignored.append((entry.path, reason))
                    elif entry.is_symlink():
                        self._links.append((entry.path, label, subset))
                    else:
                        real = os.path.join(real_current, entry.name)
                        if real in self._folders:
                            self._not_followed(entry.path, real)
                        else:
                            self._folders[real] = entry.path
                            subfolders.append((entry.path, real))
                    continue
                reason = why_not_an_image(entry.name) or why_not_a_regular_file(entry)
                if reason:
                    self.ignored.append((entry.path, reason))
                    continue
                # Only a link needs resolving: inside a real folder the name is the file.
                is_link = entry.is_symlink()
                real = os.path.realpath(entry.path) if is_link else os.path.join(real_current, entry.name)
                self._candidates.append(_Candidate(entry.path, real, label, subset, through_link or is_link))
            pending.extend(reversed(subfolders))  # depth first, in name order

    def _not_followed(self, path: str, real: str) -> None:
        here = os.path.realpath(os.path.dirname(path))
        target = self._shown(self._folders.get(real, real))
        if _contains(real, here):
            reason = f"link to {target}, a folder that contains it (a loop); not followed"
            self.warnings.append(
                f"folder link {self._shown(path)} leads back to {target}, which contains it "
                "(a loop); it was not followed, so no image is counted twice"
            )
        else:
            reason = f"same folder as {target}, which is read already; not read again"
            self.warnings.append(
                f"folder {self._shown(path)} is the same folder as {target} (through a "
                f"link); its images are used once, under {target}"
            )
        self.ignored.append((path, reason))

    def _samples(self) -> list[Sample]:
        by_file: dict[str, list[_Candidate]] = {}
        for candidate in self._candidates:
            by_file.setdefault(candidate.real, []).append(candidate)
        kept: list[Sample] = []
        crossed: list[str] = []
        for candidate in self._candidates:
            group = by_file[candidate.real]
            keeper = next((c for c in group if not c.through_link), group[0])
            if candidate is keeper:
                kept.append(Sample(path=candidate.path, label=candidate.label, subset=candidate.subset))
                continue
            where = self._place(keeper)
            self.ignored.append(
                (
                    candidate.path,
                    f"same file as {self._shown(keeper.path)} (through a link); used once, in {where}",
                )
            )
            if (candidate.label, candidate.subset) != (keeper.label, keeper.subset):
                crossed.append(
                    f"{self._shown(candidate.path)} is {self._shown(keeper.path)}, used once, in {where}"
                )
        if crossed:
            more = f" and {len(crossed) - 3} more" if len(crossed) > 3 else ""
            self.warnings.append(
                f"{len(crossed)} image file(s) linked into a second class or subset; each "
                f"is used once, where the file itself is: {'; '.join(crossed[:3])}{more}"
            )
        return kept

    def _place(self, candidate: _Candidate) -> str:
        return f"class {candidate.label!r}" + (f" ({candidate.subset})" if candidate.subset else "")

    def _shown(self, path: str) -> str:
        """``path`` relative to the dataset folder when inside it, else as it is."""
        if os.path.realpath(path) == self.root_real:
            return "the dataset folder"
        try:
            relative = Path(path).relative_to(self.root)
        except ValueError:
            try:
                relative = Path(os.path.realpath(path)).relative_to(self.root_real)
            except ValueError:
                return str(path)
        return str(relative)


def _contains(folder: str, path: str) -> bool:
    """True when real path ``path`` is ``folder`` or lies inside it."""
    try:
        return os.path.commonpath([folder, path]) == folder
    except ValueError:  # different drives
        return False


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks
    except OSError:
        return False
