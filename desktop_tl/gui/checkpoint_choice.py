"""Which checkpoint of a saved run the views use: its best or its last.

The Evaluation and Prediction tabs each have one :class:`CheckpointCombo`; a choice in
one is mirrored in the other without being announced again.
"""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QWidget

#: The checkpoints of a run a user can choose between, as the combo boxes list them.
CHECKPOINT_CHOICES = (("best", "Best checkpoint"), ("last", "Last checkpoint"))


def checkpoint_text(kind: str, epoch: int | None) -> str:
    """How the views name a run's checkpoint: "best checkpoint, epoch 7"."""
    return f"{kind} checkpoint" + (f", epoch {epoch}" if epoch is not None else "")


class CheckpointCombo(QComboBox):
    """Best checkpoint / Last checkpoint."""

    def __init__(self, tooltip: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        for kind, text in CHECKPOINT_CHOICES:
            self.addItem(text, kind)
        self.setToolTip(tooltip)

    def kind(self) -> str:
        """The checkpoint chosen: "best" or "last"."""
        return str(self.currentData())

    def show_kind(self, kind: str) -> bool:
        """Show ``kind`` as chosen without announcing it (a choice made elsewhere);
        False when it is not one of the choices."""
        index = self.findData(kind)
        if index < 0:
            return False
        if index != self.currentIndex():
            self.blockSignals(True)
            self.setCurrentIndex(index)
            self.blockSignals(False)
        return True
