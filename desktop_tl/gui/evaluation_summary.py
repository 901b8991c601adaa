"""What an evaluation's numbers say in words: the headline over the results and the
averages under the per-class table, and the per-class rates and averages of results
that came as a confusion matrix only (per-epoch results, run summaries).
"""

from __future__ import annotations

import html
from typing import Any, Sequence

from PySide6.QtGui import QColor


def summary_html(
    class_names: Sequence[str], confusion: Sequence[Sequence[int]], caption: str, muted: QColor
) -> str:
    """Accuracy, how many were misclassified and the hardest class, with ``caption``
    (where the numbers come from) in the ``muted`` colour."""
    total = sum(sum(row) for row in confusion)
    correct = sum(confusion[i][i] for i in range(len(confusion)))
    wrong = total - correct
    if total == 0:
        text = "No validation images were evaluated."
    else:
        accuracy = correct / total
        text = (
            f"Accuracy <b>{accuracy:.1%}</b> on {total} validation image{'s' if total != 1 else ''}"
            f" &nbsp;·&nbsp; {wrong} misclassified"
        )
        weakest = _weakest_class(class_names, confusion)
        if weakest and wrong:
            text += f" &nbsp;·&nbsp; hardest class: <b>{html.escape(str(weakest[0]))}</b> (recall {weakest[1]:.0%})"
    if caption:
        text += f' &nbsp;<span style="color:{muted.name()}">({html.escape(str(caption))})</span>'
    return text


def averages_html(detailed: Any) -> str:
    """The macro and weighted averages and top-k accuracy (core.metrics.DetailedMetrics)."""

    def rates(name: str, r: Any) -> str:
        return f"<b>{name}</b> precision {r.precision:.1%} · recall {r.recall:.1%} · F1 {r.f1:.1%}"

    lines = [rates("Macro average:", detailed.macro), rates("Weighted average:", detailed.weighted)]
    if detailed.top_k:
        lines.append(
            " · ".join(f"<b>Top-{k} accuracy</b> {v:.1%}" for k, v in sorted(detailed.top_k.items()))
        )
    return "<br>".join(lines)


def _weakest_class(
    class_names: Sequence[str], confusion: Sequence[Sequence[int]]
) -> tuple[str, float] | None:
    best: tuple[str, float] | None = None
    for i, name in enumerate(class_names):
        total = sum(confusion[i])
        if total:
            recall = confusion[i][i] / total
            if best is None or recall < best[1]:
                best = (name, recall)
    return best


def detailed_from_confusion(confusion: Sequence[Sequence[int]]) -> Any:
    """F1 and the averages of results that came as a matrix only (per-epoch results,
    run summaries); top-k needs the probabilities, so it is left out."""
    from ..core.metrics import detailed_metrics

    return detailed_metrics([list(row) for row in confusion])


def rates_from_confusion(confusion: Sequence[Sequence[int]]) -> tuple[list[float], list[float]]:
    """Precision and recall per class, by the engine's own definitions (core.metrics).
    Only for results that did not carry them (summaries of older runs); torch is loaded
    by the time any result can arrive."""
    import torch

    from ..core.metrics import classification_report

    n = len(confusion)
    cells = torch.repeat_interleave(torch.arange(n * n), torch.tensor(confusion, dtype=torch.int64).flatten())
    report = classification_report(cells // n, cells % n, n)
    return report.precision, report.recall
