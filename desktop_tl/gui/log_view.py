"""The log: timestamped messages from the app and the engine, coloured by level."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .icons import is_dark

#: Lines kept on screen; older ones scroll away (the saved log keeps everything).
MAX_VISIBLE_LINES = 20_000

LEVELS = ("debug", "info", "warning", "error")

# (light palette, dark palette) colours per level; "info" uses the normal text colour.
_LEVEL_COLOURS = {
    "debug": ("#6b7280", "#9ca3af"),
    "warning": ("#a15c00", "#f5b041"),
    "error": ("#c62828", "#ff6b6b"),
}


@dataclass(frozen=True)
class LogEntry:
    timestamp: float
    level: str
    message: str

    def as_text(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.timestamp))
        return f"{stamp} {self.level.upper():<7} {self.message}"


class LogView(QWidget):
    """A read-only log with Clear and Save log… buttons.

    Call :meth:`append` on the GUI thread (the worker's signals arrive there). The view
    follows new lines while it is scrolled to the bottom and stays put when the user has
    scrolled up to read something.
    """

    #: Emitted for every warning or error (level, message), e.g. to badge the log's tab.
    problem_logged = Signal(str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._entries: list[LogEntry] = []
        self._counts = {level: 0 for level in LEVELS}

        self._text = QPlainTextEdit(self)
        self._text.setObjectName("logText")
        self._text.setReadOnly(True)
        self._text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self._text.setMaximumBlockCount(MAX_VISIBLE_LINES)
        self._text.setUndoRedoEnabled(False)
        self._text.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self._text.setFont(mono)
        self._text.setPlaceholderText("Messages from loading data, training and plugins appear here.")

        self._summary = QLabel(self)
        self._summary.setObjectName("logSummary")
        self._clear_button = QPushButton("Clear", self)
        self._clear_button.setToolTip("Remove every message from the log")
        self._save_button = QPushButton("Save log…", self)
        self._save_button.setToolTip("Write the whole log to a text file")
        self._clear_button.clicked.connect(self.clear)
        self._save_button.clicked.connect(self._choose_file_and_save)

        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self._summary, 1)
        bar.addWidget(self._clear_button)
        bar.addWidget(self._save_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self._text, 1)
        layout.addLayout(bar)
        self._update_summary()

    # ------------------------------------------------------------------ public API

    def append(self, level: str, message: str) -> None:
        """Add a message. ``level`` is ``debug``, ``info``, ``warning`` or ``error``
        (``critical`` counts as error, anything unknown as info)."""
        level = _normalise_level(level)
        entry = LogEntry(time.time(), level, str(message).rstrip())
        self._entries.append(entry)
        self._counts[level] += 1

        scrollbar = self._text.verticalScrollBar()
        at_bottom = scrollbar.value() >= scrollbar.maximum() - 2
        self._text.appendHtml(self._entry_html(entry))
        if at_bottom:
            scrollbar.setValue(scrollbar.maximum())
        self._update_summary()
        if level in ("warning", "error"):
            self.problem_logged.emit(level, entry.message)

    def clear(self) -> None:
        """Remove every message."""
        self._entries.clear()
        self._counts = {level: 0 for level in LEVELS}
        self._text.clear()
        self._update_summary()

    def entries(self) -> list[LogEntry]:
        return list(self._entries)

    def plain_text(self) -> str:
        """The whole log as text, one line per message with date, time and level."""
        return "".join(entry.as_text() + "\n" for entry in self._entries)

    def save_to(self, path: str | Path) -> None:
        """Write the whole log to ``path`` (UTF-8 text)."""
        Path(path).write_text(self.plain_text(), encoding="utf-8")

    def count(self, level: str) -> int:
        return self._counts.get(_normalise_level(level), 0)

    # ------------------------------------------------------------------ internals

    def _entry_html(self, entry: LogEntry) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(entry.timestamp))
        colour = self._level_colour(entry.level)
        muted = self._level_colour("debug")
        label = {"info": "", "debug": "debug ", "warning": "warning ", "error": "error "}[entry.level]
        first, *rest = entry.message.split("\n")
        weight = "font-weight:600;" if entry.level == "error" else ""
        colour_style = f"color:{colour};" if colour else ""
        # Continuation lines (tracebacks) are indented past the time stamp, which lines up
        # because the log uses a fixed-width font.
        indent = "&nbsp;" * (len(stamp) + 2)
        continuation = "".join(
            f'<br>{indent}<span style="white-space:pre-wrap;{colour_style}">{html.escape(line)}</span>'
            for line in rest
        )
        return (
            f'<span style="color:{muted};">{stamp}</span>&nbsp;&nbsp;'
            f'<span style="white-space:pre-wrap;{colour_style}{weight}">'
            f"{html.escape(label)}{html.escape(first)}</span>{continuation}"
        )

    def _level_colour(self, level: str) -> str:
        pair = _LEVEL_COLOURS.get(level)
        if pair is None:
            return ""
        return pair[1] if is_dark(self.palette()) else pair[0]

    def _rerender(self) -> None:
        self._text.clear()
        for entry in self._entries[-MAX_VISIBLE_LINES:]:
            self._text.appendHtml(self._entry_html(entry))
        bar = self._text.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _update_summary(self) -> None:
        total = len(self._entries)
        if total == 0:
            self._summary.setText("No messages")
            return
        parts = [f"{total} message{'s' if total != 1 else ''}"]
        for level in ("warning", "error"):
            n = self._counts[level]
            if n:
                colour = self._level_colour(level)
                parts.append(f'<span style="color:{colour};">{n} {level}{"s" if n != 1 else ""}</span>')
        self._summary.setText(" · ".join(parts))

    def _choose_file_and_save(self) -> None:
        default = time.strftime("desktop_tl-log-%Y%m%d-%H%M%S.txt")
        path, _ = QFileDialog.getSaveFileName(
            self, "Save log", default, "Text files (*.txt *.log);;All files (*)"
        )
        if not path:
            return
        try:
            self.save_to(path)
        except OSError as exc:
            QMessageBox.warning(
                self,
                "Could not save the log",
                f"The log could not be written to {path}:\n{exc.strerror or exc}\n\n"
                "Choose a folder you can write to.",
            )

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._rerender()
            self._update_summary()


def _normalise_level(level: str) -> str:
    level = str(level).lower()
    if level in ("critical", "fatal", "exception"):
        return "error"
    if level == "warn":
        return "warning"
    return level if level in LEVELS else "info"
