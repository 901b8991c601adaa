"""Runs side by side: the settings that differ, the final metrics, and whether each run
can be set against the first at all (same dataset, class set and validation images)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .run_history import RunHistoryError, RunRecord, format_share, same_path

#: Settings that say where a run went rather than how it was trained.
_IGNORED_SETTINGS = ("out",)


@dataclass
class Comparison:
    """Two or more runs side by side: settings that differ, final metrics and whether
    each run can be compared with the first (same dataset and class set)."""

    runs: list[RunRecord]
    differing: list[tuple[str, list[Any]]]  # (setting, value per run)
    not_comparable: dict[int, str]  # index in runs -> why it cannot be compared with runs[0]
    without_metrics: list[int]  # runs that have no epoch metrics yet

    @property
    def comparable(self) -> bool:
        return not self.not_comparable

    def metric_rows(self) -> list[tuple[str, list[str]]]:
        return [
            ("status", [r.status for r in self.runs]),
            ("final val accuracy", [format_share(r.val_acc) for r in self.runs]),
            ("best val accuracy", [format_share(r.best_val_acc) for r in self.runs]),
            ("final val loss", ["" if r.val_loss is None else f"{r.val_loss:.4f}" for r in self.runs]),
            ("epochs", [r.epochs_text for r in self.runs]),
            ("duration", [r.duration_text for r in self.runs]),
        ]

    def messages(self) -> list[str]:
        """One sentence per reason to be careful with this comparison."""
        lines = [
            f"{self.runs[i].name} is not comparable with {self.runs[0].name}: {why}"
            for i, why in sorted(self.not_comparable.items())
        ]
        for i in self.without_metrics:
            run = self.runs[i]
            lines.append(
                f"{run.name} has no metrics yet ({run.status}); it has no curves and no final values"
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": [r.to_dict() for r in self.runs],
            "differing_settings": {key: values for key, values in self.differing},
            "not_comparable": {self.runs[i].folder_name: why for i, why in self.not_comparable.items()},
            "without_metrics": [self.runs[i].folder_name for i in self.without_metrics],
            "messages": self.messages(),
        }


def compare_runs(runs: Sequence[RunRecord]) -> Comparison:
    if len(runs) < 2:
        raise RunHistoryError("choose at least two runs to compare")
    flat = [flatten_settings(r.config) for r in runs]
    keys = sorted(set().union(*flat))
    differing = []
    for key in keys:
        if key in _IGNORED_SETTINGS:
            continue
        values = [f.get(key) for f in flat]
        if any(v != values[0] for v in values[1:]):
            differing.append((key, values))
    first = runs[0]
    not_comparable: dict[int, str] = {}
    for index, run in enumerate(runs[1:], start=1):
        why = comparability_problem(first, run)
        if why:
            not_comparable[index] = why
    without = [i for i, r in enumerate(runs) if not r.metrics()]
    return Comparison(list(runs), differing, not_comparable, without)


def comparability_problem(a: RunRecord, b: RunRecord) -> str:
    """Why validation numbers of ``b`` cannot be set against ``a``'s ('' when they can)."""
    if a.dataset and b.dataset and same_path(a.dataset, b.dataset) is False:
        return f"it was trained on a different dataset ({b.dataset}, not {a.dataset})"
    if a.classes and b.classes and a.classes != b.classes:
        if set(a.classes) == set(b.classes):
            return "its classes are in a different order"
        return f"it has a different class set ({', '.join(b.classes)} instead of {', '.join(a.classes)})"
    if not a.classes or not b.classes:
        missing = a if not a.classes else b
        return f"the class set of {missing.name} is unknown (its folder has no summary or split)"
    if a.split_val is not None and b.split_val is not None and a.split_val != b.split_val:
        return "it was validated on different images (another split of the same data)"
    return ""


def flatten_settings(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in (config or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_settings(value, f"{name}."))
        elif isinstance(value, dict):
            flat[name] = "{}"
        else:
            flat[name] = value
    return flat
