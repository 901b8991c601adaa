"""The prediction view's work on worker threads: predicting images and loading a run.

Images are predicted in chunks on one :class:`~desktop_tl.gui.background.JobQueue`,
which runs one job at a time, so the predictor is never used by two jobs at once,
results appear steadily and a change of model or a Clear takes effect quickly; results
of a model no longer in use are dropped. A saved run's checkpoint is loaded on a second
queue, so predictions go on meanwhile; only the latest load is answered.
"""

from __future__ import annotations

from typing import Any, Sequence

from PySide6.QtCore import QObject, Signal

from .background import JobFailure, JobQueue

#: Images predicted per worker job: small enough that results appear steadily and a
#: change of model or a Clear takes effect quickly.
CHUNK_SIZE = 8
#: Most classes the view can show per image.
MAX_TOP_K = 10


def _predict_chunk(predictor: Any, paths: Sequence[str], top_k: int) -> list[Any]:
    """Worker thread: the predictor is used by one job at a time (the queue runs one)."""
    return list(predictor.predict(list(paths), top_k=top_k))


def _load_predictor(path: str, checkpoint: str) -> Any:
    """Worker thread: read a run folder's chosen checkpoint (best or last) into a predictor."""
    from ..core.predict import Predictor

    return Predictor.from_run_dir(path, checkpoint=checkpoint)


class PredictionJobs(QObject):
    """Predicts with the model in use and loads saved runs, off the GUI thread."""

    #: Predictions of the model in use (core.predict.Prediction objects).
    predicted = Signal(list)
    #: A chunk could not be predicted with the model in use (its paths, the JobFailure).
    predict_failed = Signal(list, object)
    #: The run asked for last was loaded (its folder, the predictor).
    run_loaded = Signal(str, object)
    #: The run asked for last could not be loaded (its folder, the JobFailure).
    run_failed = Signal(str, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._predictions = JobQueue(self)
        self._loads = JobQueue(self)
        self._predictor: Any = None
        #: The run folder being loaded (None while none is).
        self.loading_run: str | None = None

    def use(self, predictor: Any) -> None:
        """Predict with ``predictor`` (None: no model) from now on; chunks of the model
        used before that have not started are dropped."""
        self._predictions.cancel_pending()
        self._predictor = predictor

    def predict(self, paths: list[str]) -> None:
        """Predict ``paths`` with the model in use, as many classes as the view can show."""
        predictor = self._predictor
        want = max(1, min(MAX_TOP_K, len(predictor.class_names)))
        for start in range(0, len(paths), CHUNK_SIZE):
            chunk = paths[start : start + CHUNK_SIZE]
            self._predictions.submit(
                _predict_chunk,
                predictor,
                chunk,
                want,
                on_result=lambda results, p=predictor: self._on_predicted(p, results),
                on_error=lambda failure, p=predictor, c=chunk: self._on_predict_failed(p, c, failure),
            )

    def cancel_predictions(self) -> None:
        """Drop the chunks that have not started (a Clear)."""
        self._predictions.cancel_pending()

    def load_run(self, folder: str, checkpoint: str) -> None:
        """Load ``checkpoint`` ("best" or "last") of the run in ``folder``; a load asked
        for before is no longer answered."""
        self._loads.cancel_pending()
        self.loading_run = folder
        self._loads.submit(
            _load_predictor,
            folder,
            checkpoint,
            on_result=lambda predictor, f=folder: self._on_loaded(f, predictor),
            on_error=lambda failure, f=folder: self._on_load_failed(f, failure),
        )

    @property
    def loading(self) -> bool:
        """True while a run is being loaded."""
        return self._loads.busy

    @property
    def busy(self) -> bool:
        """True while a run loads or images are being predicted."""
        return self._predictions.busy or self._loads.busy

    def _on_predicted(self, predictor: Any, results: list[Any]) -> None:
        if predictor is self._predictor:
            self.predicted.emit(results)

    def _on_predict_failed(self, predictor: Any, chunk: list[str], failure: JobFailure) -> None:
        if predictor is self._predictor:
            self.predict_failed.emit(chunk, failure)

    def _on_loaded(self, folder: str, predictor: Any) -> None:
        if folder == self.loading_run:
            self.loading_run = None
            self.run_loaded.emit(folder, predictor)

    def _on_load_failed(self, folder: str, failure: JobFailure) -> None:
        if folder == self.loading_run:
            self.loading_run = None
            self.run_failed.emit(folder, failure)
