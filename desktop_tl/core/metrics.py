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


def classification_report(
    targets: torch.Tensor, predictions: torch.Tensor, num_classes: int
) -> ClassificationReport:
    targets = targets.to(torch.int64).cpu()
    predictions = predictions.to(torch.int64).cpu()
    confusion = torch.bincount(
        targets * num_classes + predictions, minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)
    true_positive = confusion.diag().to(torch.float64)
    predicted = confusion.sum(dim=0).to(torch.float64)
    actual = confusion.sum(dim=1).to(torch.float64)
    precision = torch.where(
        predicted > 0, true_positive / predicted.clamp(min=1), torch.zeros_like(predicted)
    )
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


@dataclass(frozen=True)
class AveragedRates:
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class DetailedMetrics:
    """The figures an evaluation shows beyond accuracy: F1 per class, macro (every class
    counts the same) and weighted (by support) averages, and top-k accuracy."""

    f1: list[float]
    macro: AveragedRates
    weighted: AveragedRates
    top_k: dict[int, float]  # k -> share of images whose true class is among the k most likely


def f1_scores(precision: list[float], recall: list[float]) -> list[float]:
    """Harmonic mean per class; 0 where precision and recall are both 0."""
    return [2 * p * r / (p + r) if p + r > 0 else 0.0 for p, r in zip(precision, recall)]


def top_k_accuracy(probabilities: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    """Share of rows whose true class is among their ``k`` highest probabilities."""
    if probabilities.numel() == 0:
        return 0.0
    k = max(1, min(int(k), probabilities.shape[1]))
    top = probabilities.topk(k, dim=1).indices
    hits = (top == targets.to(torch.int64).view(-1, 1)).any(dim=1)
    return float(hits.to(torch.float64).mean())


def top_k_values(num_classes: int) -> list[int]:
    """The k worth showing: top-3 and top-5 once there are more than five classes (with
    fewer, top-5 would be always 1 and top-3 nearly so)."""
    return [3, 5] if num_classes > 5 else []


def detailed_metrics(
    confusion: list[list[int]], probabilities: torch.Tensor | None = None, targets: torch.Tensor | None = None
) -> DetailedMetrics:
    """F1, averages and top-k from a confusion matrix (rows: true class) and, for top-k,
    each image's class probabilities with its true class."""
    n = len(confusion)
    matrix = torch.tensor(confusion, dtype=torch.int64).reshape(n, n) if n else torch.zeros(0, 0)
    cells = torch.repeat_interleave(torch.arange(n * n), matrix.flatten()) if n else torch.zeros(0)
    report = classification_report(cells // max(n, 1), cells % max(n, 1), n)
    f1 = f1_scores(report.precision, report.recall)
    support = report.support
    total = sum(support)

    def averaged(weights: list[float]) -> AveragedRates:
        scale = sum(weights)
        if not scale:
            return AveragedRates(0.0, 0.0, 0.0)
        mean = lambda values: sum(w * v for w, v in zip(weights, values)) / scale  # noqa: E731
        return AveragedRates(mean(report.precision), mean(report.recall), mean(f1))

    top_k: dict[int, float] = {}
    if probabilities is not None and targets is not None and len(targets):
        top_k = {k: top_k_accuracy(probabilities, targets, k) for k in top_k_values(n)}
    return DetailedMetrics(
        f1=f1,
        macro=averaged([1.0] * n),
        weighted=averaged([float(s) for s in support]) if total else AveragedRates(0.0, 0.0, 0.0),
        top_k=top_k,
    )
