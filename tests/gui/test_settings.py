"""Application settings stored in an INI file under tmp_path (never the user's own)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QWidget

from desktop_tl.gui.settings import MAX_RECENT_PROJECTS, AppSettings


def make_projects(folder, count):
    paths = []
    for i in range(count):
        path = folder / f"project_{i:02d}.toml"
        path.write_text("[data]\n", encoding="utf-8")
        paths.append(str(path))
    return paths


def test_uses_the_given_ini_file(tmp_path):
    ini = tmp_path / "desktop_tl.ini"
    settings = AppSettings(ini)
    settings.last_data_folder = str(tmp_path)
    settings.sync()
    assert settings.file_name == str(ini)
    assert ini.is_file()
    raw = QSettings(str(ini), QSettings.Format.IniFormat)
    assert raw.value("folders/last_data") == str(tmp_path)


def test_recent_projects_most_recent_first_unique_and_capped(tmp_path):
    ini = tmp_path / "s.ini"
    projects = make_projects(tmp_path, MAX_RECENT_PROJECTS + 3)
    settings = AppSettings(ini)
    assert settings.recent_projects == []
    for path in projects:
        settings.add_recent_project(path)
    recent = settings.recent_projects
    assert len(recent) == MAX_RECENT_PROJECTS
    assert recent[0] == projects[-1]
    assert recent == list(reversed(projects))[:MAX_RECENT_PROJECTS]

    # Opening an older one again moves it to the top without duplicating it.
    settings.add_recent_project(projects[5])
    recent = settings.recent_projects
    assert recent[0] == projects[5]
    assert recent.count(projects[5]) == 1
    assert len(recent) == MAX_RECENT_PROJECTS

    # A relative path is stored absolute (it names the same file from anywhere).
    os.chdir(tmp_path)
    settings.add_recent_project("project_01.toml")
    assert AppSettings(ini).recent_projects[0] == projects[1]


def test_recent_projects_drop_missing_files(tmp_path):
    ini = tmp_path / "s.ini"
    a, b, c = make_projects(tmp_path, 3)
    settings = AppSettings(ini)
    for path in (a, b, c):
        settings.add_recent_project(path)
    os.remove(b)
    assert settings.recent_projects == [c, a]
    # Pruned for good, not just hidden.
    raw = QSettings(str(ini), QSettings.Format.IniFormat)
    assert b not in (raw.value("projects/recent") or [])
    settings.remove_recent_project(c)
    assert AppSettings(ini).recent_projects == [a]
    settings.clear_recent_projects()
    assert AppSettings(ini).recent_projects == []


def test_last_folders_and_disabled_plugins_survive_a_restart(tmp_path):
    ini = tmp_path / "s.ini"
    settings = AppSettings(ini)
    assert settings.last_data_folder == ""
    assert settings.last_image_folder == ""
    assert settings.last_run_folder == ""
    assert settings.disabled_plugins == []
    settings.last_data_folder = tmp_path / "data"
    settings.last_image_folder = str(tmp_path / "images")
    settings.last_run_folder = str(tmp_path / "runs" / "run-1")
    settings.disabled_plugins = ["dtl_heads"]  # one name must stay a list
    settings.sync()

    again = AppSettings(ini)
    assert again.last_data_folder == str(tmp_path / "data")
    assert again.last_image_folder == str(tmp_path / "images")
    assert again.last_run_folder == str(tmp_path / "runs" / "run-1")
    assert again.disabled_plugins == ["dtl_heads"]

    again.disabled_plugins = ["a", "b", "a", ""]
    assert AppSettings(ini).disabled_plugins == ["a", "b"]
    again.disabled_plugins = []
    assert AppSettings(ini).disabled_plugins == []


def test_window_geometry_and_dock_layout_round_trip(qtbot, tmp_path):
    ini = tmp_path / "s.ini"

    def make_window():
        window = QMainWindow()
        window.setCentralWidget(QLabel("centre"))
        dock = QDockWidget("Log", window)
        dock.setObjectName("logDock")
        dock.setWidget(QLabel("log"))
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        qtbot.addWidget(window)
        return window, dock

    first, dock = make_window()
    first.resize(640, 470)  # inside the offscreen screen (800x600)
    first.show()
    first.removeDockWidget(dock)
    first.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    dock.show()
    qtbot.waitExposed(first)
    settings = AppSettings(ini)
    assert settings.restore_window(first) is False  # nothing saved yet
    settings.save_window(first)
    settings.sync()

    second, second_dock = make_window()
    assert AppSettings(ini).restore_window(second) is True
    second.show()
    qtbot.waitExposed(second)
    assert second.size() == first.size()
    assert second.dockWidgetArea(second_dock) == Qt.DockWidgetArea.RightDockWidgetArea

    # A plain widget keeps its geometry too.
    plain = QWidget()
    qtbot.addWidget(plain)
    plain.resize(400, 300)
    settings.save_window(plain)
    other = QWidget()
    qtbot.addWidget(other)
    assert settings.restore_window(other) is True
    assert other.size() == plain.size()


def test_generic_values(tmp_path):
    settings = AppSettings(tmp_path / "s.ini")
    assert settings.value("ui/theme", "system") == "system"
    settings.set_value("ui/theme", "dark")
    assert AppSettings(tmp_path / "s.ini").value("ui/theme") == "dark"
