"""Opening the window where Linux lacks a display or Qt's X11 libraries: one line that says
what to install, before Qt aborts with its own bare message."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_tl import display_check

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 is Linux's")
DESKTOP_TL = str(Path(sys.executable).with_name("desktop-tl"))


def _gui(env_changes: dict[str, str | None]) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for name, value in env_changes.items():
        env.pop(name, None)
        if value is not None:
            env[name] = value
    return subprocess.run([DESKTOP_TL, "gui", "--demo"], capture_output=True, text=True, env=env, timeout=120)


def test_no_display_says_how_to_get_one():
    done = _gui({"QT_QPA_PLATFORM": None, "DISPLAY": None, "WAYLAND_DISPLAY": None})
    assert done.returncode == 2
    assert "DISPLAY is not set" in done.stderr and "xvfb-run" in done.stderr
    assert "QT_QPA_PLATFORM=offscreen" in done.stderr


def test_missing_x11_libraries_are_named_with_the_package_to_install():
    plugin = display_check.xcb_plugin()
    assert plugin is not None, "PySide6 ships its X11 platform plugin on Linux"
    missing = display_check.missing_libraries(plugin)
    if not missing:
        pytest.skip("every library Qt's X11 plugin needs is installed here")
    for name in missing:  # the dynamic linker agrees that each one is absent
        with pytest.raises(OSError):
            ctypes.CDLL(name)
    done = _gui({"QT_QPA_PLATFORM": None, "DISPLAY": ":99", "WAYLAND_DISPLAY": None})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    for name in missing:
        assert name in done.stderr
        if name in display_check.PACKAGES:
            assert display_check.PACKAGES[name][0] in done.stderr  # the Debian package
    assert "sudo apt-get install" in done.stderr and "sudo dnf install" in done.stderr


def test_each_family_gets_its_own_package_names():
    hint = display_check.install_hint(["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    assert "Debian/Ubuntu: sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in hint
    assert "Fedora/RHEL: sudo dnf install xcb-util-keysyms xcb-util-wm" in hint
    assert "Arch: sudo pacman -S xcb-util-keysyms xcb-util-wm" in hint


def test_another_qt_platform_is_not_checked(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.delenv("DISPLAY", raising=False)
    assert display_check.display_problem() is None
