"""A spin box for values spanning decades (learning rates, weight decay).

It shows 0.001 or 1e-05 rather than a row of zeros, accepts typed scientific notation and
steps 1-2-5 (1e-4, 2e-4, 5e-4, 1e-3, ...). With a minimum of 0, stepping down from the
smallest step reaches 0 and stepping up from 0 starts at that smallest step.
"""

from __future__ import annotations

import math

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QDoubleSpinBox, QWidget


class DecadeSpinBox(QDoubleSpinBox):
    """Values from ``minimum`` to ``maximum`` stepped 1-2-5; ``smallest_step`` is the first
    value above 0 when ``minimum`` is 0."""

    def __init__(
        self, minimum: float, maximum: float, smallest_step: float = 1e-6, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setDecimals(12)  # the shown text is 3 significant digits; the value keeps more
        self.setRange(minimum, maximum)
        self.setKeyboardTracking(False)
        self.smallest_step = smallest_step

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt override
        return f"{value:.3g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802 - Qt override
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int) -> object:
        stripped = text.strip()
        if not stripped:
            return QValidator.State.Intermediate, text, pos
        try:
            value = float(stripped)
        except ValueError:
            if all(c in "0123456789.eE-+" for c in stripped):
                return QValidator.State.Intermediate, text, pos
            return QValidator.State.Invalid, text, pos
        if self.minimum() <= value <= self.maximum():
            return QValidator.State.Acceptable, text, pos
        return QValidator.State.Intermediate, text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802 - Qt override
        value = self.value()
        floor = self.smallest_step
        for _ in range(abs(steps)):
            if steps > 0:
                value = floor if value < floor * 0.9999 else next_125(value, up=True)
            elif value <= floor * 1.0001:
                value = 0.0  # clamped to the minimum below
            else:
                value = next_125(value, up=False)
        self.setValue(min(max(value, self.minimum()), self.maximum()))


def next_125(value: float, up: bool) -> float:
    """The next value of the 1-2-5 ladder above (or below) a positive ``value``."""
    exponent = math.floor(math.log10(value))
    ladder = [m * 10.0**e for e in (exponent - 1, exponent, exponent + 1) for m in (1, 2, 5)]
    if up:
        return next(v for v in ladder if v > value * 1.0001)
    return next(v for v in reversed(ladder) if v < value * 0.9999)
