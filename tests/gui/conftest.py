"""Fixtures for the window tests: offscreen Qt, a loaded backend, a tiny real dataset.

Screenshots of each main state go to ``tests/screenshots/`` (git-ignored) so that a
reviewer can look at what the tests saw.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything loads Qt

import pytest  # noqa: E402

from window_helpers import make_tiny_dataset  # noqa: E402


@pytest.fixture(scope="session")
def gui_backend():
    """torch and the plugins, loaded once (as the app does on its background thread)."""
    from desktop_tl.gui.app import load_backend

    return load_backend([])


@pytest.fixture
def settings(tmp_path):
    from desktop_tl.gui.settings import AppSettings

    return AppSettings(tmp_path / "settings.ini")


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    path = tmp_path / "runs"
    monkeypatch.setenv("DTL_RUNS_DIR", str(path))
    return path


@pytest.fixture
def window(qtbot, gui_backend, settings, runs_dir):
    """The real main window, shown, with the backend loaded."""
    from desktop_tl.gui.main_window import MainWindow

    win = MainWindow(settings)
    qtbot.addWidget(win)
    win.resize(1600, 980)
    win.show()
    qtbot.waitExposed(win)
    win.set_backend(gui_backend["host"], gui_backend["devices"])
    yield win
    if win.training.session is not None:  # never leave a training thread behind
        win.confirm_close = lambda: True
        from desktop_tl.core.events import Cancel

        win.training.session.send(Cancel())
        win.training.session.wait(60_000)
        qtbot.waitUntil(lambda: win.training.session is None, timeout=10_000)
    from desktop_tl.gui.background import cancel_and_wait_all

    cancel_and_wait_all(30_000)


@pytest.fixture
def tiny_dataset(tmp_path):
    return make_tiny_dataset(tmp_path / "data")
