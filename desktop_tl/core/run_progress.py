"""How far a run has got: the epochs done, the best and lowest validation results, and
what early stopping counts. Saved in every checkpoint's training state and read back on
resume, so a resumed run ends where an uninterrupted one would have."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunProgress:
    epoch: int = -1  # the last epoch done, 0-based; -1 before the first
    step: int = 0  # optimiser steps taken
    history: list[dict[str, Any]] = field(default_factory=list)  # one metrics row per epoch
    freeze_changes: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"val_acc": -1.0, "val_loss": math.inf, "epoch": -1})
    # early stopping watches the loss alone
    lowest: dict[str, Any] = field(default_factory=lambda: {"val_loss": math.inf, "epoch": -1})
    stale_epochs: int = 0

    @property
    def next_epoch(self) -> int:
        return self.epoch + 1

    def record(self, metrics: dict[str, Any]) -> bool:
        """Add an epoch's metrics row; whether it is the best epoch so far."""
        epoch = int(metrics["epoch"])  # 1-based
        val_acc, val_loss = metrics["val_acc"], metrics["val_loss"]
        self.epoch = epoch - 1
        self.history.append(metrics)
        is_best = (val_acc, -val_loss) > (self.best["val_acc"], -self.best["val_loss"])
        if val_loss < self.lowest["val_loss"] - 1e-6:
            self.lowest = {"val_loss": val_loss, "epoch": epoch}
            self.stale_epochs = 0
        else:
            self.stale_epochs += 1
        if is_best:
            self.best = {"val_acc": val_acc, "val_loss": val_loss, "epoch": epoch}
        return is_best

    def stopped_early(self, patience: int) -> bool:
        return bool(patience and self.stale_epochs >= patience)

    def early_stop_reason(self) -> str:
        return (
            f"validation loss did not improve for {self.stale_epochs} epochs "
            f"(lowest at epoch {self.lowest['epoch']})"
        )

    def to_state(self) -> dict[str, Any]:
        """The entries of a checkpoint's training state that this covers."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "best": self.best,
            "lowest": self.lowest,
            "stale_epochs": self.stale_epochs,
            "freeze_changes": self.freeze_changes,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunProgress:
        progress = cls()
        return cls(
            epoch=int(state["epoch"]),
            step=int(state["step"]),
            history=list(state["history"]),
            freeze_changes=list(state.get("freeze_changes", [])),
            best=dict(state["best"]),
            lowest=dict(state.get("lowest", progress.lowest)),
            stale_epochs=int(state["stale_epochs"]),
        )

    def snapshot(self) -> RunProgress:
        """A copy whose history and best later epochs do not change (what the checkpoint on
        disk covers); the freeze changes stay shared, as a summary lists every one made."""
        return RunProgress(
            self.epoch,
            self.step,
            list(self.history),
            self.freeze_changes,
            dict(self.best),
            dict(self.lowest),
            self.stale_epochs,
        )
