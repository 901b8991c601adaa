"""Prediction with a trained model, from a run folder or from a model in memory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..plugin.descriptors import Preprocessing
from .cancelled import Cancelled
from .checkpoints import find_run_checkpoint
from .evaluation import evaluate, score
from .model import TransferModel, build_head
from .reports import EvaluationReport


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (class, probability)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "top": [{"class": name, "probability": round(prob, 6)} for name, prob in self.top],
            "error": self.error,
        }


@dataclass(frozen=True)
class ScoredEvaluation:
    """An evaluation with every scored image's class probabilities, true class and path
    (one row each, in the order scored; unreadable images left out)."""

    report: EvaluationReport | None
    probabilities: torch.Tensor  # (images, classes)
    targets: torch.Tensor  # (images,)
    paths: list[str]


class Predictor:
    """A trained classifier with the preprocessing its backbone's weights expect."""

    def __init__(
        self,
        model: TransferModel,
        class_names: Sequence[str],
        preprocessing: Preprocessing,
        device: str | torch.device = "cpu",
        source: str = "",
        checkpoint: str = "",
        epoch: int | None = None,
    ) -> None:
        from .transforms import build_transform

        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.class_names = list(class_names)
        self.preprocessing = preprocessing
        self.transform = build_transform(preprocessing, "none", train=False)
        self.source = source
        self.checkpoint = checkpoint  # "best" or "last" for a run's checkpoint, else ""
        self.epoch = epoch  # the 1-based epoch the checkpoint was saved after

    @classmethod
    def from_run_dir(
        cls, path: str | Path, device: str = "cpu", host: Any = None, checkpoint: str | None = None
    ) -> Predictor:
        """Load a checkpoint of a run folder (or a checkpoint folder itself).

        ``checkpoint`` None: the best one, or the last when there is no best;
        ``"best"`` or ``"last"``: exactly that one, with a clear error when it is missing
        (the views name the checkpoint they show, so they must not get the other one)."""
        from ..plugin.manager import get_host
        from .checkpoints import CheckpointError, load_checkpoint

        path = Path(path)
        if checkpoint is None:
            found = find_run_checkpoint(path, "best")
        elif checkpoint not in ("best", "last"):
            raise UserError(f"checkpoint must be 'best' or 'last', not {checkpoint!r}")
        elif not path.exists():
            raise CheckpointError(f"run folder {path} does not exist")
        else:
            try:
                found = load_checkpoint(path / "checkpoints" / checkpoint)
            except CheckpointError:
                when = (
                    "no epoch improved on the validation accuracy yet, or the run stopped "
                    "before its first epoch ended"
                    if checkpoint == "best"
                    else "the run stopped before its first epoch ended"
                )
                raise CheckpointError(
                    f"{path.name} has no {checkpoint} checkpoint ({when}); choose the other "
                    "checkpoint or train the run again"
                ) from None
        checkpoint_kind = found.path.name.removesuffix(".old")
        checkpoint = found
        meta = checkpoint.meta
        if not isinstance(meta, dict) or not {"backbone", "head", "classes", "preprocessing"} <= meta.keys():
            raise CheckpointError(
                f"checkpoint metadata in {checkpoint.path} is incomplete; the "
                "checkpoint is damaged, train the run again"
            )
        host = host or get_host()
        provider, model_name = host.resolve_backbone(meta["backbone"])
        # The checkpoint holds every weight; the backbone's own initial weights are not needed.
        backbone = provider.create(model_name, "none")
        _, _, head = build_head(
            host,
            meta["head"]["id"],
            meta["head"].get("options", {}),
            backbone.feature_dim,
            len(meta["classes"]),
        )
        model = TransferModel(backbone.module, head)
        try:
            model.load_state_dict(checkpoint.model_state())
        except RuntimeError as exc:
            raise UserError(f"checkpoint {checkpoint.path} does not fit {meta['backbone']}: {exc}") from None
        epoch = meta.get("epoch")
        return cls(
            model,
            meta["classes"],
            Preprocessing.from_dict(meta["preprocessing"]),
            device=device,
            source=str(checkpoint.path),
            checkpoint=checkpoint_kind if checkpoint_kind in ("best", "last") else "",
            epoch=int(epoch) if isinstance(epoch, int) else None,
        )

    @classmethod
    def from_model(cls, built, class_names: Sequence[str], device: str = "cpu") -> Predictor:
        """A predictor over a copy of an in-memory model (training may go on with the original)."""
        import copy

        model = copy.deepcopy(built.model).to("cpu")
        return cls(model, class_names, built.backbone.preprocessing, device=device, source="current model")

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The model's class scores for a batch of preprocessed images."""
        return self.model(images.to(self.device))

    def evaluate(
        self, items: Sequence[tuple[str | Path, int]], batch_size: int = 16
    ) -> EvaluationReport | None:
        """Score the model on labelled images ``(path, class index)`` with the loop that
        scores validation and the test split; None when no image could be read."""
        from .loaders import ImageDataset, make_loader

        items = [(str(path), int(label)) for path, label in items]
        loader = make_loader(
            ImageDataset(items, self.transform, with_index=True),
            batch_size=batch_size,
            shuffle=False,
            num_workers=0,
        )
        batches = ((b.images, b.labels, b.indices) for b in loader.batches())
        return evaluate(self.logits, batches, self.class_names, [path for path, _ in items])

    def kept_evaluation(self, items: Sequence[tuple[str | Path, int]], root: str) -> ScoredEvaluation | None:
        """The evaluation the run made of ``items`` (its validation split, images in
        ``root``) with this checkpoint's weights, from the logits kept beside them, as
        :meth:`evaluate_with_probabilities` gives it; None when the checkpoint kept none
        for that split (an older run, another split, a set too large to keep)."""
        from .validation_scores import read_scores

        if not self.source:
            return None
        items = [(str(path), int(label)) for path, label in items]
        scores = read_scores(Path(self.source), items, root, len(self.class_names))
        if scores is None:
            return None
        paths = [path for path, _ in items]
        report = evaluate(
            lambda logits: logits, [(scores.logits, scores.targets, scores.indices)], self.class_names, paths
        )
        return self._scored_evaluation(report, scores, paths)

    def _scored_evaluation(
        self, report: EvaluationReport | None, scores: Any, paths: list[str]
    ) -> ScoredEvaluation:
        """The probabilities, true classes and paths of ``scores`` (an ItemScores, or None
        when no image was scored) beside ``report``."""
        if scores is None:
            n = len(self.class_names)
            return ScoredEvaluation(report, torch.zeros(0, n), torch.zeros(0, dtype=torch.int64), [])
        return ScoredEvaluation(
            report,
            scores.logits.softmax(dim=1),
            scores.targets.to(torch.int64),
            [paths[int(i)] for i in scores.indices],
        )

    def evaluate_with_probabilities(
        self,
        items: Sequence[tuple[str | Path, int]],
        batch_size: int = 16,
        should_stop: Callable[[], bool] | None = None,
    ) -> ScoredEvaluation:
        """:meth:`evaluate`, plus every scored image's class probabilities and true class
        (rows in the order of ``items``, unreadable images left out) for the metrics that
        need more than the top class (top-k accuracy). ``should_stop()`` is asked before
        each batch is scored; true raises :class:`~desktop_tl.core.cancelled.Cancelled`."""
        from .loaders import ImageDataset, make_loader

        items = [(str(path), int(label)) for path, label in items]
        loader = make_loader(
            ImageDataset(items, self.transform, with_index=True),
            batch_size=batch_size,
            shuffle=False,
            num_workers=0,
        )

        def batches():
            for b in loader.batches():
                if should_stop is not None and should_stop():
                    raise Cancelled()
                yield b.images, b.labels, b.indices

        paths = [path for path, _ in items]
        report, scores = score(self.logits, batches(), self.class_names, paths, keep_logits=True)
        return self._scored_evaluation(report, scores, paths)

    @torch.inference_mode()
    def predict(self, paths: Sequence[str | Path], top_k: int = 5, batch_size: int = 16) -> list[Prediction]:
        """Top-k classes per image; an unreadable image gets its reason, not an exception."""
        from .transforms import decode_short_side
        from .images import open_rgb

        top_k = max(1, min(int(top_k), len(self.class_names)))
        results: list[Prediction] = [Prediction(str(p)) for p in paths]
        # Decode one batch at a time so a folder of thousands of images stays small in memory.
        for start in range(0, len(paths), batch_size):
            ready: list[tuple[int, torch.Tensor]] = []
            for i in range(start, min(start + batch_size, len(paths))):
                try:
                    ready.append((i, self.transform(open_rgb(paths[i], decode_short_side(self.transform)))))
                except UserError as exc:
                    results[i].error = str(exc)
                except OSError as exc:
                    results[i].error = f"cannot read {paths[i]}: {exc.strerror or exc}"
            if not ready:
                continue
            probs = self.logits(torch.stack([tensor for _, tensor in ready])).float().softmax(dim=1).cpu()
            values, indices = probs.topk(top_k, dim=1)
            for (i, _), vals, idxs in zip(ready, values, indices):
                results[i].top = [(self.class_names[int(j)], float(v)) for v, j in zip(vals, idxs)]
        return results


def write_predictions_csv(path: str | Path, results: Sequence[Any], top_k: int) -> None:
    """A prediction table: the image's path, then label and probability for each of the
    top ``top_k``, then why it could not be read (empty when it was). ``results`` are
    :class:`Prediction`-like (``path``, ``top``, ``error``)."""
    import csv
    import io

    from .atomic import atomic_write_text

    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(
        ["path", *[f"{what}_{k}" for k in range(1, top_k + 1) for what in ("label", "probability")], "error"]
    )
    for r in results:
        cells = [cell for name, prob in list(r.top)[:top_k] for cell in (name, f"{prob:.6f}")]
        writer.writerow([r.path, *cells, *[""] * (2 * top_k - len(cells)), r.error or ""])
    try:
        atomic_write_text(Path(path), table.getvalue())
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
