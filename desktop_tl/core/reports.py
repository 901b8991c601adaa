"""The typed results a run reports: how a model did on a set of images, and one epoch.

Plain dataclasses without torch, so that front ends can import them (with the events
that carry them) before the engine is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Misclassified:
    path: str
    true: str
    pred: str
    prob: float  # the predicted class's probability

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "true": self.true, "pred": self.pred, "prob": self.prob}


@dataclass(frozen=True)
class EvaluationReport:
    """How a model did on a set of labelled images. ``loss`` uses the label smoothing
    it was asked for (training's, so the two loss curves are comparable)."""

    loss: float
    accuracy: float
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    precision: list[float]
    recall: list[float]
    support: list[int]
    misclassified: list[Misclassified] = field(default_factory=list)

    @property
    def num_images(self) -> int:
        return sum(self.support)

    def misclassified_dicts(self) -> list[dict[str, Any]]:
        return [m.to_dict() for m in self.misclassified]


@dataclass(frozen=True)
class EpochReport:
    """One finished epoch: its training figures and its validation report."""

    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    lr: float  # the head's learning rate during the epoch
    epoch_seconds: float
    feature_cache: str  # the cache state at the epoch's end (``on@stage``, ``val@stage``, ``off``)
    validation: EvaluationReport

    @property
    def val_loss(self) -> float:
        return self.validation.loss

    @property
    def val_acc(self) -> float:
        return self.validation.accuracy

    def row(self) -> dict[str, Any]:
        """The epoch's row in ``metrics.csv``, the run's history and checkpoint metadata."""
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "train_acc": self.train_acc,
            "val_loss": self.val_loss,
            "val_acc": self.val_acc,
            "lr": self.lr,
            "epoch_seconds": self.epoch_seconds,
            "feature_cache": self.feature_cache,
        }

    def metrics(self) -> dict[str, Any]:
        """:meth:`row` with the per-class validation figures (plots, progress lines)."""
        v = self.validation
        return {
            **self.row(),
            "per_class_precision": v.precision,
            "per_class_recall": v.recall,
            "support": v.support,
            "confusion": v.confusion,
        }
