"""A terminal progress bar fed by engine events."""

from __future__ import annotations

import re
import sys

from tqdm import tqdm

from ..core import events as ev


class ProgressPrinter:
    """Turns engine events into a tqdm bar per epoch and one line per epoch result."""

    def __init__(self, enabled: bool = True, stream=None) -> None:
        self.enabled = enabled
        # looked up now, not at import: sys.stderr may have been replaced since
        self.stream = sys.stderr if stream is None else stream
        self.bar: tqdm | None = None
        self.epochs = 0
        self._stage: tuple[str, str] | None = None

    def __call__(self, event: object) -> None:
        if isinstance(event, ev.StageChanged):
            self._on_stage(event)
        elif isinstance(event, ev.RunStarted):
            self.epochs = event.epochs
            self._write(
                f"{event.num_train} training / {event.num_val} validation images, "
                f"{len(event.class_names)} classes, {event.device} ({event.precision})"
            )
        elif isinstance(event, ev.BatchEnded):
            self._on_batch(event)
        elif isinstance(event, ev.EpochEnded):
            self._close_bar()
            m = event.metrics
            self._write(
                f"epoch {m['epoch']}/{self.epochs}: train_loss {m['train_loss']:.4f} "
                f"val_loss {m['val_loss']:.4f} val_acc {m['val_acc']:.3f}"
                f"{' (best)' if event.is_best else ''}"
            )
        elif isinstance(event, ev.LogMessage) and event.level in ("warning", "error"):
            self._on_problem(event)
        elif isinstance(event, ev.FreezeApplied):
            self._write(f"freeze change at step {event.step}: {event.changes}")

    def _on_problem(self, event: ev.LogMessage) -> None:
        message = event.message.strip()
        # `desktop-tl train` prints how the run ended as its last line; saying it here too
        # printed every failure twice. A traceback stays in run.log; the last line names
        # the exception.
        if re.match(r"run (failed|cancelled|interrupted)\b", message):
            return
        if message.startswith("Traceback (most recent call last)"):
            return
        first = message.splitlines()[0] if message else ""
        # shown even with --quiet: a random start or skipped images must never go unseen
        tqdm.write(f"{event.level}: {first}", file=self.stream)

    def _on_stage(self, event: ev.StageChanged) -> None:
        key = (event.stage, event.message)
        if not self.enabled:
            return
        if self._stage != key:
            self._close_bar()
            self._stage = key
            if event.total:
                self.bar = tqdm(total=event.total, desc=event.message, file=self.stream, leave=False)
            else:
                self._write(event.message)
        if self.bar is not None and event.total:
            self.bar.n = event.done
            self.bar.refresh()

    def _on_batch(self, event: ev.BatchEnded) -> None:
        if not self.enabled:
            return
        if self.bar is None or self._stage != ("epoch", str(event.epoch)):
            self._close_bar()
            self._stage = ("epoch", str(event.epoch))
            self.bar = tqdm(
                total=event.batches_per_epoch,
                desc=f"epoch {event.epoch + 1}/{self.epochs}",
                file=self.stream,
                leave=False,
                unit="batch",
            )
        self.bar.n = event.batch + 1
        self.bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
        self.bar.refresh()

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self._stage = None

    def _write(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text, file=self.stream)

    def close(self) -> None:
        self._close_bar()
