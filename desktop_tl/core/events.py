"""What the training engine reports and the commands it accepts between batches.

Events are plain immutable objects delivered to a callback on the training thread; the GUI
turns them into Qt signals, the CLI into a progress bar. Commands are put on the engine's
queue from any thread and applied at the next batch boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .reports import EpochReport, EvaluationReport

# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class StageChanged:
    """A long step before or between epochs (loading data, building the model,
    extracting features...). ``total`` is 0 when unknown; ``done`` counts up to it."""

    stage: str
    message: str
    done: int = 0
    total: int = 0


@dataclass(frozen=True)
class RunStarted:
    run_dir: str
    epochs: int
    batches_per_epoch: int
    class_names: tuple[str, ...]
    num_train: int
    num_val: int
    device: str
    precision: str
    start_epoch: int = 0  # > 0 when resuming


@dataclass(frozen=True)
class BatchEnded:
    epoch: int  # 0-based
    batch: int  # 0-based, within the epoch
    batches_per_epoch: int
    step: int  # global optimiser step, 0-based
    loss: float
    lr: float
    elapsed_s: float  # since the run started training
    eta_s: float | None  # estimated seconds left in the run


@dataclass(frozen=True)
class EpochEnded:
    epoch: int  # 0-based
    report: EpochReport  # training figures and the validation report
    is_best: bool
    step: int  # global step at the end of the epoch

    @property
    def metrics(self) -> dict[str, Any]:
        """The report as one flat map: train_loss, val_loss, val_acc, lr, confusion, ..."""
        return self.report.metrics()


@dataclass(frozen=True)
class FreezeApplied:
    """Freeze changes reached the model at this step (for plot markers, the log and the
    layer tree).

    ``changes`` is what the commands taken at this step did, as one map that
    ``apply_freeze_map`` applies with the same result (empty when every one of them was
    refused). ``state`` is the model's whole trainable state afterwards, in the format of
    a checkpoint's ``freeze_map``: a view that shows it shows exactly what trains.
    ``commands`` counts the SetFreeze commands taken since the run started, these
    included, so a sender knows which of the changes it sent ``state`` already holds.
    """

    step: int
    epoch: int
    changes: dict[str, bool]  # qualified name -> trainable
    trainable_params: int
    total_params: int
    feature_cache: str  # "on", "off" or a short reason it was left
    state: dict[str, bool] = field(default_factory=dict)  # qualified name -> trainable
    commands: int = 0


@dataclass(frozen=True)
class LogMessage:
    level: str  # "info" | "warning" | "error"
    message: str


@dataclass(frozen=True)
class RunFinished:
    """The last event of every run. ``status`` is ``"completed"``, ``"early-stopped"``,
    ``"cancelled"`` or ``"failed"``; ``reason`` says why for the last two (and for a
    non-finite loss).

    ``summary`` is what the run wrote to ``summary.json``; ``validation`` is the report
    of the last epoch's validation and ``test`` that of the test split (None when the
    run has none, or did not get that far).
    """

    status: str
    reason: str
    run_dir: str
    summary: dict[str, Any] = field(default_factory=dict)
    validation: EvaluationReport | None = None
    test: EvaluationReport | None = None


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Cancel:
    pass


@dataclass(frozen=True)
class Pause:
    pass


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class SetFreeze:
    """Set modules (qualified names) trainable (True) or frozen (False).

    Commands are applied in the order they were sent, each over the result of the ones
    before; within one command a deeper name wins over a module that contains it.
    """

    changes: dict[str, bool]
