"""A one-paragraph message inside a panel: what is wrong (or fine) and what to do.

Panels explain bad input with one of these rather than a dialog or a traceback. It hides
itself when it has nothing to say, and its colours come from the palette so it reads in
light and dark mode alike.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QLabel, QSizePolicy, QWidget

from .icons import mix, semantic_colour

_LEVEL_COLOUR = {"info": "accent", "good": "good", "warning": "warning", "error": "bad"}


class Notice(QLabel):
    """``show_message(level, text)`` with level ``info``, ``good``, ``warning`` or ``error``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.level = ""
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.setVisible(False)

    def show_message(self, level: str, text: str) -> None:
        self.level = level if text else ""
        self.setText(text)
        self._restyle()
        self.setVisible(bool(text))

    def clear_message(self) -> None:
        self.show_message("", "")

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        # Only the application's palette (light/dark switch): the style sheet set here
        # changes this widget's own palette, which must not restyle it again.
        if event.type() == QEvent.Type.ApplicationPaletteChange:
            self._restyle()
        super().changeEvent(event)

    def _restyle(self) -> None:
        if not self.level:
            self.setStyleSheet("")
            return
        palette = QApplication.palette()
        colour = semantic_colour(_LEVEL_COLOUR.get(self.level, "accent"), palette)
        background = mix(palette.color(QPalette.ColorRole.Base), colour, 0.12)
        self.setStyleSheet(
            "QLabel {"
            f" background: {background.name()};"
            f" border-left: 3px solid {colour.name()};"
            " border-radius: 3px; padding: 5px 8px; }"
        )
