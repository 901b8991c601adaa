"""A saved run's validation split scored with one of its checkpoints (best or last).

:class:`CheckpointSource` is the header of the evaluation view for a saved run: it
names the run and checkpoint the numbers come from, offers the other checkpoint, and
scores the chosen one off the GUI thread with :func:`evaluate_checkpoint`. That loads the
checkpoint as a predictor and scores the run's validation images (its split.json) with
it; the report, the detailed metrics and each image's class probabilities come back
with the predictor, so predictions can use the same model.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shiboken6 import isValid
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from .background import LatestRequest, run_in_background
from .checkpoint_choice import CheckpointCombo


@dataclass(frozen=True)
class CheckpointEvaluation:
    """A run's validation split scored with one of its checkpoints."""

    run_dir: str
    checkpoint: str  # "best" or "last"
    predictor: Any
    report: Any  # core.reports.EvaluationReport
    detailed: Any  # core.metrics.DetailedMetrics
    probabilities: dict[str, list[float]]  # per scored image, in class order
    missing: int  # validation images listed in split.json that no longer exist
    problem: str = ""  # why the checkpoint loaded but could not be scored (report is None)

    @property
    def epoch(self) -> int | None:
        return self.predictor.epoch


def evaluate_checkpoint(
    run_dir: str, checkpoint: str, should_stop: Callable[[], bool] | None = None
) -> CheckpointEvaluation:
    """Worker thread: load ``checkpoint`` of ``run_dir`` and score the run's validation
    images (its split.json) with it. A checkpoint that cannot be loaded raises a UserError
    that says why; one that loads but cannot be scored (images gone) comes back with its
    ``problem``, since predicting does not need the dataset. ``should_stop()`` true
    raises Cancelled between batches (a large validation split takes minutes)."""
    from ..core.predict import Predictor
    from ..errors import UserError

    predictor = Predictor.from_run_dir(run_dir, checkpoint=checkpoint)
    try:
        return _score_validation(run_dir, predictor, checkpoint, should_stop)
    except UserError as exc:
        return CheckpointEvaluation(
            run_dir, predictor.checkpoint or checkpoint, predictor, None, None, {}, 0, problem=str(exc)
        )


def _score_validation(
    run_dir: str, predictor: Any, checkpoint: str, should_stop: Callable[[], bool] | None
) -> CheckpointEvaluation:
    from ..core.data import PreparedData
    from ..core.metrics import detailed_metrics
    from ..core.run_folder import SPLIT_FILE
    from ..errors import UserError

    split = Path(run_dir) / SPLIT_FILE
    if not split.exists():
        raise UserError(
            f"{Path(run_dir).name} has no {SPLIT_FILE}, so its validation images are "
            "not known; train the run again to evaluate it"
        )
    prepared = PreparedData.load_manifest(split)
    if list(prepared.class_names) != list(predictor.class_names):
        raise UserError(
            f"the classes in {SPLIT_FILE} differ from the checkpoint's; the run folder "
            "was changed after training"
        )
    items = list(prepared.val)
    if not items:
        raise UserError(f"{Path(run_dir).name} has no validation images in {SPLIT_FILE}")
    present = [item for item in items if os.path.exists(item[0])]
    if not present:
        raise UserError(
            f"none of the {len(items)} validation images of this run exist any more "
            f"(e.g. {items[0][0]}); put the dataset back in {prepared.root} to evaluate it"
        )
    scored = None
    if len(present) == len(items):  # the gallery shows the images: all must be there
        scored = predictor.kept_evaluation(items, prepared.root)  # what the run computed
    if scored is None:
        scored = predictor.evaluate_with_probabilities(present, should_stop=should_stop)
    if scored.report is None:
        raise UserError("none of the run's validation images could be read")
    detailed = detailed_metrics(scored.report.confusion, scored.probabilities, scored.targets)
    probabilities = {
        os.path.abspath(path): row.tolist() for path, row in zip(scored.paths, scored.probabilities)
    }
    return CheckpointEvaluation(
        run_dir,
        predictor.checkpoint or checkpoint,
        predictor,
        scored.report,
        detailed,
        probabilities,
        len(items) - len(present),
    )


class CheckpointSource(QWidget):
    """Which run and checkpoint an evaluation shows, and Best/Last to choose another.
    Hidden while the results are not a saved run's."""

    #: The user chose the best or the last checkpoint ("best"/"last").
    chosen = Signal(str)
    #: The chosen checkpoint was scored (a CheckpointEvaluation; its report is None when
    #: the checkpoint loaded but its validation images could not be scored).
    evaluated = Signal(object)
    #: The chosen checkpoint could not be loaded (its kind, the exception).
    failed = Signal(str, object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._run_dir: str | None = None
        self.run_name = ""
        self._evaluation: CheckpointEvaluation | None = None
        self._pending: str | None = None  # the checkpoint being scored
        self._requests = LatestRequest()
        self._task: Any = None
        self.label = QLabel(self)
        self.label.setObjectName("evaluationCheckpoint")
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setWordWrap(True)
        self.combo = CheckpointCombo(
            "Evaluate the run with its best checkpoint (highest validation accuracy) or its "
            "last one; the Prediction tab uses the same",
            self,
        )
        self.combo.setObjectName("evaluationCheckpointChoice")
        self.combo.currentIndexChanged.connect(lambda _index: self.chosen.emit(self.combo.kind()))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 0)
        layout.addWidget(self.label, 1)
        layout.addWidget(QLabel("Model:", self))
        layout.addWidget(self.combo)
        self.hide()

    def evaluate(self, run_dir: str | os.PathLike[str], *, name: str = "", on_screen: bool = False) -> None:
        """Score the chosen checkpoint of ``run_dir`` off the GUI thread, unless it is
        already ``on_screen`` or on its way; :attr:`evaluated` or :attr:`failed` follows."""
        folder = os.path.abspath(os.fspath(run_dir))
        kind = self.combo.kind()
        current = self._evaluation
        if (self._run_dir == folder and current is not None and current.checkpoint == kind and on_screen) or (
            self._run_dir == folder and self.busy and self._pending == kind
        ):
            return
        self.run_name = name or (self.run_name if folder == self._run_dir else Path(folder).name)
        self._run_dir = folder
        self._pending = kind
        self.show()
        self.label.setText(f"Evaluating <b>{html.escape(self.run_name)}</b> with its {kind} checkpoint…")
        ticket = self._requests.begin()
        self._stop_scoring()  # its answer would be dropped: free the processor now
        self._task = run_in_background(
            lambda task, f=folder, k=kind: evaluate_checkpoint(f, k, task.should_stop),
            on_result=ticket.only_current(self._on_evaluated),
            on_error=ticket.only_current(lambda exc, _tb, k=kind: self._on_failed(k, exc)),
            name="evaluate checkpoint",
        )

    def forget(self) -> None:
        """The results shown are no saved run's: drop the run (and any scoring under way)."""
        self._requests.drop()
        self._stop_scoring()
        self._task = None
        self._pending = None
        self._run_dir = None
        self._evaluation = None
        self.hide()

    def _stop_scoring(self) -> None:
        if self._task is not None:
            self._task.cancel()

    @property
    def busy(self) -> bool:
        """True while a checkpoint is being scored."""
        task = self._task
        return task is not None and not task.wait(0)

    @property
    def run_dir(self) -> str | None:
        """The saved run shown (or being scored); None for results of no saved run."""
        return self._run_dir

    @property
    def evaluation(self) -> CheckpointEvaluation | None:
        """The last evaluation that was scored (None when it failed or could not be scored)."""
        return self._evaluation

    def _on_evaluated(self, result: CheckpointEvaluation) -> None:
        if not isValid(self):
            return  # the window closed while the checkpoint was being scored
        self._task = None
        self._pending = None
        self._evaluation = result if result.report is not None else None
        self.evaluated.emit(result)

    def _on_failed(self, kind: str, exc: BaseException) -> None:
        if not isValid(self):
            return  # the window closed while the checkpoint was being scored
        self._task = None
        self._pending = None
        self._evaluation = None
        self.failed.emit(kind, exc)
