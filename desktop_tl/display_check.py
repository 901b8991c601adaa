"""Before the window opens on Linux: is there a display, and are the system libraries that
Qt's X11 platform plugin loads installed? Without them Qt aborts with "Could not load the
Qt platform plugin xcb"; this says which package to install instead. Qt-free: it reads
the plugin's dependencies with ``ldd`` and imports nothing from Qt."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

#: A missing library -> its package on (Debian/Ubuntu, Fedora/RHEL, Arch).
PACKAGES: dict[str, tuple[str, str, str]] = {
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms"),
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image", "xcb-util-image"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util", "xcb-util"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb", "libxcb"),
    "libxcb-xinerama.so.0": ("libxcb-xinerama0", "libxcb", "libxcb"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon", "libxkbcommon"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb", "libx11"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl", "libglvnd"),
    "libGL.so.1": ("libgl1", "libglvnd-glx", "libglvnd"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl", "libglvnd"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig", "fontconfig"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs", "dbus"),
}
_FAMILIES = (
    ("Debian/Ubuntu", "sudo apt-get install"),
    ("Fedora/RHEL", "sudo dnf install"),
    ("Arch", "sudo pacman -S"),
)
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)


def xcb_plugin() -> Path | None:
    """PySide6's X11 platform plugin, found without importing Qt."""
    spec = importlib.util.find_spec("PySide6")
    for location in (spec.submodule_search_locations or []) if spec else []:
        plugin = Path(location) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if plugin.is_file():
            return plugin
    return None


def missing_libraries(plugin: Path) -> list[str]:
    """The shared libraries ``plugin`` needs that the dynamic linker cannot find."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        listing = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(set(_NOT_FOUND.findall(listing)))


def install_hint(libraries: list[str]) -> str:
    """Which packages bring ``libraries``, per distribution family."""
    known = [PACKAGES[name] for name in libraries if name in PACKAGES]
    if not known:
        return "install the packages that provide them with your distribution's package manager"
    lines = []
    for column, (family, command) in enumerate(_FAMILIES):
        packages = sorted({entry[column] for entry in known})
        lines.append(f"{family}: {command} {' '.join(packages)}")
    return "; ".join(lines)


def display_problem() -> str | None:
    """Why the window cannot open here, with what to do, or None (also on macOS, Windows
    and any platform other than X11 chosen through QT_QPA_PLATFORM)."""
    if not sys.platform.startswith("linux"):
        return None
    chosen = os.environ.get("QT_QPA_PLATFORM", "").strip().lower()
    if chosen and not chosen.startswith("xcb"):
        return None  # offscreen, wayland, vnc...: not the X11 plugin
    if not chosen and os.environ.get("WAYLAND_DISPLAY"):
        return None  # Qt picks its Wayland plugin
    if not os.environ.get("DISPLAY"):
        return (
            "there is no display to open the window on (DISPLAY is not set): start it from "
            "a desktop session, over 'ssh -X', or under 'xvfb-run'; scripted smoke runs can "
            "use QT_QPA_PLATFORM=offscreen"
        )
    plugin = xcb_plugin()
    missing = missing_libraries(plugin) if plugin else []
    if not missing:
        return None
    return (
        f"the window cannot open: Qt's X11 platform plugin needs {', '.join(missing)}, "
        f"which {'is' if len(missing) == 1 else 'are'} not installed; {install_hint(missing)}"
    )
