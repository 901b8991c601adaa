"""Help: the keyboard shortcuts, how the app works, and the versions of what it runs on.

The shortcut list is read from the window's own actions and shortcuts each time it is
shown, so it cannot drift from what the keys do. The "How it works" page is an HTML file
bundled under ``resources/help/``, shown without any network access.
"""

from __future__ import annotations

import html
import importlib.metadata
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QUrl, qVersion
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QMenu,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from ..resources import resources_dir

HELP_PAGE = "how_it_works.html"
PAGES = ("shortcuts", "how", "about")


def help_page_path() -> Path:
    return resources_dir() / "help" / HELP_PAGE


# --------------------------------------------------------------------------- shortcuts


@dataclass(frozen=True)
class ShortcutEntry:
    """One key combination and what it does, with the object that owns it."""

    keys: QKeySequence
    what: str
    owner: QObject  # the QAction, QShortcut or button the keys belong to

    @property
    def portable_keys(self) -> str:
        """The keys as Qt writes them everywhere ("Ctrl+R"), for comparisons."""
        return self.keys.toString(QKeySequence.SequenceFormat.PortableText)

    @property
    def shown_keys(self) -> str:
        """The keys as this platform writes them (⌘R on macOS)."""
        return self.keys.toString(QKeySequence.SequenceFormat.NativeText)


def action_name(action: QAction) -> str:
    """An action's menu text without its mnemonic ampersands or trailing ellipsis."""
    text = action.text().replace("&&", "\0").replace("&", "").replace("\0", "&")
    return text.rstrip("…").rstrip(".").strip()


def _tab_of(widget: QObject | None, window: QWidget) -> str:
    """The name of the window's tab that holds ``widget`` ("" for the window itself)."""
    while widget is not None and widget is not window:
        parent = widget.parent()
        stack = parent.parent() if isinstance(parent, QStackedWidget) else None
        if isinstance(stack, QTabWidget) and isinstance(widget, QWidget):
            return stack.tabText(stack.indexOf(widget)).replace("&", "")
        widget = parent
    return ""


def _where(what: str, owner: QObject, window: QWidget) -> str:
    tab = _tab_of(owner.parent() if isinstance(owner, (QAction, QShortcut)) else owner, window)
    return f"{what} ({tab} tab)" if tab else what


def window_shortcuts(window: QWidget) -> list[ShortcutEntry]:
    """Every key combination the window's actions, shortcuts and buttons answer to, in the
    order they were created; those that work only on one tab say which. A QShortcut that
    stands in for an action on the same keys (one that answers while the action is
    disabled) is listed once, under the action."""
    entries: list[ShortcutEntry] = []
    seen: set[tuple[str, str]] = set()
    for action in window.findChildren(QAction):
        name = action_name(action)
        if not name:
            continue
        for keys in action.shortcuts():
            if keys.isEmpty() or (keys.toString(), name) in seen:
                continue
            seen.add((keys.toString(), name))
            entries.append(ShortcutEntry(keys, _where(name, action, window), action))
    by_action_keys = {entry.portable_keys for entry in entries}
    for shortcut in window.findChildren(QShortcut):
        keys = shortcut.key()
        if keys.isEmpty() or keys.toString(QKeySequence.SequenceFormat.PortableText) in by_action_keys:
            continue
        what = shortcut.whatsThis() or shortcut.objectName() or "(no description)"
        entries.append(ShortcutEntry(keys, _where(what, shortcut, window), shortcut))
    for button in window.findChildren(QAbstractButton):
        keys = button.shortcut()
        name = button.text().replace("&&", "\0").replace("&", "").replace("\0", "&").strip()
        if keys.isEmpty() or not name:
            continue
        entries.append(ShortcutEntry(keys, _where(name.rstrip("…"), button, window), button))
    return entries


# --------------------------------------------------------------------------- versions


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _module_version(module: str, distribution: str) -> str:
    """The version of a library the app uses: from the imported module when it is loaded
    (what really runs), else from the installed distribution."""
    loaded = sys.modules.get(module)
    version = getattr(loaded, "__version__", None) if loaded is not None else None
    return str(version or _distribution_version(distribution) or "not installed")


def version_rows() -> list[tuple[str, str]]:
    """(what, version) for desktop-tl, Python, PyTorch, torchvision and Qt."""
    import PySide6

    return [
        ("desktop-tl", __version__),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("PyTorch", _module_version("torch", "torch")),
        ("torchvision", _module_version("torchvision", "torchvision")),
        ("Qt", qVersion()),
        ("PySide6", PySide6.__version__),
        ("System", f"{platform.system()} {platform.release()} ({platform.machine()})"),
    ]


def about_html(host: Any = None) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(what)}</td><td>{html.escape(version)}</td></tr>"
        for what, version in version_rows()
    )
    records = list(getattr(host, "records", []) or []) if host is not None else []
    if host is None:
        plugins = "<p>The plugins are still loading.</p>"
    elif not records:
        plugins = "<p>No plugins are installed.</p>"
    else:
        plugins = (
            "<table cellspacing='0' cellpadding='3'><tr><th align='left'>Plugin</th>"
            "<th align='left'>Distribution</th><th align='left'>Version</th>"
            "<th align='left'>Status</th></tr>"
            + "".join(
                f"<tr><td>{html.escape(r.name)}</td><td>{html.escape(r.distribution)}</td>"
                f"<td>{html.escape(r.version)}</td><td>{html.escape(r.status)}</td></tr>"
                for r in records
            )
            + "</table>"
        )
    return (
        f"<h3>desktop-tl {html.escape(__version__)}</h3>"
        "<p>Transfer learning with pretrained image models: pick a backbone, choose which "
        "layers train, watch the curves, inspect the mistakes, predict, export.</p>"
        "<p>Projects are run files: re-run one with <code>desktop-tl train project.toml</code>.</p>"
        f"<h4>Versions</h4><table cellspacing='0' cellpadding='3'>{rows}</table>"
        f"<h4>Plugins</h4>{plugins}"
    )


# --------------------------------------------------------------------------- the dialog


class HelpDialog(QDialog):
    """Three pages: keyboard shortcuts, how it works, about."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window_ = window
        self.setWindowTitle("desktop-tl help")
        self.tabs = QTabWidget()

        self.shortcut_table = QTableWidget(0, 2)
        self.shortcut_table.setHorizontalHeaderLabels(["Action", "Keys"])
        self.shortcut_table.verticalHeader().setVisible(False)
        self.shortcut_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.shortcut_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.shortcut_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.shortcuts: list[ShortcutEntry] = []

        self.how_browser = QTextBrowser()
        self.how_browser.setOpenExternalLinks(False)  # offline: nothing leaves the app
        self.how_browser.setOpenLinks(True)

        self.about_browser = QTextBrowser()
        self.about_browser.setOpenExternalLinks(False)

        self.tabs.addTab(self.shortcut_table, "Keyboard shortcuts")
        self.tabs.addTab(self.how_browser, "How it works")
        self.tabs.addTab(self.about_browser, "About")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(buttons)
        self.resize(680, 620)
        self.refresh()

    def refresh(self) -> None:
        """Read the shortcuts, the help page and the versions again."""
        self.shortcuts = window_shortcuts(self.window_)
        self.shortcut_table.setRowCount(len(self.shortcuts))
        for row, entry in enumerate(self.shortcuts):
            self.shortcut_table.setItem(row, 0, QTableWidgetItem(entry.what))
            self.shortcut_table.setItem(row, 1, QTableWidgetItem(entry.shown_keys))
        page = help_page_path()
        if page.is_file():
            self.how_browser.setSource(QUrl.fromLocalFile(str(page)))
        else:
            self.how_browser.setHtml(
                f"<p>The help page is missing: it should be at {html.escape(str(page))}. "
                "Reinstall desktop-tl, or set DTL_RESOURCES to the folder that holds "
                "help/.</p>"
            )
        self.about_browser.setHtml(about_html(getattr(self.window_, "host", None)))

    def show_page(self, page: str) -> None:
        self.tabs.setCurrentIndex(PAGES.index(page))


def open_help(window: Any, page: str) -> HelpDialog:
    """Show the help window (one per main window, not modal) at ``page``."""
    dialog = getattr(window, "help_dialog", None)
    if dialog is None:
        dialog = HelpDialog(window)
        window.help_dialog = dialog
    else:
        dialog.refresh()
    dialog.show_page(page)
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog


def install_help_menu(window: Any, menu: QMenu) -> None:
    """Fill the Help menu: Keyboard shortcuts, How it works (F1), About."""
    entries = (
        ("&Keyboard shortcuts", None, "shortcuts", "help_shortcuts_action"),
        ("&How it works", QKeySequence(QKeySequence.StandardKey.HelpContents), "how", "help_how_action"),
        ("&About desktop-tl", None, "about", "about_action"),
    )
    for text, keys, page, attribute in entries:
        action = QAction(text, window)
        if keys is not None and not keys.isEmpty():
            action.setShortcut(keys)
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if page == "about":
            action.setMenuRole(QAction.MenuRole.AboutRole)  # macOS: the application menu
        action.triggered.connect(lambda _checked=False, p=page: open_help(window, p))
        window.addAction(action)
        menu.addAction(action)
        setattr(window, attribute, action)
