"""An optional TensorBoard log of a run, for people who live in TensorBoard: the epoch's
losses, accuracies and learning rate as scalars and the validation confusion matrix as an
image, in ``<run folder>/tensorboard``. Off unless ``[train] tensorboard = true``; the
run folder's own files stay the source of truth, so a missing or failing TensorBoard
never stops a run."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import events as ev

LOG_FOLDER = "tensorboard"


def missing_reason() -> str | None:
    """Why TensorBoard logs cannot be written here, or None."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (needs the tensorboard package)
    except ImportError:
        return (
            "TensorBoard logging is on, but the tensorboard package is not installed, so the "
            "run goes on without it; pip install tensorboard, or set [train] tensorboard = false"
        )
    return None


class TensorBoardLog:
    """An engine event subscriber: call it with each event of one run."""

    def __init__(
        self,
        run_dir: str | Path,
        class_names: Sequence[str],
        warn: Callable[[str], None] = lambda message: None,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(run_dir) / LOG_FOLDER
        self.class_names = list(class_names)
        self._warn = warn
        self._writer = SummaryWriter(log_dir=str(self.folder))

    def __call__(self, event: object) -> None:
        if self._writer is None:
            return
        try:
            if isinstance(event, ev.EpochEnded):
                self._epoch(event)
            elif isinstance(event, ev.FreezeApplied) and event.changes:
                self._writer.add_text(
                    "freeze",
                    ", ".join(
                        f"{name} {'trainable' if on else 'frozen'}" for name, on in event.changes.items()
                    ),
                    event.step,
                )
            elif isinstance(event, ev.RunFinished):
                self.close()
        except Exception as exc:  # a full disk or a broken install must not stop training
            self._warn(f"TensorBoard log stopped: {type(exc).__name__}: {exc}")
            self.close()

    def _epoch(self, event: "ev.EpochEnded") -> None:
        report, step = event.report, event.report.epoch  # 1-based, as metrics.csv counts
        for tag, value in (
            ("loss/train", report.train_loss),
            ("loss/validation", report.val_loss),
            ("accuracy/train", report.train_acc),
            ("accuracy/validation", report.val_acc),
            ("learning_rate", report.lr),
            ("epoch_seconds", report.epoch_seconds),
        ):
            self._writer.add_scalar(tag, value, step)
        picture = confusion_matrix_image(report.validation.confusion, self.class_names)
        self._writer.add_image("confusion_matrix/validation", picture, step, dataformats="HWC")
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def confusion_matrix_image(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> np.ndarray:
    """The matrix as an RGB uint8 picture (rows: true class, columns: predicted), counts
    written in the cells, rows shaded by their share."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: it would pick a GUI backend

    matrix = np.asarray(confusion, dtype=float)
    n = max(1, len(class_names))
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(12.0, 2.0 + 0.5 * n)
    figure = Figure(figsize=(size, size), dpi=80)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(n), labels=class_names, rotation=45, ha="right")
    axes.set_yticks(range(n), labels=class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if n <= 30:
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                axes.text(
                    j,
                    i,
                    f"{int(matrix[i, j])}",
                    ha="center",
                    va="center",
                    color="white" if shares[i, j] > 0.5 else "black",
                    fontsize=8,
                )
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
