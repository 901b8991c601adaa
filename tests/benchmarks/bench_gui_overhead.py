"""Training through the window against the same run headless.

    .venv/bin/python tests/benchmarks/bench_gui_overhead.py [--epochs 5] [--rounds 3]
        [--reuse-features] [--json FILE]

Each round runs, in fresh subprocesses, the demo through the real window and worker
thread (``desktop-tl gui --demo --run --exit-when-done --report R.json``, offscreen)
and the same configuration headless (``desktop-tl train --demo --batch-size 16
--quiet``), alternating which goes first so that other load on a shared machine hits
both alike. The engine's ``train_seconds`` (from the first epoch to the end, in
``summary.json`` and the report) is compared per round; the table gives the ratios,
their median and the ratio of each side's fastest run (the one least disturbed by other
load), with the window's ``max_ui_stall_ms`` and ``window_shown_s`` from its report.
The two runs' ``run.toml`` are compared, so a difference in configuration cannot pass
for overhead.

By default every run starts cold: its own runs and cache folders and
``DTL_FEATURE_CACHE_REUSE=0``, so each run extracts the frozen backbone's features
itself. ``--reuse-features`` lets runs reuse them from disk as a user's repeated runs do
(then the measured part is mostly the head's training, about a second).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("desktop-tl")
#: The demo trains in batches of 16 (``desktop_tl.resources.demo_config``).
DEMO_BATCH_SIZE = 16
RUN_TIMEOUT_S = 1800


def _toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(path, "rb") as f:
        return tomllib.load(f)


def _env(folder: Path, reuse: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen", DTL_RUNS_DIR=str(folder / "runs"), DTL_CACHE_DIR=str(folder / "cache")
    )
    if not reuse:
        env["DTL_FEATURE_CACHE_REUSE"] = "0"
    return env


def run_window(folder: Path, epochs: int, reuse: bool) -> dict:
    folder.mkdir(parents=True)
    report = folder / "report.json"
    command = [
        str(CLI),
        "gui",
        "--demo",
        "--run",
        "--exit-when-done",
        "--report",
        str(report),
        "--epochs",
        str(epochs),
        "--settings",
        str(folder / "settings.ini"),
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command, env=_env(folder, reuse), cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    wall = time.perf_counter() - started
    if done.returncode != 0 or not report.is_file():
        raise SystemExit(f"the window's run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(report.read_text(encoding="utf-8"))
    if result.get("status") != "completed":
        raise SystemExit(f"the window's run did not complete: {result}")
    result["process_seconds"] = round(wall, 2)
    return result


def run_headless(folder: Path, epochs: int, reuse: bool) -> dict:
    folder.mkdir(parents=True)
    run_dir = folder / "runs" / "headless"
    command = [
        str(CLI),
        "train",
        "--demo",
        "--epochs",
        str(epochs),
        "--batch-size",
        str(DEMO_BATCH_SIZE),
        "--quiet",
        "--out",
        str(run_dir),
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command, env=_env(folder, reuse), cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    wall = time.perf_counter() - started
    summary_path = run_dir / "summary.json"
    if done.returncode != 0 or not summary_path.is_file():
        raise SystemExit(f"the headless run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    summary["process_seconds"] = round(wall, 2)
    summary["run_dir"] = str(run_dir)
    return summary


def config_differences(window_run: str, headless_run: str) -> list[str]:
    """Settings that differ between the two runs' run.toml (the run folder aside)."""
    a, b = _toml(Path(window_run) / "run.toml"), _toml(Path(headless_run) / "run.toml")
    differences = []
    for section in sorted(set(a) | set(b)):
        if section == "out":
            continue
        left, right = a.get(section), b.get(section)
        if isinstance(left, dict) and isinstance(right, dict):
            for key in sorted(set(left) | set(right)):
                if left.get(key) != right.get(key):
                    differences.append(
                        f"{section}.{key}: window {left.get(key)!r}, headless {right.get(key)!r}"
                    )
        elif left != right:
            differences.append(f"{section}: window {left!r}, headless {right!r}")
    return differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--reuse-features", action="store_true", help="let runs reuse extracted features from earlier runs"
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if not CLI.exists():
        raise SystemExit(f"{CLI} not found; install the project (pip install -e .)")

    rows = []
    load = []
    with tempfile.TemporaryDirectory(prefix="bench-gui-") as tmp:
        for round_no in range(1, args.rounds + 1):
            order = ("window", "headless") if round_no % 2 else ("headless", "window")
            results: dict[str, dict] = {}
            for kind in order:
                folder = Path(tmp) / f"round{round_no}-{kind}"
                load.append(os.getloadavg()[0])
                runner = run_window if kind == "window" else run_headless
                results[kind] = runner(folder, args.epochs, args.reuse_features)
                print(
                    f"round {round_no} {kind}: train {results[kind]['train_seconds']:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
            window, headless = results["window"], results["headless"]
            rows.append(
                {
                    "round": round_no,
                    "order": "/".join(order),
                    "window_train_s": window["train_seconds"],
                    "headless_train_s": headless["train_seconds"],
                    "ratio": window["train_seconds"] / headless["train_seconds"],
                    "max_ui_stall_ms": window.get("max_ui_stall_ms"),
                    "window_shown_s": window.get("window_shown_s"),
                    "backend_ready_s": window.get("backend_ready_s"),
                    "window_run_wall_s": window.get("run_wall_seconds"),
                    "val_acc": (window.get("val_acc"), headless.get("val_acc")),
                    "config_differences": config_differences(window["run_dir"], headless["run_dir"]),
                }
            )

    ratios = [row["ratio"] for row in rows]
    print(
        f"\n{args.epochs} epochs, demo dataset, EfficientNet-Lite0, "
        f"{'features reused from disk' if args.reuse_features else 'cold feature cache'}; "
        f"load average during the runs {min(load):.1f} to {max(load):.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    print(
        f"{'round':>5} {'order':>16} {'window s':>9} {'headless s':>10} {'ratio':>6} "
        f"{'stall ms':>9} {'shown s':>8} {'ready s':>8}"
    )
    for row in rows:
        print(
            f"{row['round']:>5} {row['order']:>16} {row['window_train_s']:>9.2f} "
            f"{row['headless_train_s']:>10.2f} {row['ratio']:>6.3f} "
            f"{row['max_ui_stall_ms'] or 0:>9.1f} {row['window_shown_s'] or 0:>8.2f} "
            f"{row['backend_ready_s'] or 0:>8.2f}"
        )
    median = statistics.median(ratios)
    spread = (max(ratios) - min(ratios)) if len(ratios) > 1 else 0.0
    print(
        f"median window/headless train_seconds: {median:.3f} "
        f"(ratios {min(ratios):.3f} to {max(ratios):.3f}, spread {spread:.3f}); "
        f"target <= 1.05"
    )
    # On a shared machine the fastest run of each side is the one least slowed by others.
    best = min(r["window_train_s"] for r in rows) / min(r["headless_train_s"] for r in rows)
    print(f"fastest window / fastest headless train_seconds: {best:.3f}")
    print(
        f"max_ui_stall_ms: median {statistics.median(r['max_ui_stall_ms'] for r in rows):.1f}, "
        f"worst {max(r['max_ui_stall_ms'] for r in rows):.1f} (target < 100)"
    )
    print(
        f"window_shown_s: median {statistics.median(r['window_shown_s'] for r in rows):.2f}, "
        f"worst {max(r['window_shown_s'] for r in rows):.2f} (target < 1.5)"
    )
    differences = sorted({d for row in rows for d in row["config_differences"]})
    if differences:
        print("configuration differences (the comparison is not like for like):")
        for difference in differences:
            print(f"  {difference}")
    else:
        print("the window's and the headless run.toml agree (apart from the run folder)")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "epochs": args.epochs,
                    "rows": rows,
                    "median_ratio": median,
                    "best_ratio": best,
                    "load": load,
                },
                indent=2,
                default=str,
            )
            + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
