"""The plugins dialog: what is installed, what each plugin provides, and what went wrong.

Every entry point the plugin host found is one row with a checkbox; unticking it adds
the plugin to the settings' disabled list, which the host reads at the next start (a
loaded plugin cannot be unloaded safely, so changes never apply at once, and the dialog
says so).
"""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..env import env_names
from ..plugin.manager import DISABLED_ENV, normalize_name
from .icons import semantic_colour

RESTART_NOTE = "Turning a plugin on or off takes effect the next time desktop-tl starts."

COLUMNS = ("Enabled", "Plugin", "Distribution", "Version", "Provides", "Status")
_ENABLED, _NAME, _DIST, _VERSION, _PROVIDES, _STATUS = range(len(COLUMNS))

_STATUS_COLOURS = {"loaded": "good", "failed": "bad", "refused": "warning", "disabled": "muted"}
_STATUS_WORDS = {
    "loaded": "loaded",
    "failed": "failed",
    "refused": "refused (incompatible)",
    "disabled": "disabled",
}


def _env_disabled() -> set[str]:
    return {normalize_name(p) for p in env_names(DISABLED_ENV)}


class PluginsDialog(QDialog):
    """Lists ``host.records`` and ``host.problems``; enable/disable goes to
    ``settings.disabled_plugins``."""

    def __init__(self, host: Any, settings: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Plugins")
        self.resize(960, 620)
        self._host = host
        self._settings = settings
        self._records = list(getattr(host, "records", []))
        self._problems = list(getattr(host, "problems", []))
        self._env_blocked = _env_disabled()
        self._filling = False

        self.summary_label = QLabel(self)
        self.summary_label.setObjectName("pluginsSummary")
        self.summary_label.setTextFormat(Qt.TextFormat.RichText)

        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setObjectName("pluginsTable")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.horizontalHeaderItem(_ENABLED).setToolTip(RESTART_NOTE)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        for column in (_ENABLED, _NAME, _DIST, _VERSION, _STATUS):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(_PROVIDES, QHeaderView.ResizeMode.Stretch)
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.itemSelectionChanged.connect(self._show_selected)

        self.details_title = QLabel(self)
        self.details_title.setObjectName("pluginDetailsTitle")
        self.details_title.setTextFormat(Qt.TextFormat.RichText)
        self.details_title.setWordWrap(True)
        self.details = QPlainTextEdit(self)
        self.details.setObjectName("pluginDetails")
        self.details.setReadOnly(True)
        self.details.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.details.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        details_box = QWidget(self)
        details_layout = QVBoxLayout(details_box)
        details_layout.setContentsMargins(0, 6, 0, 0)
        details_layout.addWidget(self.details_title)
        details_layout.addWidget(self.details, 1)

        split = QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.table)
        split.addWidget(details_box)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setChildrenCollapsible(False)

        self.problems_label = QLabel(self)
        self.problems_label.setObjectName("pluginProblems")
        self.problems_label.setWordWrap(True)
        self.problems_label.setTextFormat(Qt.TextFormat.RichText)
        self.problems_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.restart_label = QLabel(RESTART_NOTE, self)
        self.restart_label.setObjectName("pluginsRestartNote")
        self.restart_label.setWordWrap(True)

        self.copy_button = QPushButton("Copy details", self)
        self.copy_button.setToolTip("Copy the selected plugin's details and error, e.g. for a bug report")
        self.copy_button.clicked.connect(self._copy_details)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        bottom = QHBoxLayout()
        bottom.addWidget(self.restart_label, 1)
        bottom.addWidget(self.copy_button)
        bottom.addWidget(buttons)

        layout = QVBoxLayout(self)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.problems_label)
        layout.addWidget(split, 1)
        layout.addLayout(bottom)

        self._initially_enabled: dict[int, bool] = {}
        self._fill()
        self._select_first_interesting()

    # ------------------------------------------------------------------ public

    def is_enabled(self, name: str) -> bool:
        """Whether the row of entry point ``name`` is ticked."""
        for row, record in enumerate(self._records):
            if record.name == name:
                return self.table.item(row, _ENABLED).checkState() == Qt.CheckState.Checked
        raise KeyError(name)

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Tick or untick the row of entry point ``name`` (as a click would)."""
        for row, record in enumerate(self._records):
            if record.name == name:
                state = Qt.CheckState.Checked if enabled else Qt.CheckState.Unchecked
                self.table.item(row, _ENABLED).setCheckState(state)
                return
        raise KeyError(name)

    def select(self, name: str) -> None:
        for row, record in enumerate(self._records):
            if record.name == name:
                self.table.selectRow(row)
                return
        raise KeyError(name)

    def details_text(self) -> str:
        return self.details.toPlainText()

    # ------------------------------------------------------------------ filling

    def _fill(self) -> None:
        self._filling = True
        disabled = {normalize_name(n) for n in self._settings.disabled_plugins}
        palette = self.palette()
        self.table.setRowCount(len(self._records))
        for row, record in enumerate(self._records):
            keys = {normalize_name(record.name), normalize_name(record.distribution)}
            by_env = bool(keys & self._env_blocked)
            enabled = not (keys & disabled) and not by_env
            self._initially_enabled[row] = enabled
            check = QTableWidgetItem()
            flags = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled
            if not by_env:
                flags |= Qt.ItemFlag.ItemIsUserCheckable
            check.setFlags(flags)
            check.setCheckState(Qt.CheckState.Checked if enabled else Qt.CheckState.Unchecked)
            check.setToolTip(
                f"Turned off by the {DISABLED_ENV} environment variable"
                if by_env
                else f"Untick to stop loading this plugin. {RESTART_NOTE}"
            )
            self.table.setItem(row, _ENABLED, check)

            name = QTableWidgetItem(record.name)
            bold = QFont(name.font())
            bold.setBold(True)
            name.setFont(bold)
            self.table.setItem(row, _NAME, name)
            self.table.setItem(row, _DIST, QTableWidgetItem(record.distribution))
            self.table.setItem(row, _VERSION, QTableWidgetItem(record.version))
            provides = ", ".join(record.provides) if record.provides else "—"
            provides_item = QTableWidgetItem(provides)
            provides_item.setToolTip("\n".join(record.provides) or "Nothing (the plugin did not load)")
            self.table.setItem(row, _PROVIDES, provides_item)

            notes = list(getattr(record, "notes", []) or [])
            word = _STATUS_WORDS.get(record.status, record.status)
            colour = _STATUS_COLOURS.get(record.status, "muted")
            if notes and record.status == "loaded":
                word = f"loaded, {len(notes)} warning{'s' if len(notes) != 1 else ''}"
                colour = "warning"
            status = QTableWidgetItem(word)
            status.setForeground(semantic_colour(colour, palette))
            if record.status in ("failed", "refused") or notes:
                status.setFont(bold)
            status.setToolTip(record.summary or record.error or "\n".join(notes))
            self.table.setItem(row, _STATUS, status)
        self._filling = False
        self._update_summary()
        self._update_problems()
        self._update_restart_note()

    def _update_summary(self) -> None:
        total = len(self._records)
        if total == 0:
            self.summary_label.setText("No plugins are installed.")
            return
        counts: dict[str, int] = {}
        for record in self._records:
            counts[record.status] = counts.get(record.status, 0) + 1
        parts = [f"<b>{total} plugin{'s' if total != 1 else ''}</b>"]
        palette = self.palette()
        for status in ("loaded", "failed", "refused", "disabled"):
            if counts.get(status):
                colour = semantic_colour(_STATUS_COLOURS[status], palette).name()
                parts.append(f'<span style="color:{colour}">{counts[status]} {status}</span>')
        self.summary_label.setText(" &nbsp;·&nbsp; ".join(parts))

    def _update_problems(self) -> None:
        if not self._problems:
            self.problems_label.hide()
            return
        colour = semantic_colour("warning", self.palette()).name()
        items = "".join(f"<li>{html.escape(str(p))}</li>" for p in self._problems)
        self.problems_label.setText(
            f'<span style="color:{colour}"><b>Problems found while loading plugins:</b></span>'
            f'<ul style="margin-top:2px; margin-bottom:0px;">{items}</ul>'
        )
        self.problems_label.show()

    def _update_restart_note(self) -> None:
        changed = any(
            (self.table.item(row, _ENABLED).checkState() == Qt.CheckState.Checked) != was
            for row, was in self._initially_enabled.items()
        )
        if changed:
            colour = semantic_colour("warning", self.palette()).name()
            self.restart_label.setText(
                f'<span style="color:{colour}"><b>Saved.</b> Restart desktop_tl to apply the change: '
                "plugins are loaded once, at start.</span>"
            )
        else:
            self.restart_label.setText(RESTART_NOTE)

    def _select_first_interesting(self) -> None:
        for row, record in enumerate(self._records):
            if record.status in ("failed", "refused"):
                self.table.selectRow(row)
                return
        if self._records:
            self.table.selectRow(0)
        else:
            self._show_selected()

    # ------------------------------------------------------------------ reactions

    def _show_selected(self) -> None:
        rows = {index.row() for index in self.table.selectionModel().selectedRows()}
        if len(rows) != 1:
            self.details_title.setText("Select a plugin to see its details.")
            self.details.setPlainText("")
            self.copy_button.setEnabled(False)
            return
        record = self._records[rows.pop()]
        colour = semantic_colour(_STATUS_COLOURS.get(record.status, "muted"), self.palette()).name()
        self.details_title.setText(
            f"<b>{html.escape(str(record.name))}</b> from {html.escape(str(record.distribution))} {html.escape(str(record.version))}"
            f' &nbsp;·&nbsp; <span style="color:{colour}"><b>{html.escape(str(record.status))}</b></span>'
            + (f"<br>{html.escape(str(record.summary))}" if record.summary else "")
        )
        self.details.setPlainText(_describe_record(record))
        self.copy_button.setEnabled(True)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != _ENABLED:
            return
        self._save_disabled()
        self._update_restart_note()

    def _save_disabled(self) -> None:
        """Rewrite the disabled list from the checkboxes, keeping names that match no
        installed plugin (a plugin uninstalled for now stays disabled if it comes back)."""
        known: set[str] = set()
        unticked: list[str] = []
        for row, record in enumerate(self._records):
            known |= {normalize_name(record.name), normalize_name(record.distribution)}
            item = self.table.item(row, _ENABLED)
            blocked_by_env = not (item.flags() & Qt.ItemFlag.ItemIsUserCheckable)
            if item.checkState() != Qt.CheckState.Checked and not blocked_by_env:
                unticked.append(record.name)
        others = [n for n in self._settings.disabled_plugins if normalize_name(n) not in known]
        self._settings.disabled_plugins = [*others, *unticked]

    def _copy_details(self) -> None:
        QGuiApplication.clipboard().setText(self.details_text())


def _describe_record(record: Any) -> str:
    lines = [
        f"Entry point:   {record.name}",
        f"Distribution:  {record.distribution} {record.version}",
        f"Module:        {record.module}",
        f"Status:        {record.status}",
    ]
    if record.provides:
        lines.append("Provides:")
        lines.extend(f"  {item}" for item in record.provides)
    notes = list(getattr(record, "notes", []) or [])
    if notes:
        lines.append("Warnings:")
        lines.extend(f"  {note}" for note in notes)
    if record.error:
        lines.append("")
        lines.append(record.error)
    elif record.status == "disabled":
        lines.append("")
        lines.append("Not imported: it is turned off in the plugin settings or by " + DISABLED_ENV + ".")
    return "\n".join(lines)
