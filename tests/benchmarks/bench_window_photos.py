"""The window on many camera-size photos: data check, thumbnails and a training run.

    .venv/bin/python tests/benchmarks/bench_window_photos.py [--count 10000] [--epochs 10]
        [--augment none] [--pages 12] [--size 1024x640] [--json FILE] [--screenshots DIR]

The photos are bench_photos.py's (real photos cropped, upscaled to 4032 x 3024 and saved
as JPEGs with EXIF orientation), ``--count`` of them as hard links to a pool of distinct
ones (every path is still read and decoded on its own). One process drives the real
window offscreen as a user would, in three phases, while a 10 ms timer on the GUI thread
measures how late the event loop answers (its *stall*):

1. open: the window opens the project (the photos, EfficientNet-Lite0, a linear head,
   head only, the defaults otherwise) and checks the data and builds the model until it is
   ready to train;
2. browse: the dataset browser opens and jumps through ``--pages`` places from top to
   bottom; for each, the time until the thumbnails in view are shown;
3. train: the run starts and, while it trains, the browser jumps through the same places
   again; the phase ends when the run has finished.

Printed per phase: seconds, the longest stall and the 99th percentile of the timer's
lateness; for browsing, the median and longest wait for a page of thumbnails; for the run,
its summary (train seconds, validation accuracy, feature cache), how long after it the
Evaluation tab shows the best checkpoint's results, and the process's peak resident
memory. Nothing here is asserted: it is a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_photos import make_photos, scaled_copy  # noqa: E402
from bench_recipe import peak_rss_mb  # noqa: E402

PHASE_TIMEOUT_S = 3600
#: Stalls listed one by one, with when they began (a person notices about this much).
LONG_STALL_MS = 100


def parse_size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def watch_stalls(probe_ref: list) -> None:
    """Print the GUI thread's stack whenever its timer is late by LONG_STALL_MS: what the
    thread is doing then (or, in a call that holds the GIL elsewhere, where it waits)."""
    import threading
    import traceback

    main_id = threading.main_thread().ident

    def watch() -> None:
        reported = None
        while True:
            time.sleep(0.02)
            if not probe_ref or probe_ref[0]._last is None:
                continue
            probe = probe_ref[0]
            last = probe._last
            if (time.perf_counter() - last) * 1000 > LONG_STALL_MS and reported != last:
                reported = last
                frame = sys._current_frames().get(main_id)
                stack = "".join(traceback.format_stack(frame)[-12:]) if frame else "?"
                print(f"--- GUI thread late at {last - probe.started:.1f} s:\n{stack}", flush=True)

    threading.Thread(target=watch, daemon=True, name="stall-watch").start()


def measure(args: argparse.Namespace, work: Path) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    # Cold: this run's own runs and cache folders, no features from an earlier run.
    os.environ["DTL_RUNS_DIR"] = str(work / "runs")
    os.environ["DTL_CACHE_DIR"] = str(work / "cache")
    os.environ["DTL_FEATURE_CACHE_REUSE"] = "0"

    t0 = time.perf_counter()
    pool = make_photos(work / "pool", args.pool_train, args.pool_val)
    data = scaled_copy(pool, work / "photos", args.count)
    made_s = time.perf_counter() - t0
    print(
        f"{args.count} photos ready in {made_s:.0f} s (a pool of {len(list(pool.glob('*/*/*.JPG')))} distinct)"
    )

    from PySide6.QtCore import QEventLoop, QTimer

    from desktop_tl.core.config import RunConfig
    from desktop_tl.gui.app import Launcher, make_application, release_window
    from desktop_tl.gui.main_window import MainWindow
    from desktop_tl.gui.settings import AppSettings
    from desktop_tl.gui.smoke import UiStallProbe

    class LatenessProbe(UiStallProbe):
        """The smoke test's stall probe, keeping every tick's lateness for percentiles."""

        def start(self) -> None:
            self.lateness: list[float] = []
            self.long_stalls: list[tuple[float, float]] = []  # (seconds into the phase, ms)
            self.started = time.perf_counter()
            super().start()

        def _tick(self) -> None:
            now = time.perf_counter()
            if self._last is not None:
                late = (now - self._last) * 1000.0 - self.interval_ms
                self.lateness.append(late)
                if late >= LONG_STALL_MS:
                    self.long_stalls.append((round(self._last - self.started, 1), round(late)))
            super()._tick()

    if args.stall_stacks:
        watch_stalls(probe_ref := [])
    else:
        probe_ref = None

    config = RunConfig()
    config.data.path = str(data)
    config.data.augment = args.augment
    config.train.epochs = args.epochs
    project = work / "photos.toml"
    config.save(project)

    app = make_application()
    settings = AppSettings(str(work / "settings.ini"))
    window = MainWindow(settings)
    window.resize(*parse_size(args.size))
    probe = LatenessProbe(window)
    if probe_ref is not None:
        probe_ref.append(probe)
    screenshots = Path(args.screenshots) if args.screenshots else None

    def wait_until(predicate, timeout_s: float = PHASE_TIMEOUT_S, poll_ms: int = 20) -> bool:
        if predicate():
            return True
        loop = QEventLoop()
        timer = QTimer()
        deadline = time.perf_counter() + timeout_s

        def poll() -> None:
            if predicate() or time.perf_counter() > deadline:
                loop.quit()

        timer.timeout.connect(poll)
        timer.start(poll_ms)
        loop.exec()
        timer.stop()
        return predicate()

    def pause(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def shot(widget, name: str) -> None:
        if screenshots is not None:
            screenshots.mkdir(parents=True, exist_ok=True)
            widget.grab().save(str(screenshots / f"{name}.png"))

    def phase(name: str, started: float, extra: dict) -> dict:
        result = {
            "seconds": round(time.perf_counter() - started, 1),
            "max_stall_ms": round(probe.max_stall_ms, 1),
            "p99_stall_ms": round(percentile(probe.lateness, 0.99), 1),
            "ticks": probe.ticks,
            "stalls_over_100ms": probe.long_stalls,
            **extra,
        }
        print(f"{name:>7}: " + ", ".join(f"{k} {v}" for k, v in result.items()), flush=True)
        return result

    def browse(browser) -> dict:
        """Jump through the pages; the wait until each page's thumbnails are in."""
        bar = browser.grid.verticalScrollBar()
        wait_until(lambda: bar.maximum() > 0, 60)
        waits = []
        for i in range(args.pages):
            bar.setValue(bar.maximum() * i // max(1, args.pages - 1))
            jumped = time.perf_counter()
            pause(60)  # the browser asks for what is in view once scrolling settles
            wait_until(lambda: not browser.thumbnails.busy, 120)
            waits.append(time.perf_counter() - jumped)
            pause(args.dwell_ms)
        return {
            "page_wait_median_s": round(statistics.median(waits), 3),
            "page_wait_max_s": round(max(waits), 3),
        }

    results: dict = {"count": args.count, "epochs": args.epochs, "augment": args.augment, "size": args.size}
    window.show()
    probe.start()
    started = time.perf_counter()
    launcher = Launcher(window, project=str(project), settings=settings)
    window.launcher = launcher
    launcher.start()
    if launcher.error:
        raise SystemExit(f"the project did not open: {launcher.error}")
    checked = wait_until(lambda: window.data_panel.prepared is not None and not window.data_panel.busy)
    data_checked_s = time.perf_counter() - started
    if not checked or not wait_until(window.is_ready):
        raise SystemExit("the window did not become ready to train")
    prepared = window.data_panel.prepared
    results["open"] = phase(
        "open",
        started,
        {"data_checked_s": round(data_checked_s, 1), "train": len(prepared.train), "val": len(prepared.val)},
    )
    shot(window, "window_photos_ready")

    probe.start()
    started = time.perf_counter()
    window.data_panel.open_browser()
    browser = window.data_panel.browser
    wait_until(lambda: browser.model.rowCount() == args.count, 60)
    results["browse"] = phase("browse", started, browse(browser))
    shot(browser, "window_photos_browser")

    finished: list = []
    window.training.run_finished.connect(finished.append)
    probe.start()
    started = time.perf_counter()
    if not window.start_training():
        raise SystemExit("the window refused to start: " + (window.training.can_start()[1] or "?"))
    pause(2000)
    browsing = browse(browser)
    shot(browser, "window_photos_browser_training")
    wait_until(lambda: bool(finished))
    ended = time.perf_counter()
    # the Evaluation tab scores the run's best checkpoint on its validation images
    wait_until(lambda: window.evaluation_view.evaluation is not None and not window.evaluation_view.busy)
    evaluation_s = time.perf_counter() - ended
    shot(window, "window_photos_trained")
    summary = (finished[0].summary or {}) if finished else {}
    results["train"] = phase(
        "train",
        started,
        {
            **{f"browse_{k}": v for k, v in browsing.items()},
            "status": finished[0].status if finished else "timed out",
            "train_seconds": summary.get("train_seconds"),
            "val_acc": summary.get("val_acc"),
            "features_extracted": {
                entry["subset"]: f"{entry['rows']} rows in {entry['seconds']:.0f} s"
                for entry in summary.get("feature_cache") or []
                if entry.get("event") == "built"
            },
            "plot_redraws": window.plots.redraw_count,
            "evaluation_shown_after_s": round(evaluation_s, 1),
        },
    )
    results["peak_rss_mb"] = round(peak_rss_mb(), 0)
    print(f"peak resident memory {results['peak_rss_mb']:.0f} MB", flush=True)
    probe.stop()
    window.setWindowModified(False)
    release_window(window)
    app.processEvents()
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="photos in the dataset")
    parser.add_argument("--pool-train", type=int, default=20, help="distinct training photos per class")
    parser.add_argument("--pool-val", type=int, default=10, help="distinct validation photos per class")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--augment", default="none", help="none, light or strong")
    parser.add_argument("--pages", type=int, default=12, help="places the browser jumps to")
    parser.add_argument("--dwell-ms", type=int, default=300, help="time spent on each page")
    parser.add_argument("--size", default="1024x640", help="window size WxH")
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument("--screenshots", help="save pictures of the window here")
    parser.add_argument(
        "--stall-stacks", action="store_true", help="print the GUI thread's stack in each long stall"
    )
    parser.add_argument("--keep", action="store_true", help="keep the photos and the run folder")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dtl-window-photos-"))
    try:
        results = measure(args, work)
    finally:
        if args.keep:
            print(f"kept in {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if results["train"]["status"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
