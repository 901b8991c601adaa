"""Scoring a model on labelled images: the one loop behind validation, the test split
and a predictor's evaluation, and the typed report it returns."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .metrics import classification_report
from .reports import EvaluationReport, Misclassified

Batches = Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # inputs, labels, item indices


@dataclass(frozen=True)
class ItemScores:
    """The logits of every scored item, its true class and its index into the paths
    scored, in item order: what a report was computed from."""

    logits: torch.Tensor  # (items, classes), float32
    targets: torch.Tensor  # (items,)
    indices: torch.Tensor  # (items,)


def evaluate(
    forward: Callable[[torch.Tensor], torch.Tensor],
    batches: Batches,
    class_names: Sequence[str],
    paths: Sequence[str],
    *,
    label_smoothing: float = 0.0,
    gather: Callable[[dict | None], dict | None] | None = None,
) -> EvaluationReport | None:
    """Score ``forward`` (inputs -> logits) on ``batches``; ``paths[i]`` names item ``i``.
    None when no batch came (every image unreadable). ``gather`` joins the per-item
    outputs of the processes of a distributed run (each scored its own share)."""
    return score(forward, batches, class_names, paths, label_smoothing=label_smoothing, gather=gather)[0]


def score(
    forward: Callable[[torch.Tensor], torch.Tensor],
    batches: Batches,
    class_names: Sequence[str],
    paths: Sequence[str],
    *,
    label_smoothing: float = 0.0,
    gather: Callable[[dict | None], dict | None] | None = None,
    keep_logits: bool = False,
) -> tuple[EvaluationReport | None, ItemScores | None]:
    """:func:`evaluate`, and with ``keep_logits`` the logits it was computed from."""
    losses, preds, targets, probs, item_indices, kept = [], [], [], [], [], []
    with torch.inference_mode():
        for inputs, labels, indices in batches:
            logits = forward(inputs).float()
            labels = labels.to(logits.device)
            losses.append(
                nn.functional.cross_entropy(
                    logits, labels, reduction="none", label_smoothing=label_smoothing
                ).cpu()
            )
            top = logits.softmax(dim=1).max(dim=1)
            preds.append(top.indices.cpu())
            probs.append(top.values.cpu())
            targets.append(labels.cpu())
            item_indices.append(indices)
            if keep_logits:
                kept.append(logits.cpu())
    outputs = None
    if targets:
        outputs = {
            "losses": torch.cat(losses),
            "targets": torch.cat(targets),
            "preds": torch.cat(preds),
            "probs": torch.cat(probs),
            "indices": torch.cat(item_indices),
        }
        if keep_logits:
            outputs["logits"] = torch.cat(kept)
    if gather is not None:
        outputs = gather(outputs)
    if outputs is None:
        return None, None
    target, pred, prob, items = outputs["targets"], outputs["preds"], outputs["probs"], outputs["indices"]
    report = classification_report(target, pred, len(class_names))
    wrong = (pred != target).nonzero().flatten().tolist()
    misclassified = [
        Misclassified(
            paths[int(items[i])],
            class_names[int(target[i])],
            class_names[int(pred[i])],
            round(float(prob[i]), 4),
        )
        for i in wrong
    ]
    scores = ItemScores(outputs["logits"], target, items) if "logits" in outputs else None
    return (
        EvaluationReport(
            float(outputs["losses"].mean()),
            report.accuracy,
            report.confusion,
            report.precision,
            report.recall,
            report.support,
            misclassified,
        ),
        scores,
    )
