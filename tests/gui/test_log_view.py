"""The log view: timestamps, colours by level, autoscroll, Clear and Save log…"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import re
from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from desktop_tl.gui.log_view import LogView

SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"

TRACEBACK = """could not import plugin 'dtl_licensed': RuntimeError: licence server unreachable
Traceback (most recent call last):
  File "site-packages/dtl_licensed.py", line 2, in <module>
    raise RuntimeError("licence server unreachable")
RuntimeError: licence server unreachable"""


def save_screenshot(widget, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    assert widget.grab().save(str(path)), f"could not write {path}"
    return path


def colours_of(view: LogView) -> dict[str, str]:
    """The text colour used for each message (by its first word) in the document."""
    found = {}
    block = view._text.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            text = fragment.text().strip()
            if text and not re.fullmatch(r"\d\d:\d\d:\d\d", text):
                found.setdefault(text.split()[0], fragment.charFormat().foreground().color().name())
            it += 1
        block = block.next()
    return found


def fill(view: LogView) -> None:
    view.append("info", "Loaded 412 images in 5 classes from /data/flowers")
    view.append("debug", "feature cache: 12.4 MB")
    view.append("warning", "3 files were skipped: see the data panel")
    view.append("error", TRACEBACK)
    view.append("info", "Epoch 1/10: train loss 1.204, val acc 71.3%")


def test_messages_have_timestamps_levels_and_colours(qtbot):
    view = LogView()
    qtbot.addWidget(view)
    view.resize(760, 300)
    view.show()
    problems = []
    view.problem_logged.connect(lambda level, message: problems.append(level))
    fill(view)

    text = view._text.toPlainText()
    assert re.search(r"^\d\d:\d\d:\d\d\s+Loaded 412 images", text, re.MULTILINE)
    assert "warning 3 files were skipped" in text
    assert 'File "site-packages/dtl_licensed.py", line 2' in text  # tracebacks keep their lines
    colours = colours_of(view)
    assert colours["warning"] != colours["Loaded"]
    assert colours["error"] != colours["Loaded"]
    assert colours["error"] != colours["warning"]
    assert problems == ["warning", "error"]
    assert view.count("error") == 1 and view.count("warning") == 1
    assert "1 warning" in view._summary.text() and "1 error" in view._summary.text()
    save_screenshot(view, "log_view_messages")


def test_follows_new_lines_unless_scrolled_up(qtbot):
    view = LogView()
    qtbot.addWidget(view)
    view.resize(500, 200)
    view.show()
    for i in range(200):
        view.append("info", f"batch {i}")
    bar = view._text.verticalScrollBar()
    assert bar.maximum() > 0
    assert bar.value() == bar.maximum()

    bar.setValue(0)  # the user scrolls up to read
    view.append("info", "one more")
    assert bar.value() == 0
    bar.setValue(bar.maximum())
    view.append("warning", "and another")
    assert bar.value() == bar.maximum()


def test_clear_and_save(qtbot, tmp_path, monkeypatch):
    view = LogView()
    qtbot.addWidget(view)
    fill(view)
    target = tmp_path / "saved.log"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    view._save_button.click()
    saved = target.read_text(encoding="utf-8")
    lines = saved.splitlines()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO +Loaded 412 images", lines[0])
    assert any(line.startswith(tuple("0123456789")) and " ERROR " in line for line in lines)
    assert "RuntimeError: licence server unreachable" in saved
    assert len(view.entries()) == 5

    view._clear_button.click()
    assert view._text.toPlainText() == ""
    assert view.entries() == []
    assert view.count("error") == 0
    assert view._summary.text() == "No messages"
    # Unknown levels are shown as info rather than lost.
    view.append("notice", "still shown")
    assert view.entries()[0].level == "info"


def test_save_to_an_unwritable_place_says_so(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    view = LogView()
    qtbot.addWidget(view)
    view.append("info", "x")
    messages = []
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "missing" / "log.txt"), "")
    )
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: messages.append(text))
    view._save_button.click()
    assert messages and "could not be written" in messages[0]
