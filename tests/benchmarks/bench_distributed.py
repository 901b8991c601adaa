"""Images per second of full fine-tuning on 1, 2, ... processes under torchrun, and the
scaling efficiency.

    .venv/bin/python tests/benchmarks/bench_distributed.py [DATASET] [--processes 1,2]
        [--epochs 3] [--batch-size 16] [--threads 1] [--backbone efficientnet_lite0]
        [--json FILE]

DATASET is a folder with ``train/<class>/`` and ``val/<class>/`` image folders. Without
it, two classes of ``resources/sample_dataset`` (brick and gravel: 160 training photos and
a small validation set of 10) are copied into a temporary folder.

Every run trains the whole network (``freeze = "none"``, no augmentation, no feature
cache) with the same global batch: N processes take ``batch_size / N`` images each per
step. One process is an ordinary ``desktop-tl train``; N > 1 is
``python -m torch.distributed.run --nproc-per-node N -m desktop_tl train`` (gloo on the
CPU, nccl on CUDA, where the default for ``--processes`` is 1..the number of GPUs).
Images per second = training images / epoch time (its small validation included), the
median over the epochs after the first (which warms up). Efficiency at N = (images per
second at N) / (N x images per second at 1). On the CPU each process gets ``--threads``
threads, so the figure is the gain from more processes, not from more threads.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def sample_data(root: Path) -> Path:
    from desktop_tl.resources import sample_dataset_dir

    source = sample_dataset_dir()
    for subset, count in (("train", 80), ("val", 5)):
        for name in ("brick", "gravel"):
            target = root / subset / name
            target.mkdir(parents=True, exist_ok=True)
            for image in sorted((source / subset / name).iterdir())[:count]:
                shutil.copy(image, target / image.name)
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(processes: int, data: Path, work: Path, args, device: str) -> dict:
    from desktop_tl.core.config import RunConfig

    config = RunConfig()
    config.data.path = str(data)
    config.data.augment = "none"
    config.model.backbone = args.backbone
    config.model.head = "linear"
    config.freeze.preset = "none"
    config.train.epochs = args.epochs
    config.train.batch_size = args.batch_size
    config.train.feature_cache = "off"
    config.train.device = device
    run_file = work / f"run-{processes}.toml"
    config.save(run_file)
    out = work / f"run-{processes}"
    train = ["-m", "desktop_tl", "train", str(run_file), "--quiet", "--out", str(out)]
    if processes == 1:
        command = [sys.executable, *train]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(processes),
            "--master-port",
            str(free_port()),
            *train,
        ]
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(args.threads),
        DTL_FEATURE_CACHE_REUSE="0",
        DTL_RUNS_DIR=str(work / "runs"),
        DTL_CACHE_DIR=str(work / "cache"),
    )
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    summary = json.loads((out / "summary.json").read_text())
    seconds = [float(row["epoch_seconds"]) for row in rows[1:]] or [float(rows[0]["epoch_seconds"])]
    epoch_s = statistics.median(seconds)
    return {
        "processes": processes,
        "images_per_s": summary["num_train"] / epoch_s,
        "epoch_s": epoch_s,
        "val_acc": summary["val_acc"],
        "device": summary["device"],
        "backend": summary.get("backend", "-"),
    }


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?")
    parser.add_argument(
        "--processes", help="comma-separated process counts (default: 1,2 on the CPU, 1..GPUs on CUDA)"
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="threads per process")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    gpus = torch.cuda.device_count() if args.device != "cpu" else 0
    device = "cuda" if gpus and args.device != "cpu" else "cpu"
    default = list(range(1, gpus + 1)) if gpus else [1, 2]
    counts = [int(n) for n in args.processes.split(",")] if args.processes else default
    if 1 not in counts:
        counts.insert(0, 1)
    with tempfile.TemporaryDirectory(prefix="dtl-bench-distributed-") as tmp:
        work = Path(tmp)
        data = Path(args.dataset) if args.dataset else sample_data(work / "data")
        results = [measure(n, data, work, args, device) for n in counts]
    base = results[0]["images_per_s"]
    for row in results:
        row["efficiency"] = row["images_per_s"] / (row["processes"] * base)
    print(
        f"full fine-tuning of {args.backbone}, global batch {args.batch_size}, {args.epochs} epochs, "
        f"{args.threads} thread(s) per process, on {results[0]['device']}"
    )
    print(
        f"{'processes':>9}  {'backend':>7}  {'images/s':>9}  {'epoch s':>8}  {'efficiency':>10}  {'val acc':>7}"
    )
    for row in results:
        print(
            f"{row['processes']:>9}  {row['backend']:>7}  {row['images_per_s']:>9.1f}  {row['epoch_s']:>8.2f}  "
            f"{row['efficiency']:>10.0%}  {row['val_acc']:>7.3f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
