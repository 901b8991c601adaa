"""From a dataset path to checked, split data.

:func:`prepare_data` runs before any model is built: it asks a loader plugin for the
labelled samples, checks every image's header and compressed data to find the unreadable
ones (without a full decode: see :func:`~desktop_tl.core.images.probe_image`), refuses
data a classifier cannot learn from with a message that says what to fix, and splits it.
Images the user left out (``data.exclude``) are set aside before the check and the split
(:mod:`desktop_tl.core.exclusions`); the files stay where they are. The split is saved
with the run (:meth:`PreparedData.save_manifest`) so that a resumed run sees exactly the
same images. The transforms that prepare an image for a network are in
:mod:`desktop_tl.core.transforms`, the loaders that turn a split into batches in
:mod:`desktop_tl.core.loaders`.

About 540 lines: the check, the split and the messages that refuse unusable data are one
path from a folder to a :class:`PreparedData` and read best in order, together.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence


from ..plugin.descriptors import DatasetError, DatasetLoader, LoadedDataset
from .atomic import atomic_write_text
from .cancelled import Cancelled
from .exclusions import exclusion_key, leave_out
from .images import IMAGE_EXTENSIONS, max_image_pixels, probe_image

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .config import DataConfig

SUBSETS = ("train", "val", "test")
MANIFEST_FORMAT = "desktop_tl-split"
MANIFEST_VERSION = 1

ProgressCallback = Callable[[int, int], None]


# --------------------------------------------------------------------------- prepared data


@dataclass
class PreparedData:
    """Checked, split data: ``(path, class index)`` per subset, and what was left out.

    ``split_source`` is ``"predefined"`` when the dataset gave the split (train/ val/
    folders, a manifest's split column), ``"stratified"`` when it was drawn here.
    ``warnings`` are problems that do not stop training but change what it means (a
    class never validated, a link loop not followed); every front end shows them.
    ``excluded`` are the ``(path, class index)`` of the images the user left out
    (``data.exclude``), in no subset; ``excluded_gone`` the entries of ``data.exclude``
    that match no image of the dataset any more (moved or deleted since): worth a line
    in the log, not an error.
    """

    root: str
    loader_id: str
    class_names: list[str]
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]
    test: list[tuple[str, int]] = field(default_factory=list)
    bad_files: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    split_source: str = "stratified"
    warnings: list[str] = field(default_factory=list)
    excluded: list[tuple[str, int]] = field(default_factory=list)
    excluded_gone: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per subset and class, every class listed (zero included)."""
        result = {}
        for subset in SUBSETS:
            per_class = Counter(label for _, label in getattr(self, subset))
            result[subset] = {name: per_class.get(i, 0) for i, name in enumerate(self.class_names)}
        return result

    def save_manifest(self, path: str | Path) -> None:
        """Write the split as JSON; paths inside ``root`` are stored relative to it."""
        root = Path(self.root)

        def rel(item_path: str) -> str:
            try:
                return Path(item_path).relative_to(root).as_posix()
            except ValueError:
                return item_path

        data = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "root": self.root,
            "loader_id": self.loader_id,
            "split_source": self.split_source,
            "class_names": list(self.class_names),
            **{subset: [[rel(p), label] for p, label in getattr(self, subset)] for subset in SUBSETS},
            "bad_files": [list(item) for item in self.bad_files],
            "ignored": [list(item) for item in self.ignored],
            # so that a resumed run still reports what the user left out
            "excluded": [[rel(p), label] for p, label in self.excluded],
            "excluded_gone": list(self.excluded_gone),
            "warnings": list(self.warnings),
        }
        atomic_write_text(Path(path), _json_one_item_per_line(data))

    @classmethod
    def load_manifest(cls, path: str | Path, root: str | Path | None = None) -> "PreparedData":
        """Read a split written by :meth:`save_manifest`.

        ``root`` replaces the stored dataset folder, for a dataset that has moved.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"split file {path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(
                f"split file {path} cannot be read ({exc}); start a new run instead of resuming this one"
            ) from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise DatasetError(f"{path} is not a desktop_tl split file")
        if data.get("version") != MANIFEST_VERSION:
            raise DatasetError(
                f"split file {path} has version {data.get('version')}, this "
                f"version of desktop_tl reads version {MANIFEST_VERSION}"
            )
        try:
            base = Path(root) if root is not None else Path(data["root"])
            class_names = [str(name) for name in data["class_names"]]
            subsets = {}
            for subset in (*SUBSETS, "excluded"):  # a split written before exclusions has none
                items = []
                for item_path, label in data.get(subset, []):
                    label = int(label)
                    if not 0 <= label < len(class_names):
                        raise ValueError(f"class index {label} out of range")
                    full = Path(item_path)
                    items.append((str(full if full.is_absolute() else base / full), label))
                subsets[subset] = items
            return cls(
                root=str(base),
                loader_id=str(data["loader_id"]),
                class_names=class_names,
                bad_files=[(str(p), str(r)) for p, r in data.get("bad_files", [])],
                ignored=[(str(p), str(r)) for p, r in data.get("ignored", [])],
                split_source=str(data.get("split_source", "stratified")),
                warnings=[str(message) for message in data.get("warnings", [])],
                excluded_gone=[str(entry) for entry in data.get("excluded_gone", [])],
                **subsets,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(
                f"split file {path} is damaged ({exc}); start a new run instead of resuming this one"
            ) from None


def _json_one_item_per_line(data: dict[str, Any]) -> str:
    """JSON with one list item per line: readable and diff-friendly for long splits."""
    parts = []
    for key, value in data.items():
        if isinstance(value, list) and value:
            items = ",\n".join("  " + json.dumps(item, ensure_ascii=False) for item in value)
            parts.append(f" {json.dumps(key)}: [\n{items}\n ]")
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


# --------------------------------------------------------------------------- preparing


def prepare_data(
    cfg: "DataConfig",
    host: Any,
    *,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PreparedData:
    """Load, check and split the dataset that ``cfg`` names.

    ``host`` provides ``dataset_loaders() -> dict[id, DatasetLoader]`` (the plugin host).
    ``progress(done, total)`` is called while images are decoded, a few times a second at
    most; ``should_stop()`` returning true raises :class:`~desktop_tl.core.cancelled.Cancelled`.
    Raises :class:`DatasetError` when the data cannot be trained on.
    """
    raw = (cfg.path or "").strip()
    if not raw:
        raise DatasetError(
            "no dataset chosen: choose a folder of images with one subfolder "
            "per class, or a .csv/.tsv manifest"
        )
    path = Path(os.path.abspath(Path(raw).expanduser()))
    if not path.exists():
        raise DatasetError(f"dataset path {path} does not exist; check the spelling or choose another folder")
    try:
        max_image_pixels()  # an unusable limit is one message, not one per image
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    loader = choose_loader(str(path), host, cfg.loader)
    loaded = loader.load(str(path), {})
    if not loaded.samples and path.is_file():
        message = f"{path} lists no images; add one row per image (path,label)"
        if loaded.ignored:
            where, reason = loaded.ignored[0]
            message += f"; {len(loaded.ignored)} row(s) were skipped, e.g. {where}: {reason}"
        raise DatasetError(message)
    return check_and_split(
        loaded,
        loader.id,
        exclude=cfg.exclude,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        split_seed=cfg.split_seed,
        progress=progress,
        should_stop=should_stop,
    )


def choose_loader(path: str, host: Any, loader_id: str = "auto") -> DatasetLoader:
    """The loader named ``loader_id``, or for ``"auto"`` the first that accepts ``path``
    (highest priority first; see :func:`desktop_tl.plugin.manager.choose_loader`)."""
    from ..plugin.manager import choose_loader as registry_choose_loader

    return registry_choose_loader(dict(host.dataset_loaders()), path, loader_id)


def check_and_split(
    loaded: LoadedDataset,
    loader_id: str,
    *,
    exclude: Sequence[str] = (),
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    split_seed: int = 0,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PreparedData:
    """Check every image of ``loaded``, refuse unusable data, and split it.

    ``exclude`` lists images to leave out (see :mod:`desktop_tl.core.exclusions`); they
    are neither checked nor split, so the split is the one the remaining images alone
    would get.
    """
    root = loaded.root
    class_names = list(loaded.class_names)
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({s.label for s in loaded.samples if s.label not in index})
    if unknown:
        raise DatasetError(
            f"dataset loader {loader_id!r} returned labels that are not among "
            f"its class names: {', '.join(unknown[:5])}"
        )
    ignored = list(loaded.ignored)
    warnings = list(loaded.warnings)

    # Keyed by the real file, so that a link cannot put one image under two classes.
    samples, first_seen, relabelled = [], {}, []
    for sample in loaded.samples:
        if not os.path.isabs(sample.path):  # a loader may give paths relative to its root
            sample = replace(sample, path=os.path.join(root, sample.path))
        key = os.path.normcase(os.path.realpath(sample.path))
        first = first_seen.setdefault(key, sample)
        if first is sample:
            samples.append(sample)
            continue
        same_path = os.path.abspath(first.path) == os.path.abspath(sample.path)
        again = "listed again" if same_path else f"same file as {first.path}, listed"
        if first.label == sample.label:
            ignored.append((sample.path, "listed more than once" if same_path else again))
        else:
            ignored.append(
                (sample.path, f"{again} with label {sample.label!r}; the first label {first.label!r} is used")
            )
            relabelled.append(f"{Path(sample.path).name}: {first.label!r}, then {sample.label!r}")
    if relabelled:
        more = f" and {len(relabelled) - 3} more" if len(relabelled) > 3 else ""
        warnings.append(
            f"{len(relabelled)} image(s) listed again with a different label; "
            f"the first label is used ({'; '.join(relabelled[:3])}{more}); "
            "give each image one label"
        )
    warnings += _case_variant_warnings(class_names)
    if not samples:
        raise DatasetError(_no_images_message(root, class_names, ignored))
    samples, excluded_samples, excluded_gone = leave_out(samples, exclude, root)
    if not samples:
        raise DatasetError(
            f"all {len(excluded_samples)} images in {root} are left out of training "
            "(data.exclude); bring some back to train on them"
        )

    reasons = _probe_all([s.path for s in samples], progress, should_stop)
    bad_files = [(s.path, r) for s, r in zip(samples, reasons) if r is not None]
    good = [s for s, r in zip(samples, reasons) if r is None]
    _refuse_unusable_classes(root, class_names, good, bad_files, samples, excluded_samples)

    if loaded.has_predefined_split:
        subsets: dict[str, list[tuple[str, int]]] = {name: [] for name in SUBSETS}
        for sample in good:  # a sample without a subset beside predefined ones trains
            subset = sample.subset or "train"
            if subset not in subsets:
                raise DatasetError(
                    f"dataset loader {loader_id!r} put {sample.path} in subset "
                    f"{subset!r}; subsets are train, val and test"
                )
            subsets[subset].append((sample.path, index[sample.label]))
        train, val, test = (sorted(subsets[name], key=_item_order) for name in SUBSETS)
        split_source = "predefined"
        in_train = {label for _, label in train}
        missing = [name for i, name in enumerate(class_names) if i not in in_train]
        if missing:
            noun = "class" if len(missing) == 1 else "classes"
            message = (
                f"{noun} {_names(missing)} without training images; add images to "
                f"train/{missing[0]}/ (or rows with split=train)"
            )
            trained = [name for i, name in enumerate(class_names) if i in in_train]
            for name in missing:
                twin = next((t for t in trained if _same_but_case(t, name)), None)
                if twin is not None:
                    message += (
                        f"; {name!r} differs only in letter case from {twin!r}, "
                        "which has training images: a class needs the same name, "
                        "case included, in every subset"
                    )
                    break
            raise DatasetError(message)
        if not val and val_fraction > 0:
            # train/ (and maybe test/) but no val/: draw validation images from train/, as
            # a person would by hand, and say so.
            train, val, _ = stratified_split(
                train, class_names, val_fraction=val_fraction, test_fraction=0.0, seed=split_seed, root=root
            )
            split_source = "drawn-from-train"
        if not val:
            raise DatasetError(
                f"the dataset's own split in {root} has no validation images; add a val/ "
                "folder with one subfolder per class (for a manifest: rows with split=val), "
                "or set data.val_fraction above 0 so that some are drawn from train/"
            )
    else:
        items = [(s.path, index[s.label]) for s in good]
        train, val, test = stratified_split(
            items,
            class_names,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=split_seed,
            root=root,
        )
        split_source = "stratified"
        if not val:
            if val_fraction <= 0:
                raise DatasetError(
                    "no validation images: data.val_fraction is 0; set it "
                    "above 0 (e.g. 0.2) so that training can be checked"
                )
            raise DatasetError(
                "too few images to set any aside for validation; every class needs at least 2 readable images"
            )
    warnings += _unvalidated_class_warnings(class_names, train, val, split_source)
    return PreparedData(
        root=root,
        loader_id=loader_id,
        class_names=class_names,
        train=train,
        val=val,
        test=test,
        bad_files=bad_files,
        ignored=ignored,
        split_source=split_source,
        warnings=warnings,
        excluded=sorted(((s.path, index[s.label]) for s in excluded_samples), key=_item_order),
        excluded_gone=excluded_gone,
    )


def _same_but_case(a: str, b: str) -> bool:
    return a != b and a.strip().casefold() == b.strip().casefold()


def _case_variant_warnings(class_names: Sequence[str]) -> list[str]:
    """'Cats' and 'cats' are two classes to a classifier; a person rarely means that."""
    groups: dict[str, list[str]] = {}
    for name in class_names:
        groups.setdefault(name.strip().casefold(), []).append(name)
    return [
        f"classes {' and '.join(repr(n) for n in names)} differ only in letter case and "
        "are trained as different classes; if they are one class, give them one name "
        "(merge the folders, or correct the labels)"
        for names in groups.values()
        if len(names) > 1
    ]


def _unvalidated_class_warnings(class_names, train, val, split_source) -> list[str]:
    """A class without validation images is trained but never measured: its accuracy and
    the choice of the best checkpoint know nothing of it."""
    in_val = {label for _, label in val}
    missing = [i for i in range(len(class_names)) if i not in in_val]
    if not missing:
        return []
    one = len(missing) == 1
    noun, verb, its = ("class", "has", "its") if one else ("classes", "have", "their")
    if split_source == "predefined":
        names = [class_names[i] for i in missing]
        return [
            f"{noun} {_names(names)} {verb} no validation images, so {its} accuracy is "
            f"never measured; add images to {Path('val', names[0])}{os.sep} (for a "
            "manifest: rows with split=val)"
        ]
    per_class = Counter(label for _, label in train)
    described = ", ".join(
        f"{class_names[i]!r} ({per_class[i]} readable image{'' if per_class[i] == 1 else 's'})"
        for i in missing[:5]
    )
    if len(missing) > 5:
        described += f" and {len(missing) - 5} more"
    return [
        f"{noun} {described} {verb} too few images to set any aside, so validation has "
        f"none of {'it' if one else 'them'} and {its} accuracy is never measured; give "
        "every class at least 2 images (better 10 or more)"
    ]


def stratified_split(
    items: Sequence[tuple[str, int]],
    class_names: Sequence[str],
    *,
    val_fraction: float,
    test_fraction: float = 0.0,
    seed: int = 0,
    root: str | None = None,
) -> tuple[list[tuple[str, int]], list[tuple[str, int]], list[tuple[str, int]]]:
    """Split ``items`` per class, reproducibly for a seed.

    Each image gets a rank within its class from a hash of (seed, class name, its path
    relative to ``root``); validation takes the lowest ranks, test the highest, training
    the rest. So adding or leaving out an image, here or in another class, never
    reshuffles the others: at most one other image of its class changes subset for each
    share (validation, test) whose rounded size changes or that lost the image. A moved
    dataset folder keeps its split. A class with at least 2 images gives at least 1 to
    validation (when ``val_fraction`` > 0), one with at least 3 gives at least 1 to test
    (when ``test_fraction`` > 0); every class keeps at least one training image.
    """
    by_class: dict[int, list[str]] = {}
    for path, label in items:
        by_class.setdefault(int(label), []).append(path)
    train, val, test = [], [], []
    for label in sorted(by_class):
        class_name = class_names[label]
        paths = sorted(by_class[label], key=lambda p: (_split_rank(seed, class_name, p, root), p))
        n = len(paths)
        n_val = int(n * val_fraction + 0.5)
        n_test = int(n * test_fraction + 0.5)
        if val_fraction > 0 and n >= 2:
            n_val = max(n_val, 1)
        if test_fraction > 0 and n >= 3:
            n_test = max(n_test, 1)
        while n_val + n_test > n - 1 and n_test > 0:
            n_test -= 1
        while n_val + n_test > n - 1 and n_val > 0:
            n_val -= 1
        val += [(p, label) for p in paths[:n_val]]
        test += [(p, label) for p in paths[n - n_test :]]
        train += [(p, label) for p in paths[n_val : n - n_test]]
    return (sorted(train, key=_item_order), sorted(val, key=_item_order), sorted(test, key=_item_order))


def _split_rank(seed: int, class_name: str, path: str, root: str | None) -> bytes:
    # An image is named as data.exclude names it, so a moved dataset keeps its split.
    name = path if root is None else exclusion_key(path, root)
    return hashlib.blake2b(f"{seed}:{class_name}:{name}".encode(), digest_size=8).digest()


def _item_order(item: tuple[str, int]) -> tuple[int, str]:
    return item[1], item[0]


def _probe_all(
    paths: list[str], progress: ProgressCallback | None, should_stop: Callable[[], bool] | None
) -> list[str | None]:
    """Check every image on a thread pool (decoding releases the GIL); reasons in order."""
    total = len(paths)
    reasons: list[str | None] = [None] * total
    threads = min(16, (os.cpu_count() or 1) + 4)  # bounded: each holds a decoded image
    last_report = 0.0
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="probe-image")
    try:
        for done, reason in enumerate(executor.map(probe_image, paths), start=1):
            reasons[done - 1] = reason
            if should_stop is not None and should_stop():
                raise Cancelled("data preparation was cancelled")
            now = time.monotonic()
            if progress is not None and (done == total or now - last_report >= 0.1):
                last_report = now
                progress(done, total)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return reasons


def _refuse_unusable_classes(root, class_names, good, bad_files, samples, excluded=()) -> None:
    good_per_class = Counter(s.label for s in good)
    if not good:
        example_path, example_reason = bad_files[0]
        raise DatasetError(
            f"none of the {len(samples)} images in {root} could be read (e.g. "
            f"{example_path}: {example_reason})"
        )
    label_of = {s.path: s.label for s in samples}
    bad_per_class = Counter(label_of[p] for p, _ in bad_files)
    left_out_per_class = Counter(s.label for s in excluded)
    empty = [name for name in class_names if good_per_class[name] == 0]
    if empty:
        described = []
        for name in empty:
            why = [f"{bad_per_class[name]} unreadable"] if bad_per_class[name] else []
            if left_out_per_class[name]:
                why.append(f"{left_out_per_class[name]} left out by you")
            described.append(f"{name!r} ({', '.join(why)})" if why else repr(name))
        noun = "class" if len(empty) == 1 else "classes"
        advice = "add images to its folder or remove the folder"
        if any(left_out_per_class[name] for name in empty):
            advice = "bring back some of its left-out images, " + advice
        raise DatasetError(
            f"{noun} {', '.join(described)} in {root} "
            f"{'has' if len(empty) == 1 else 'have'} no readable images to train on; {advice}"
        )
    if len(class_names) < 2:
        raise DatasetError(
            f"only one class ({class_names[0]!r}) found in {root}; a classifier "
            "needs at least two: put each class's images in its own subfolder"
        )


def _no_images_message(root: str, class_names: list[str], ignored: list) -> str:
    message = (
        f"no images found in {root}; supported extensions: "
        f"{', '.join(IMAGE_EXTENSIONS)}. Expected one subfolder per class, e.g. "
        f"{Path(root) / 'cats' / 'img001.jpg'}"
    )
    if class_names:
        message += f" (class folders found but empty: {_names(class_names)})"
    if ignored:
        path, reason = ignored[0]
        message += f"; {len(ignored)} file(s) skipped, e.g. {Path(path).name}: {reason}"
    return message


def _names(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
