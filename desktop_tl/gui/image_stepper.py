"""The row under an enlarged image that steps through a list of images: Previous and Next
(and the arrow keys), where in the list the image is, then the dialog's own buttons."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget


class ImageStepper:
    """``step(-1)`` and ``step(+1)`` go to the previous and the next image; ``row`` is the
    layout to add under the image. Made before the dialog's own buttons, so that Tab goes
    from Previous and Next to them, as the row reads."""

    def __init__(self, dialog: QWidget, step: Callable[[int], None]) -> None:
        self.previous_button = QPushButton("◀ Previous", dialog)
        self.next_button = QPushButton("Next ▶", dialog)
        self.position_label = QLabel(dialog)
        self.previous_button.clicked.connect(lambda: step(-1))
        self.next_button.clicked.connect(lambda: step(1))
        QShortcut(QKeySequence(Qt.Key.Key_Left), dialog, activated=lambda: step(-1))
        QShortcut(QKeySequence(Qt.Key.Key_Right), dialog, activated=lambda: step(1))
        self.row = QHBoxLayout()
        self.row.addWidget(self.previous_button)
        self.row.addWidget(self.next_button)
        self.row.addStretch(1)
        self.row.addWidget(self.position_label)
        self.row.addStretch(1)
        self.add_buttons()

    def add_buttons(self, *buttons: QPushButton) -> None:
        """The dialog's own buttons, at the row's end."""
        for button in buttons:
            self.row.addWidget(button)
        for button in (self.previous_button, self.next_button, *buttons):
            button.setAutoDefault(False)  # Enter does not step or close

    def show_position(self, index: int, count: int) -> None:
        self.position_label.setText(f"{index + 1:,} of {count:,}")
        self.previous_button.setEnabled(index > 0)
        self.next_button.setEnabled(index < count - 1)
