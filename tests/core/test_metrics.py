"""F1, macro and weighted averages and top-k accuracy against scikit-learn's own."""

from __future__ import annotations

import pytest
import torch
from sklearn import metrics as sk

from desktop_tl.core.metrics import classification_report, detailed_metrics, top_k_accuracy


def _predictions(num_classes: int, count: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, num_classes, (count,), generator=generator)
    logits = torch.randn(count, num_classes, generator=generator)
    logits[torch.arange(count), targets] += 1.0  # better than chance, not perfect
    probabilities = logits.softmax(dim=1)
    return targets, probabilities


@pytest.mark.parametrize("num_classes, seed", [(3, 0), (7, 1), (12, 2)])
def test_averages_f1_and_top_k_equal_scikit_learn(num_classes, seed):
    targets, probabilities = _predictions(num_classes, 200, seed)
    predictions = probabilities.argmax(dim=1)
    report = classification_report(targets, predictions, num_classes)
    detailed = detailed_metrics(report.confusion, probabilities, targets)
    labels = list(range(num_classes))
    y, p = targets.numpy(), predictions.numpy()
    assert detailed.f1 == pytest.approx(
        sk.f1_score(y, p, labels=labels, average=None, zero_division=0), abs=1e-5
    )
    for average, rates in (("macro", detailed.macro), ("weighted", detailed.weighted)):
        assert rates.precision == pytest.approx(
            sk.precision_score(y, p, labels=labels, average=average, zero_division=0), abs=1e-5
        )
        assert rates.recall == pytest.approx(
            sk.recall_score(y, p, labels=labels, average=average, zero_division=0), abs=1e-5
        )
        assert rates.f1 == pytest.approx(
            sk.f1_score(y, p, labels=labels, average=average, zero_division=0), abs=1e-5
        )
    if num_classes > 5:
        assert sorted(detailed.top_k) == [3, 5]
        for k, value in detailed.top_k.items():
            assert value == pytest.approx(
                sk.top_k_accuracy_score(y, probabilities.numpy(), k=k, labels=labels)
            )
        assert detailed.top_k[3] < detailed.top_k[5] <= 1.0
    else:
        assert detailed.top_k == {}


def test_a_class_never_predicted_counts_zero_in_the_macro_average():
    confusion = [[5, 0, 0], [2, 3, 0], [1, 0, 0]]  # class 2 is never predicted, never right
    detailed = detailed_metrics(confusion)
    y = [0] * 5 + [1] * 5 + [2]
    p = [0] * 5 + [0, 0, 1, 1, 1] + [0]
    assert detailed.f1[2] == 0.0
    assert detailed.macro.f1 == pytest.approx(sk.f1_score(y, p, average="macro", zero_division=0), abs=1e-5)
    assert detailed.weighted.recall == pytest.approx(
        sk.recall_score(y, p, average="weighted", zero_division=0), abs=1e-5
    )


def test_top_k_is_one_when_k_covers_every_class():
    targets, probabilities = _predictions(4, 50, 3)
    assert top_k_accuracy(probabilities, targets, 10) == 1.0
    assert top_k_accuracy(probabilities, targets, 1) == pytest.approx(
        float((probabilities.argmax(1) == targets).float().mean())
    )
