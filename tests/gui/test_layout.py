"""The layout checker, on layouts broken on purpose and on the real window at the screen
sizes people use, light and dark, every tab (screenshots in tests/screenshots/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from desktop_tl.gui.layout_check import describe_problems, layout_problems, widget_problems
from window_helpers import SCREENSHOTS, save_screenshot

SIZES = [(1024, 640), (1366, 768), (1920, 1080), (2560, 1440)]


def test_a_squeezed_button_and_overlapping_siblings_are_found(qtbot):
    root = QWidget()
    qtbot.addWidget(root)
    root.resize(400, 300)
    squeezed_parent = QWidget(root)
    squeezed_parent.setGeometry(0, 0, 40, 20)
    button = QPushButton("A button with a long label", squeezed_parent)
    button.setGeometry(0, 0, 200, 30)  # wider and taller than its parent
    first = QLabel("first", root)
    first.setGeometry(100, 100, 120, 40)
    second = QLabel("second", root)
    second.setGeometry(150, 110, 120, 40)
    tight = QPushButton("Another long button text", root)
    tight.setGeometry(10, 200, 30, 30)  # below what its text needs
    root.show()
    qtbot.waitExposed(root)
    problems = widget_problems(root)
    text = describe_problems(problems)
    assert any("clipped by its parent" in p and "A button with a long label" in p for p in problems), text
    assert any("overlaps" in p and "'first'" in p and "'second'" in p for p in problems), text
    assert any("squeezed" in p and "Another long button text" in p for p in problems), text


def test_a_sound_layout_has_no_problems(qtbot):
    root = QWidget()
    qtbot.addWidget(root)
    layout = QVBoxLayout(root)
    for text in ("Start training", "Pause", "Stop"):
        layout.addWidget(QPushButton(text))
    wrapped = QLabel("A label long enough to wrap over several lines " * 4)
    wrapped.setWordWrap(True)
    layout.addWidget(wrapped)
    root.resize(420, 300)
    root.show()
    qtbot.waitExposed(root)
    assert widget_problems(root) == []


def test_a_window_that_cannot_shrink_is_reported(qtbot):
    root = QWidget()
    qtbot.addWidget(root)
    QVBoxLayout(root).addWidget(QPushButton("x" * 10))
    root.layout().itemAt(0).widget().setMinimumWidth(700)
    root.show()
    root.resize(300, 200)
    qtbot.waitExposed(root)
    problems = layout_problems(root, (300, 200))
    assert any(p.startswith("window: asked for 300x200") for p in problems), problems


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_real_window_has_no_layout_problems(window, qtbot, theme):
    from desktop_tl.resources import demo_config

    from desktop_tl.gui.preferences_dialog import apply_theme

    apply_theme(theme)  # the app's own light and dark themes, as Preferences sets them
    try:
        window.load_config(demo_config())
        qtbot.waitUntil(window.is_ready, timeout=120_000)
        for width, height in SIZES:
            window.resize(width, height)
            qtbot.wait(50)
            problems = layout_problems(window, (width, height))
            for index in range(window.tabs.count()):
                window.tabs.setCurrentIndex(index)
                name = window.tabs.tabText(index).split(" (")[0].lower()
                save_screenshot(window, f"layout_{width}x{height}_{theme}_{name}")
            window.tabs.setCurrentIndex(0)
            assert problems == [], f"at {width}x{height}:\n{describe_problems(problems)}"
    finally:
        apply_theme("system")


@pytest.mark.parametrize("size", ["1024x640", "1920x1080"])
def test_the_smoke_report_lists_layout_problems(tmp_path, size):
    """The scripted window on a HiDPI screen (scale 2): at the smallest size and at 4K
    (1920x1080 device-independent pixels). Scale 1 is checked in process above, and with
    a finished run's results by tests/gui/test_training_window.py."""
    scale = "2"
    report = tmp_path / "report.json"
    screenshot = SCREENSHOTS / f"smoke_{size}_scale{scale}.png"
    command = [
        sys.executable,
        "-m",
        "desktop_tl",
        "gui",
        "--demo",
        "--exit-when-done",
        "--size",
        size,
        "--report",
        str(report),
        "--screenshot",
        str(screenshot),
        "--settings",
        str(tmp_path / "settings.ini"),
    ]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_SCALE_FACTOR": scale}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert report.is_file(), done.stderr[-2000:]
    result = json.loads(report.read_text(encoding="utf-8"))
    assert result["size"] == size
    assert result["layout_problems"] == [], describe_problems(result["layout_problems"])
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_badly_written_size_says_how_to_write_it():
    from desktop_tl.cli.gui_command import parse_size
    from desktop_tl.errors import UserError

    assert parse_size("1024x640") == (1024, 640)
    with pytest.raises(UserError, match="write e.g. 1024x640"):
        parse_size("1024 by 640")
    with pytest.raises(UserError, match="too small"):
        parse_size("10x10")
