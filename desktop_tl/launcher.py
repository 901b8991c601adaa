"""Put desktop-tl in the desktop's application menu, and take it out again.

Qt-free and dependency-free, one writer per platform:

- Linux and other freedesktop desktops: ``$XDG_DATA_HOME/applications/desktop-tl.desktop``
  plus the icon in every size under ``$XDG_DATA_HOME/icons/hicolor/<N>x<N>/apps/``;
- Windows: a Start-menu shortcut ``desktop-tl.lnk``, made by PowerShell's WScript.Shell
  (part of every Windows since 7, so no pywin32 is needed);
- macOS: a small ``~/Applications/desktop-tl.app`` whose executable starts this
  installation, so Launchpad and Spotlight find it like any other app.

Every writer returns the paths it wrote; ``uninstall_launcher`` removes exactly those.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .resources import resources_dir

APP_ID = "desktop-tl"
APP_NAME = "desktop-tl"
APP_COMMENT = "Transfer learning with pretrained image models"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


@dataclass(frozen=True)
class LaunchCommand:
    """The program and arguments that open the desktop window of *this* installation."""

    program: Path
    arguments: tuple[str, ...]


def launch_command() -> LaunchCommand:
    """The installed ``desktop-tl`` script beside this interpreter; a frozen bundle's own
    executable; otherwise ``python -m desktop_tl``. On Windows ``pythonw`` is preferred
    so that no console window opens beside the app."""
    if getattr(sys, "frozen", False):
        return LaunchCommand(Path(sys.executable), ("gui",))
    bin_dir = Path(sys.executable).parent
    if sys.platform == "win32":
        pythonw = bin_dir / "pythonw.exe"
        if pythonw.is_file():
            return LaunchCommand(pythonw, ("-m", "desktop_tl", "gui"))
        script = bin_dir / "desktop-tl.exe"
    else:
        script = bin_dir / "desktop-tl"
    if script.is_file():
        return LaunchCommand(script, ("gui",))
    return LaunchCommand(Path(sys.executable), ("-m", "desktop_tl", "gui"))


def icon_dir() -> Path:
    path = resources_dir() / "icons"
    if not (path / f"{APP_ID}-256.png").is_file():
        raise UserError(
            f"the app icons are not in {path}; reinstall desktop-tl from its wheel or a "
            "source checkout, or set DTL_RESOURCES to the folder that holds icons/"
        )
    return path


# --- Linux / freedesktop -------------------------------------------------------------


def xdg_data_home() -> Path:
    value = os.environ.get("XDG_DATA_HOME")
    return Path(value) if value else Path.home() / ".local" / "share"


def desktop_entry_path(data_home: Path | None = None) -> Path:
    return (data_home or xdg_data_home()) / "applications" / f"{APP_ID}.desktop"


def _desktop_exec_quote(argument: str) -> str:
    """Quote one Exec argument as the Desktop Entry Specification asks: double quotes
    around anything with a reserved character, backslash before ``"`` ` $ \\``, and
    ``%`` doubled because it introduces field codes."""
    argument = argument.replace("%", "%%")
    if not any(c in argument for c in ' \t\n"\'\\><~|&;$*?#()`'):
        return argument
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in argument)
    return f'"{escaped}"'


def desktop_entry_text(command: LaunchCommand) -> str:
    exec_line = " ".join(_desktop_exec_quote(a) for a in (str(command.program), *command.arguments))
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Version=1.5\n"
        f"Name={APP_NAME}\n"
        f"Comment={APP_COMMENT}\n"
        f"TryExec={command.program}\n"
        f"Exec={exec_line}\n"
        f"Icon={APP_ID}\n"
        "Terminal=false\n"
        "Categories=Science;Education;Graphics;\n"
        "Keywords=machine learning;PyTorch;image classification;\n"
        "StartupNotify=true\n"
    )


def install_linux(data_home: Path | None = None, command: LaunchCommand | None = None) -> list[Path]:
    data_home = data_home or xdg_data_home()
    icons = icon_dir()
    written = []
    for size in PNG_SIZES:
        target = data_home / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        _writable_parent(target)
        shutil.copyfile(icons / f"{APP_ID}-{size}.png", target)
        written.append(target)
    entry = desktop_entry_path(data_home)
    _writable_parent(entry)
    entry.write_text(desktop_entry_text(command or launch_command()), encoding="utf-8")
    written.append(entry)
    # Menus pick the entry up on their own; refreshing the caches only makes it quicker.
    for tool, arguments in (
        ("update-desktop-database", [str(entry.parent)]),
        ("gtk-update-icon-cache", ["-q", "-t", str(data_home / "icons" / "hicolor")]),
    ):
        if shutil.which(tool):
            subprocess.run([tool, *arguments], check=False, capture_output=True)
    return written


def linux_paths(data_home: Path | None = None) -> list[Path]:
    data_home = data_home or xdg_data_home()
    return [data_home / "icons" / "hicolor" / f"{s}x{s}" / "apps" / f"{APP_ID}.png" for s in PNG_SIZES] + [
        desktop_entry_path(data_home)
    ]


# --- Windows -------------------------------------------------------------------------


def start_menu_dir() -> Path:
    appdata = os.environ.get("APPDATA")
    if not appdata:
        raise UserError(
            "APPDATA is not set, so the Start menu folder is unknown; "
            "run this from a normal Windows user session"
        )
    return Path(appdata) / "Microsoft" / "Windows" / "Start Menu" / "Programs"


def shortcut_path() -> Path:
    return start_menu_dir() / f"{APP_NAME}.lnk"


def _powershell_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def shortcut_script(target: Path, command: LaunchCommand, icon: Path) -> str:
    arguments = subprocess.list2cmdline(list(command.arguments))
    return (
        "$s = (New-Object -ComObject WScript.Shell).CreateShortcut("
        f"{_powershell_quote(str(target))}); "
        f"$s.TargetPath = {_powershell_quote(str(command.program))}; "
        f"$s.Arguments = {_powershell_quote(arguments)}; "
        f"$s.IconLocation = {_powershell_quote(str(icon))}; "
        f"$s.Description = {_powershell_quote(APP_COMMENT)}; "
        f"$s.WorkingDirectory = {_powershell_quote(str(Path.home()))}; "
        "$s.Save()"
    )


def install_windows(command: LaunchCommand | None = None) -> list[Path]:
    target = shortcut_path()
    _writable_parent(target)
    powershell = shutil.which("powershell") or shutil.which("pwsh")
    if not powershell:
        raise UserError(
            "PowerShell is not on PATH, and it is what writes the Start-menu "
            "shortcut; start desktop-tl with its desktop-tl.exe instead"
        )
    script = shortcut_script(target, command or launch_command(), icon_dir() / f"{APP_ID}.ico")
    done = subprocess.run(
        [powershell, "-NoProfile", "-NonInteractive", "-Command", script], capture_output=True, text=True
    )
    if done.returncode != 0 or not target.is_file():
        raise UserError(f"PowerShell could not write {target}: {done.stderr.strip() or done.stdout.strip()}")
    return [target]


# --- macOS ---------------------------------------------------------------------------


def mac_app_path(applications: Path | None = None) -> Path:
    return (applications or Path.home() / "Applications") / f"{APP_NAME}.app"


def install_macos(applications: Path | None = None, command: LaunchCommand | None = None) -> list[Path]:
    command = command or launch_command()
    app = mac_app_path(applications)
    _writable_parent(app)
    if app.exists():
        shutil.rmtree(app)
    executable = app / "Contents" / "MacOS" / APP_ID
    executable.parent.mkdir(parents=True)
    (app / "Contents" / "Resources").mkdir()
    shutil.copyfile(icon_dir() / f"{APP_ID}.icns", app / "Contents" / "Resources" / f"{APP_ID}.icns")
    from shlex import quote

    argv = " ".join(quote(a) for a in (str(command.program), *command.arguments))
    executable.write_text(f'#!/bin/sh\nexec {argv} "$@"\n', encoding="utf-8")
    executable.chmod(0o755)
    info = {
        "CFBundleName": APP_NAME,
        "CFBundleDisplayName": APP_NAME,
        "CFBundleIdentifier": "org.desktop-tl.launcher",
        "CFBundleExecutable": APP_ID,
        "CFBundleIconFile": f"{APP_ID}.icns",
        "CFBundlePackageType": "APPL",
        "CFBundleShortVersionString": _version(),
        "LSApplicationCategoryType": "public.app-category.education",
        "NSHighResolutionCapable": True,
    }
    with open(app / "Contents" / "Info.plist", "wb") as handle:
        plistlib.dump(info, handle)
    return [app]


def _version() -> str:
    from . import __version__

    return __version__


# --- the platform switch -------------------------------------------------------------


def install_launcher(platform: str | None = None) -> list[Path]:
    """Write the launcher for this platform; returns what was written."""
    platform = platform or sys.platform
    if platform == "win32":
        return install_windows()
    if platform == "darwin":
        return install_macos()
    return install_linux()


def uninstall_launcher(platform: str | None = None) -> list[Path]:
    """Remove what :func:`install_launcher` writes; returns what was removed."""
    platform = platform or sys.platform
    if platform == "win32":
        paths = [shortcut_path()]
    elif platform == "darwin":
        paths = [mac_app_path()]
    else:
        paths = linux_paths()
    removed = []
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(path)
        elif path.exists():
            path.unlink()
            removed.append(path)
    return removed


def _writable_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"cannot create {path.parent} ({exc.strerror}); "
            "ask for write access to it or run as the user who will start the app"
        ) from exc
    if not os.access(path.parent, os.W_OK):
        raise UserError(
            f"{path.parent} is not writable, so the launcher cannot go there; "
            "run as the user who will start the app"
        )
