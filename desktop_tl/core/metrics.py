"""Classification metrics computed from predictions (no extra dependency)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ClassificationReport:
    accuracy: float
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    precision: list[float]
    recall: list[float]
    support: list[int]


def classification_report(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> ClassificationReport:
    targets = targets.to(torch.int64).cpu()
    predictions = predictions.to(torch.int64).cpu()
    confusion = torch.bincount(
        targets * num_classes + predictions, minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)
    true_positive = confusion.diag().to(torch.float64)
    predicted = confusion.sum(dim=0).to(torch.float64)
    actual = confusion.sum(dim=1).to(torch.float64)
    precision = torch.where(predicted > 0, true_positive / predicted.clamp(min=1), torch.zeros_like(predicted))
    recall = torch.where(actual > 0, true_positive / actual.clamp(min=1), torch.zeros_like(actual))
    total = int(confusion.sum())
    accuracy = float(true_positive.sum() / total) if total else 0.0
    return ClassificationReport(
        accuracy=accuracy,
        confusion=confusion.tolist(),
        precision=[round(float(v), 6) for v in precision],
        recall=[round(float(v), 6) for v in recall],
        support=[int(v) for v in actual],
    )
