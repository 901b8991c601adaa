"""The plugins dialog with a broken plugin installed next to working ones."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from desktop_tl.gui.plugins_dialog import RESTART_NOTE, PluginsDialog
from desktop_tl.gui.settings import AppSettings
from desktop_tl.plugin.manager import PluginHost

SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"

HEAD_PLUGIN = """\
from desktop_tl.plugin import hookimpl
from desktop_tl.plugin.descriptors import HeadType

DTL_API_VERSION = "1.0"


def _build(in_features, num_classes):
    from torch import nn
    return nn.Linear(in_features, num_classes)


@hookimpl
def dtl_head_types():
    return [HeadType(id="lab-linear", display_name="Lab linear head", build=_build)]
"""

BROKEN_PLUGIN = """\
DTL_API_VERSION = "1.0"
raise RuntimeError("the lab licence server is unreachable")
"""


def save_screenshot(widget, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    assert widget.grab().save(str(path)), f"could not write {path}"
    return path


def install(site: Path, dist: str, version: str, module: str, source: str) -> None:
    """Write what pip leaves in site-packages: the module and a dist-info folder whose
    entry_points.txt registers it in the desktop_tl group."""
    (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(f"[desktop_tl]\n{module} = {module}\n", encoding="utf-8")


@pytest.fixture
def site(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    install(root, "dtl-lab-heads", "2.1.0", "dtl_lab_heads", HEAD_PLUGIN)
    install(root, "dtl-lab-heads-fork", "0.3", "dtl_lab_heads_fork", HEAD_PLUGIN)
    install(root, "dtl-licensed-backbones", "1.4.2", "dtl_licensed", BROKEN_PLUGIN)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("DTL_DISABLED_PLUGINS", raising=False)
    monkeypatch.delenv("DTL_STRICT_PLUGINS", raising=False)
    importlib.invalidate_caches()
    yield root
    for name in ("dtl_lab_heads", "dtl_lab_heads_fork", "dtl_licensed"):
        sys.modules.pop(name, None)


def fresh_host(settings: AppSettings) -> PluginHost:
    host = PluginHost(disabled=settings.disabled_plugins)
    host.load()
    return host


def row_of(dialog: PluginsDialog, name: str) -> int:
    for row in range(dialog.table.rowCount()):
        if dialog.table.item(row, 1).text() == name:
            return row
    raise AssertionError(f"{name} is not listed")


def test_broken_plugin_error_is_shown_and_disabling_persists(qtbot, tmp_path, site):
    ini = tmp_path / "settings.ini"
    settings = AppSettings(ini)
    host = fresh_host(settings)
    statuses = {r.name: r.status for r in host.records}
    assert statuses["dtl_licensed"] == "failed"
    assert statuses["dtl_lab_heads"] == "loaded"

    dialog = PluginsDialog(host, settings)
    qtbot.addWidget(dialog)
    dialog.show()

    # Every plugin the host knows is listed with distribution, version, provides, status.
    assert dialog.table.rowCount() == len(host.records)
    good = row_of(dialog, "dtl_lab_heads")
    assert dialog.table.item(good, 2).text() == "dtl-lab-heads"
    assert dialog.table.item(good, 3).text() == "2.1.0"
    assert dialog.table.item(good, 4).text() == "head:lab-linear"
    assert dialog.table.item(good, 5).text() == "loaded"

    # The failed plugin is selected on opening, and its error with traceback is shown.
    broken = row_of(dialog, "dtl_licensed")
    assert dialog.table.item(broken, 5).text() == "failed"
    assert dialog.table.currentRow() == broken
    details = dialog.details_text()
    assert "the lab licence server is unreachable" in details
    assert "Traceback" in details
    assert "dtl-licensed-backbones 1.4.2" in details
    assert "could not be imported" in dialog.details_title.text()

    # The duplicate head id is reported as a problem naming both distributions.
    assert dialog.problems_label.isVisible()
    problems = dialog.problems_label.text()
    assert "lab-linear" in problems and "dtl-lab-heads-fork" in problems
    assert dialog.restart_label.text() == RESTART_NOTE
    save_screenshot(dialog, "plugins_dialog_failed_plugin")

    # Untick the broken plugin: saved at once, the dialog says it applies at next start.
    checkbox = dialog.table.item(broken, 0)
    assert checkbox.checkState() == Qt.CheckState.Checked
    dialog.table.setCurrentCell(broken, 0)
    dialog.table.setFocus()
    qtbot.keyClick(dialog.table, Qt.Key.Key_Space)
    assert checkbox.checkState() == Qt.CheckState.Unchecked
    assert not dialog.is_enabled("dtl_licensed")
    assert settings.disabled_plugins == ["dtl_licensed"]
    assert "Restart desktop_tl" in dialog.restart_label.text()
    save_screenshot(dialog, "plugins_dialog_disabled_pending_restart")
    dialog.close()

    # The next start (new settings object, new host) does not import it.
    sys.modules.pop("dtl_licensed", None)
    reopened = AppSettings(ini)
    assert reopened.disabled_plugins == ["dtl_licensed"]
    next_host = fresh_host(reopened)
    record = next(r for r in next_host.records if r.name == "dtl_licensed")
    assert record.status == "disabled"
    assert "dtl_licensed" not in sys.modules

    again = PluginsDialog(next_host, reopened)
    qtbot.addWidget(again)
    again.show()
    assert not again.is_enabled("dtl_licensed")
    assert again.table.item(row_of(again, "dtl_licensed"), 5).text() == "disabled"
    again.select("dtl_licensed")
    assert "turned off" in again.details_text()

    # Ticking it again removes it from the setting.
    again.set_enabled("dtl_licensed", True)
    assert AppSettings(ini).disabled_plugins == []


def test_disabled_names_of_uninstalled_plugins_are_kept(qtbot, tmp_path, site):
    settings = AppSettings(tmp_path / "settings.ini")
    settings.disabled_plugins = ["dtl-removed-for-now", "dtl-lab-heads-fork"]
    host = fresh_host(settings)
    dialog = PluginsDialog(host, settings)
    qtbot.addWidget(dialog)
    # A distribution name disables its entry points; the row shows it unticked.
    assert not dialog.is_enabled("dtl_lab_heads_fork")
    assert dialog.is_enabled("dtl_lab_heads")
    dialog.set_enabled("dtl_lab_heads", False)
    saved = settings.disabled_plugins
    assert saved[0] == "dtl-removed-for-now"
    assert sorted(saved[1:]) == ["dtl_lab_heads", "dtl_lab_heads_fork"]
    # The unknown name is reported by the host as a problem and shown.
    assert "dtl-removed-for-now" in dialog.problems_label.text()


def test_plugin_turned_off_by_environment_cannot_be_ticked(qtbot, tmp_path, site, monkeypatch):
    monkeypatch.setenv("DTL_DISABLED_PLUGINS", "dtl_lab_heads")
    settings = AppSettings(tmp_path / "settings.ini")
    host = fresh_host(settings)
    dialog = PluginsDialog(host, settings)
    qtbot.addWidget(dialog)
    item = dialog.table.item(row_of(dialog, "dtl_lab_heads"), 0)
    assert item.checkState() == Qt.CheckState.Unchecked
    assert not item.flags() & Qt.ItemFlag.ItemIsUserCheckable
    assert "DTL_DISABLED_PLUGINS" in item.toolTip()


def test_the_restart_note_names_the_command_people_run():
    assert "desktop-tl starts" in RESTART_NOTE
