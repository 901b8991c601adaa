"""From a dataset path to checked, split data and the loaders that feed training.

:func:`prepare_data` runs before any model is built: it asks a loader plugin for the
labelled samples, checks every image's header and compressed data to find the unreadable
ones (without a full decode: see :func:`~desktop_tl.core.images.probe_image`), refuses
data a classifier cannot learn from with a message that says what to fix, and splits it. The
split is saved with the run (:meth:`PreparedData.save_manifest`) so that a resumed run
sees exactly the same images.

:class:`ImageDataset` and :func:`make_loader` turn a split into batches. An image that
becomes unreadable after the check (deleted, overwritten, a network share gone) is not
allowed to crash a DataLoader worker: it is dropped from its batch and recorded on the
loader (:attr:`ImageLoader.unreadable`). Everything handed to worker processes is a
top-level class or function, so the loaders work under the ``spawn`` start method used
on Windows, macOS and in frozen apps.

Images are decoded at the size their transform needs (:func:`decode_short_side`), and a
loader without worker processes decodes the next batches on a thread pool while the
network computes (:class:`ImageLoader`); both give batches in the same order as decoding
one image after the other, and the same random draws.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from ..plugin.descriptors import DatasetError, DatasetLoader, LoadedDataset, Preprocessing
from .atomic import atomic_write_text
from .images import IMAGE_EXTENSIONS, ImageReadError, max_image_pixels, open_rgb, probe_image

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .config import DataConfig

SUBSETS = ("train", "val", "test")
MANIFEST_FORMAT = "desktop_tl-split"
MANIFEST_VERSION = 1

#: Below this many images, worker processes cost more to start (each imports torch)
#: than decoding in the training process costs over a whole run.
SMALL_DATASET_IMAGES = 1000

#: Interpolation names a backbone's preprocessing may ask for.
INTERPOLATIONS = ("nearest", "nearest-exact", "bilinear", "bicubic")

ProgressCallback = Callable[[int, int], None]


class DataPreparationCancelled(Exception):
    """``should_stop`` asked :func:`prepare_data` to stop; nothing was prepared."""


# --------------------------------------------------------------------------- prepared data


@dataclass
class PreparedData:
    """Checked, split data: ``(path, class index)`` per subset, and what was left out.

    ``split_source`` is ``"predefined"`` when the dataset gave the split (train/ val/
    folders, a manifest's split column), ``"stratified"`` when it was drawn here.
    ``warnings`` are problems that do not stop training but change what it means (a
    class never validated, a link loop not followed); every front end shows them.
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
            **{subset: [[rel(p), label] for p, label in getattr(self, subset)]
               for subset in SUBSETS},
            "bad_files": [list(item) for item in self.bad_files],
            "ignored": [list(item) for item in self.ignored],
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
            raise DatasetError(f"split file {path} cannot be read ({exc}); start a new "
                               "run instead of resuming this one") from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise DatasetError(f"{path} is not a desktop_tl split file")
        if data.get("version") != MANIFEST_VERSION:
            raise DatasetError(f"split file {path} has version {data.get('version')}, this "
                               f"version of desktop_tl reads version {MANIFEST_VERSION}")
        try:
            base = Path(root) if root is not None else Path(data["root"])
            class_names = [str(name) for name in data["class_names"]]
            subsets = {}
            for subset in SUBSETS:
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
                **subsets,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"split file {path} is damaged ({exc}); start a new run "
                               "instead of resuming this one") from None


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
    most; ``should_stop()`` returning true raises :class:`DataPreparationCancelled`.
    Raises :class:`DatasetError` when the data cannot be trained on.
    """
    raw = (cfg.path or "").strip()
    if not raw:
        raise DatasetError("no dataset chosen: choose a folder of images with one subfolder "
                           "per class, or a .csv/.tsv manifest")
    path = Path(os.path.abspath(Path(raw).expanduser()))
    if not path.exists():
        raise DatasetError(f"dataset path {path} does not exist; check the spelling or "
                           "choose another folder")
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
            message += (f"; {len(loaded.ignored)} row(s) were skipped, e.g. {where}: "
                        f"{reason}")
        raise DatasetError(message)
    return check_and_split(
        loaded,
        loader.id,
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
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    split_seed: int = 0,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PreparedData:
    """Decode every image of ``loaded``, refuse unusable data, and split it."""
    root = loaded.root
    class_names = list(loaded.class_names)
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({s.label for s in loaded.samples if s.label not in index})
    if unknown:
        raise DatasetError(f"dataset loader {loader_id!r} returned labels that are not among "
                           f"its class names: {', '.join(unknown[:5])}")
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
            ignored.append((sample.path, f"{again} with label {sample.label!r}; the first "
                                         f"label {first.label!r} is used"))
            relabelled.append(f"{Path(sample.path).name}: {first.label!r}, then "
                              f"{sample.label!r}")
    if relabelled:
        more = f" and {len(relabelled) - 3} more" if len(relabelled) > 3 else ""
        warnings.append(f"{len(relabelled)} image(s) listed again with a different label; "
                        f"the first label is used ({'; '.join(relabelled[:3])}{more}); "
                        "give each image one label")
    warnings += _case_variant_warnings(class_names)
    if not samples:
        raise DatasetError(_no_images_message(root, class_names, ignored))

    reasons = _probe_all([s.path for s in samples], progress, should_stop)
    bad_files = [(s.path, r) for s, r in zip(samples, reasons) if r is not None]
    good = [s for s, r in zip(samples, reasons) if r is None]
    _refuse_unusable_classes(root, class_names, good, bad_files, samples)

    if loaded.has_predefined_split:
        subsets: dict[str, list[tuple[str, int]]] = {name: [] for name in SUBSETS}
        for sample in good:  # a sample without a subset beside predefined ones trains
            subset = sample.subset or "train"
            if subset not in subsets:
                raise DatasetError(f"dataset loader {loader_id!r} put {sample.path} in subset "
                                   f"{subset!r}; subsets are train, val and test")
            subsets[subset].append((sample.path, index[sample.label]))
        train, val, test = (sorted(subsets[name], key=_item_order) for name in SUBSETS)
        split_source = "predefined"
        in_train = {label for _, label in train}
        missing = [name for i, name in enumerate(class_names) if i not in in_train]
        if missing:
            noun = "class" if len(missing) == 1 else "classes"
            message = (f"{noun} {_names(missing)} without training images; add images to "
                       f"train/{missing[0]}/ (or rows with split=train)")
            trained = [name for i, name in enumerate(class_names) if i in in_train]
            for name in missing:
                twin = next((t for t in trained if _same_but_case(t, name)), None)
                if twin is not None:
                    message += (f"; {name!r} differs only in letter case from {twin!r}, "
                                "which has training images: a class needs the same name, "
                                "case included, in every subset")
                    break
            raise DatasetError(message)
        if not val and val_fraction > 0:
            # train/ (and maybe test/) but no val/: draw validation images from train/, as
            # a person would by hand, and say so.
            train, val, _ = stratified_split(
                train, class_names, val_fraction=val_fraction, test_fraction=0.0, seed=split_seed
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
            items, class_names, val_fraction=val_fraction, test_fraction=test_fraction,
            seed=split_seed,
        )
        split_source = "stratified"
        if not val:
            if val_fraction <= 0:
                raise DatasetError("no validation images: data.val_fraction is 0; set it "
                                   "above 0 (e.g. 0.2) so that training can be checked")
            raise DatasetError("too few images to set any aside for validation; every class "
                               "needs at least 2 readable images")
    warnings += _unvalidated_class_warnings(class_names, train, val, split_source)
    return PreparedData(
        root=root, loader_id=loader_id, class_names=class_names, train=train, val=val,
        test=test, bad_files=bad_files, ignored=ignored, split_source=split_source,
        warnings=warnings,
    )


def _same_but_case(a: str, b: str) -> bool:
    return a != b and a.strip().casefold() == b.strip().casefold()


def _case_variant_warnings(class_names: Sequence[str]) -> list[str]:
    """'Cats' and 'cats' are two classes to a classifier; a person rarely means that."""
    groups: dict[str, list[str]] = {}
    for name in class_names:
        groups.setdefault(name.strip().casefold(), []).append(name)
    return [f"classes {' and '.join(repr(n) for n in names)} differ only in letter case and "
            "are trained as different classes; if they are one class, give them one name "
            "(merge the folders, or correct the labels)"
            for names in groups.values() if len(names) > 1]


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
        return [f"{noun} {_names(names)} {verb} no validation images, so {its} accuracy is "
                f"never measured; add images to {Path('val', names[0])}{os.sep} (for a "
                "manifest: rows with split=val)"]
    per_class = Counter(label for _, label in train)
    described = ", ".join(f"{class_names[i]!r} ({per_class[i]} readable image"
                          f"{'' if per_class[i] == 1 else 's'})" for i in missing[:5])
    if len(missing) > 5:
        described += f" and {len(missing) - 5} more"
    return [f"{noun} {described} {verb} too few images to set any aside, so validation has "
            f"none of {'it' if one else 'them'} and {its} accuracy is never measured; give "
            "every class at least 2 images (better 10 or more)"]


def stratified_split(
    items: Sequence[tuple[str, int]],
    class_names: Sequence[str],
    *,
    val_fraction: float,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> tuple[list[tuple[str, int]], list[tuple[str, int]], list[tuple[str, int]]]:
    """Split ``items`` per class, reproducibly for a seed.

    Each class is shuffled with its own generator seeded by (seed, class name), so adding
    a class or an image elsewhere does not reshuffle the others. A class with at least 2
    images gives at least 1 to validation (when ``val_fraction`` > 0), one with at least
    3 gives at least 1 to test (when ``test_fraction`` > 0); every class keeps at least
    one training image.
    """
    by_class: dict[int, list[str]] = {}
    for path, label in items:
        by_class.setdefault(int(label), []).append(path)
    train, val, test = [], [], []
    for label in sorted(by_class):
        paths = sorted(by_class[label])
        random.Random(f"{seed}:{class_names[label]}").shuffle(paths)
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
        test += [(p, label) for p in paths[n_val:n_val + n_test]]
        train += [(p, label) for p in paths[n_val + n_test:]]
    return (sorted(train, key=_item_order), sorted(val, key=_item_order),
            sorted(test, key=_item_order))


def _item_order(item: tuple[str, int]) -> tuple[int, str]:
    return item[1], item[0]


def _probe_all(paths: list[str], progress: ProgressCallback | None,
               should_stop: Callable[[], bool] | None) -> list[str | None]:
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
                raise DataPreparationCancelled("data preparation was cancelled")
            now = time.monotonic()
            if progress is not None and (done == total or now - last_report >= 0.1):
                last_report = now
                progress(done, total)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return reasons


def _refuse_unusable_classes(root, class_names, good, bad_files, samples) -> None:
    good_per_class = Counter(s.label for s in good)
    if not good:
        example_path, example_reason = bad_files[0]
        raise DatasetError(f"none of the {len(samples)} images in {root} could be read (e.g. "
                           f"{example_path}: {example_reason})")
    label_of = {s.path: s.label for s in samples}
    bad_per_class = Counter(label_of[p] for p, _ in bad_files)
    empty = [name for name in class_names if good_per_class[name] == 0]
    if empty:
        described = [f"{name!r} ({bad_per_class[name]} unreadable)" if bad_per_class[name]
                     else repr(name) for name in empty]
        noun = "class" if len(empty) == 1 else "classes"
        raise DatasetError(f"{noun} {', '.join(described)} in {root} "
                           f"{'has' if len(empty) == 1 else 'have'} no readable images; add "
                           "images to its folder or remove the folder")
    if len(class_names) < 2:
        raise DatasetError(f"only one class ({class_names[0]!r}) found in {root}; a classifier "
                           "needs at least two: put each class's images in its own subfolder")


def _no_images_message(root: str, class_names: list[str], ignored: list) -> str:
    message = (f"no images found in {root}; supported extensions: "
               f"{', '.join(IMAGE_EXTENSIONS)}. Expected one subfolder per class, e.g. "
               f"{Path(root) / 'cats' / 'img001.jpg'}")
    if class_names:
        message += f" (class folders found but empty: {_names(class_names)})"
    if ignored:
        path, reason = ignored[0]
        message += f"; {len(ignored)} file(s) skipped, e.g. {Path(path).name}: {reason}"
    return message


def _names(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# --------------------------------------------------------------------------- transforms


def build_transform(preprocessing: Preprocessing, augment: str, train: bool):
    """The transform from an RGB PIL image to a normalised float tensor.

    Evaluation (and training with ``augment="none"``): resize the short side to
    ``preprocessing.resize``, centre-crop ``preprocessing.crop``, scale to [0, 1],
    normalise. ``"light"`` trains on random resized crops (60-100 % of the area) with
    horizontal flips; ``"strong"`` adds colour jitter and TrivialAugmentWide. The result is
    a picklable ``torchvision.transforms.v2.Compose``.
    """
    from torchvision.transforms import v2

    _check_augment(augment)
    if not train or augment == "none":
        return v2.Compose([
            v2.ToImage(),
            v2.Resize(preprocessing.resize, interpolation=interpolation_mode(preprocessing),
                      antialias=True),
            v2.CenterCrop(preprocessing.crop),
            *normalization_steps(preprocessing),
        ])
    return v2.Compose([v2.ToImage(), *augmentation_steps(preprocessing, augment),
                       *normalization_steps(preprocessing)])


def augmentation_steps(preprocessing: Preprocessing, augment: str) -> list:
    """The random steps of ``augment`` (``"light"`` or ``"strong"``), from an image
    tensor to a ``preprocessing.crop`` square; shared by :func:`build_transform` and the
    decoded-image cache."""
    from torchvision.transforms import v2

    _check_augment(augment)
    interpolation = interpolation_mode(preprocessing)
    steps = [
        v2.RandomResizedCrop(preprocessing.crop, scale=(0.6, 1.0), interpolation=interpolation,
                             antialias=True),
        v2.RandomHorizontalFlip(),
    ]
    if augment == "strong":
        steps += [
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05),
            v2.TrivialAugmentWide(interpolation=interpolation),
        ]
    return steps


def normalization_steps(preprocessing: Preprocessing) -> list:
    """From a uint8 image tensor to the normalised float tensor a backbone takes."""
    from torchvision.transforms import v2

    return [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(preprocessing.mean), std=list(preprocessing.std)),
        v2.ToPureTensor(),  # a plain Tensor, not a tv_tensors.Image
    ]


def _check_augment(augment: str) -> None:
    if augment not in ("none", "light", "strong"):
        raise DatasetError(f"augmentation {augment!r} is not one of none, light, strong")


def interpolation_mode(preprocessing: Preprocessing):
    """The torchvision interpolation mode the preprocessing names."""
    from torchvision.transforms import InterpolationMode

    if preprocessing.interpolation not in INTERPOLATIONS:
        raise DatasetError(f"interpolation {preprocessing.interpolation!r} is not one of "
                           f"{', '.join(INTERPOLATIONS)}")
    return InterpolationMode(preprocessing.interpolation)


#: Transform steps that draw nothing at random: they may run on any thread, in any order.
_DETERMINISTIC_STEPS = ("ToImage", "PILToTensor", "ToTensor", "Resize", "CenterCrop", "ToDtype",
                        "ConvertImageDtype", "Normalize", "ToPureTensor", "Identity")


def decode_short_side(transform: Callable | None) -> int | None:
    """The short side an image must keep for ``transform``, or ``None`` for full size.

    A transform that starts (after type conversions) with a resize of the short side to
    N needs N; one that starts with a random resized crop needs enough for its smallest
    crop to still cover the output. :func:`~desktop_tl.core.images.open_rgb` decodes a
    larger JPEG at the smallest DCT scale that keeps this, the transform then resizes as
    on the full-size image. Any other transform gets the full image.
    """
    for step in _steps(transform):
        name = type(step).__name__
        if name in ("ToImage", "PILToTensor", "ToPureTensor"):
            continue
        if name == "Resize":
            size = step.size
            if isinstance(size, int):
                return size
            if isinstance(size, (list, tuple)) and len(size) == 1:
                return int(size[0])
            return None
        if name == "RandomResizedCrop":
            scale, ratio = step.scale, step.ratio
            narrowest = min(float(ratio[0]), 1.0 / float(ratio[1]), 1.0)
            smallest = math.sqrt(float(scale[0]) * narrowest)
            if smallest <= 0:
                return None
            return math.ceil(max(step.size) / smallest)
        return None
    return None


def is_deterministic(transform: Callable | None) -> bool:
    """True when ``transform`` is made only of steps that draw no random numbers."""
    return all(type(step).__module__.startswith("torchvision.transforms")
               and type(step).__name__ in _DETERMINISTIC_STEPS for step in _steps(transform))


def apply_on_any_thread(transform: Callable, image: Any) -> Any:
    """``transform(image)`` for a deterministic torchvision ``Compose``, safe on a
    decoding thread: each step's ``forward`` is called directly, because torch.fx tracing
    on another thread (the frozen prefix's batch-norm folding) replaces
    ``nn.Module.__call__`` for every thread while it runs."""
    for step in _steps(transform):
        forward = getattr(step, "forward", None)
        image = forward(image) if forward is not None else step(image)
    return image


def _steps(transform) -> list:
    """The flat list of steps of a (nested) torchvision ``Compose``; ``[transform]``
    for anything else."""
    if transform is None:
        return []
    inner = getattr(transform, "transforms", None)
    if type(transform).__name__ == "Compose" and isinstance(inner, (list, tuple)):
        return [step for part in inner for step in _steps(part)]
    return [transform]


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class UnreadableImage:
    """Returned by :class:`ImageDataset` instead of a sample whose file no longer decodes;
    :func:`collate_skip_unreadable` drops it from the batch."""

    index: int
    path: str
    reason: str


class ImageDataset(Dataset):
    """``(path, class index)`` items as ``(image tensor, class index)`` samples.

    With ``with_index=True`` a sample is ``(image tensor, class index, item index)``, for
    callers that must know which image each row of a batch is (feature caches, lists of
    misclassified images). An image that fails to decode yields an
    :class:`UnreadableImage` marker rather than an exception, so a worker process survives
    it; :func:`make_loader`'s batches leave it out.

    A sample is made in two steps so that a thread pool can do the first: :meth:`read`
    (decode, and the transform too when it draws nothing at random; safe on any thread)
    and :meth:`finish` (a random transform, drawn in the caller's order).
    """

    def __init__(self, items: Sequence[tuple[str, int]], transform: Callable | None = None,
                 *, with_index: bool = False) -> None:
        self.items = [(str(path), int(label)) for path, label in items]
        self.transform = transform
        self.with_index = with_index
        self.decode_short_side = decode_short_side(transform)
        self._transform_on_read = transform is not None and is_deterministic(transform)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.finish(index, self.read(index))

    def read(self, index: int):
        """The decoded image (transformed, when the transform is deterministic), or an
        :class:`UnreadableImage`."""
        path, _ = self.items[index]
        try:
            image = open_rgb(path, self.decode_short_side)
        except ImageReadError as exc:
            return UnreadableImage(index=int(index), path=path, reason=exc.reason)
        return apply_on_any_thread(self.transform, image) if self._transform_on_read else image

    def finish(self, index: int, read: Any):
        """The sample from what :meth:`read` gave for ``index``."""
        if isinstance(read, UnreadableImage):
            return read
        _, label = self.items[index]
        if self.transform is not None and not self._transform_on_read:
            read = self.transform(read)
        return (read, label, int(index)) if self.with_index else (read, label)


@dataclass
class ImageBatch:
    """A collated batch: ``images`` and ``labels`` are ``None`` when every sample in it was
    unreadable. ``indices`` is set when the dataset returns item indices. ``skipped``
    lists ``(path, reason)`` of the samples left out."""

    images: torch.Tensor | None
    labels: torch.Tensor | None
    indices: torch.Tensor | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def pin_memory(self) -> "ImageBatch":  # called by DataLoader(pin_memory=True)
        def pin(tensor):
            return tensor.pin_memory() if tensor is not None else None

        return ImageBatch(pin(self.images), pin(self.labels), pin(self.indices), self.skipped)


def collate_skip_unreadable(samples: list) -> ImageBatch:
    """Collate ``(tensor, label[, index])`` samples, leaving out :class:`UnreadableImage`
    markers (listed in ``ImageBatch.skipped``). Runs inside worker processes."""
    skipped = [(s.path, s.reason) for s in samples if isinstance(s, UnreadableImage)]
    kept = [s for s in samples if not isinstance(s, UnreadableImage)]
    if not kept:
        return ImageBatch(None, None, None, skipped)
    columns = list(zip(*kept))
    images = default_collate(list(columns[0]))
    labels = default_collate(list(columns[1]))
    indices = default_collate(list(columns[2])) if len(columns) > 2 else None
    return ImageBatch(images, labels, indices, skipped)


class ImageLoader(DataLoader):
    """A DataLoader that yields ``(images, labels)`` and never an unreadable image.

    Iterating gives ``(images, labels)`` tuples; :meth:`batches` gives the
    :class:`ImageBatch` objects (with item indices). Batches whose every image was
    unreadable are skipped, and each unreadable file is recorded once in
    :attr:`unreadable` as ``(path, reason)``.

    Without worker processes, and with ``decode_threads`` of 1 or more over a dataset
    that splits a sample into ``read`` and ``finish`` (:class:`ImageDataset`,
    :class:`~desktop_tl.core.image_cache.DecodedImageDataset`), the next
    :data:`PREFETCH_BATCHES` batches are read on that many threads (Pillow and torch
    release the GIL) while the caller computes on the current one; 0 reads each batch
    here when it is asked for. The sampler, the random
    draws of ``finish`` and the collation run here, in order, so the batches equal those
    of decoding one image after the other.
    """

    def __init__(self, *args: Any, seed: int = 0, decode_threads: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seed = seed
        self.decode_threads = max(0, int(decode_threads))
        self.unreadable: list[tuple[str, str]] = []
        self._unreadable_paths: set[str] = set()

    def set_epoch(self, epoch: int) -> None:
        """Make the shuffle order (and workers' random seeds) a function of (seed, epoch),
        so a resumed run draws the same batches as an uninterrupted one. With persistent
        workers the workers' seeds are drawn once, on the first epoch iterated."""
        if self.generator is not None:
            self.generator.manual_seed((self.seed * 1_000_003 + epoch) % (2**63))

    def batches(self) -> Iterator[Any]:
        for batch in self._collated():
            if isinstance(batch, ImageBatch):
                for path, reason in batch.skipped:
                    if path not in self._unreadable_paths:
                        self._unreadable_paths.add(path)
                        self.unreadable.append((path, reason))
                if batch.images is None:
                    continue
            yield batch

    def __iter__(self) -> Iterator[Any]:
        for batch in self.batches():
            if isinstance(batch, ImageBatch):
                yield batch.images, batch.labels
            else:
                yield batch

    def _collated(self) -> Iterator[Any]:
        threaded = (self.num_workers == 0 and self.decode_threads >= 1 and self._auto_collation
                    and hasattr(self.dataset, "read") and hasattr(self.dataset, "finish"))
        if not threaded:
            yield from super().__iter__()
            return
        from concurrent.futures import ThreadPoolExecutor

        from torch.utils.data._utils.pin_memory import pin_memory

        # The loader's own iterator draws its base seed and starts the sampler exactly as
        # the sequential path does; only fetching the samples is done differently.
        state = super().__iter__()
        dataset = self.dataset
        pending: deque = deque()
        pool = ThreadPoolExecutor(max_workers=self.decode_threads, thread_name_prefix="decode-image")

        def submit_next() -> None:
            try:
                indices = state._next_index()
            except StopIteration:
                return
            pending.append((indices, [pool.submit(dataset.read, i) for i in indices]))

        try:
            for _ in range(PREFETCH_BATCHES):
                submit_next()
            while pending:
                indices, futures = pending.popleft()
                submit_next()
                batch = self.collate_fn([dataset.finish(index, future.result())
                                         for index, future in zip(indices, futures)])
                if state._pin_memory:
                    batch = pin_memory(batch, state._pin_memory_device)
                yield batch
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


#: Batches read ahead by a loader's decoding threads: one being computed on, one ready,
#: one being decoded; more would only hold more decoded images in memory.
PREFETCH_BATCHES = 3


def default_decode_threads() -> int:
    """Threads that decode ahead for a loader without worker processes, while the network
    computes on torch's own threads: half the usable CPUs (decoding at the size needed
    is several times faster than the network's forward pass, so half keeps ahead of it,
    and the other half stays free for the network's threads), at most 4; none on a
    single CPU, where there is nothing to overlap."""
    cpus = _usable_cpus()
    return 0 if cpus <= 1 else max(1, min(4, cpus // 2))


def decode_threads_alone() -> int:
    """Threads for decoding when nothing else computes (building the decoded-image
    store): one per usable CPU, at most 8."""
    return max(1, min(8, _usable_cpus()))


def default_num_workers(num_items: int | None = None) -> int:
    """Worker processes for loading ``num_items`` images on this machine.

    0 (decode in the training process) on machines with 2 or fewer CPUs, where a worker
    would take a core from the model's own threads, and for datasets under
    :data:`SMALL_DATASET_IMAGES` images, where starting workers (each imports torch, a few
    seconds under ``spawn``) costs more than it saves. Otherwise one core is left for the
    training process and at most 4 workers are used, past which JPEG decoding of typical
    batches is no longer the bottleneck.
    """
    cpus = _usable_cpus()
    if cpus <= 2:
        return 0
    if num_items is not None and num_items < SMALL_DATASET_IMAGES:
        return 0
    return min(4, cpus - 1)


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int = -1,
    seed: int = 0,
    drop_last: bool = False,
    device: str | torch.device | None = None,
    multiprocessing_context: str | None = "spawn",
    collate_fn: Callable[[list], Any] = collate_skip_unreadable,
    sampler: Sampler | None = None,
    decode_threads: int = -1,
) -> ImageLoader:
    """A loader over ``dataset`` (usually an :class:`ImageDataset`).

    ``num_workers=-1`` sizes the workers with :func:`default_num_workers`. Workers are
    persistent (started once per loader, not per epoch) and started with ``spawn`` on
    every system: forking a process that runs threads (the GUI, torch's own pools) can
    deadlock, and using one start method everywhere means a Linux test run catches what
    would break on Windows and macOS. Memory is pinned only when ``device`` is CUDA.
    ``seed`` fixes the shuffle order and the workers' random seeds. A ``sampler`` (with
    ``shuffle=False``) sets the order instead, e.g. one whose order changes per epoch
    while the loader and its workers stay. Without workers, ``decode_threads`` threads
    read the next batches ahead (``-1``: :func:`default_decode_threads`; ``0``: one
    image after the other, here, when asked); see :class:`ImageLoader`.
    """
    if num_workers < 0:
        num_workers = default_num_workers(len(dataset))  # type: ignore[arg-type]
    if decode_threads < 0:
        decode_threads = default_decode_threads()
    generator = torch.Generator()
    generator.manual_seed(seed)
    options: dict[str, Any] = {}
    if num_workers > 0:
        options.update(persistent_workers=True, multiprocessing_context=multiprocessing_context)
    return ImageLoader(
        dataset,
        seed=seed,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=collate_fn,
        pin_memory=torch.device(device).type == "cuda" if device is not None else False,
        generator=generator,
        decode_threads=decode_threads,
        **options,
    )


def _usable_cpus() -> int:
    if hasattr(os, "process_cpu_count"):  # Python 3.13+
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1
