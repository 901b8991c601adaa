"""The desktop launcher: real files written where each desktop looks, and removed again."""

from __future__ import annotations

import configparser
import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from desktop_tl import __version__, launcher
from desktop_tl.errors import UserError
from desktop_tl.resources import resources_dir

APP = Path(sys.executable).parent / "desktop-tl"


def read_desktop_entry(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in desktop entries
    parser.read(path, encoding="utf-8")
    return dict(parser["Desktop Entry"])


def test_icons_ship_in_every_size_each_platform_wants():
    icons = resources_dir() / "icons"
    for size in launcher.PNG_SIZES:
        with Image.open(icons / f"desktop-tl-{size}.png") as image:
            assert image.size == (size, size)
            assert image.mode == "RGBA"
    with Image.open(icons / "desktop-tl.ico") as ico:
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(ico.info["sizes"])
    with Image.open(icons / "desktop-tl.icns") as icns:
        assert icns.format == "ICNS" and max(icns.info["sizes"])[0] >= 512


@pytest.mark.skipif(not APP.is_file(), reason="needs the installed desktop-tl script")
def test_install_launcher_writes_a_freedesktop_entry_and_uninstall_removes_it(tmp_path):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "share")}
    done = subprocess.run([str(APP), "install-launcher"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    entry_path = tmp_path / "share" / "applications" / "desktop-tl.desktop"
    entry = read_desktop_entry(entry_path)
    assert entry["Type"] == "Application" and entry["Name"] == "desktop-tl"
    program, *arguments = entry["Exec"].split(" ")
    assert arguments == ["gui"]
    assert Path(program) == APP and entry["TryExec"] == program
    # The entry starts this installation: its program answers with our version.
    version = subprocess.run([program, "--version"], capture_output=True, text=True)
    assert version.stdout.strip() == f"desktop-tl {__version__}"
    assert entry["Icon"] == "desktop-tl"
    for size in launcher.PNG_SIZES:
        icon = tmp_path / "share" / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "desktop-tl.png"
        with Image.open(icon) as image:
            assert image.size == (size, size)
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(entry_path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr

    removed = subprocess.run(
        [str(APP), "install-launcher", "--uninstall"], env=env, capture_output=True, text=True
    )
    assert removed.returncode == 0, removed.stderr
    assert not entry_path.exists()
    assert not list((tmp_path / "share").rglob("desktop-tl*"))
    again = subprocess.run(
        [str(APP), "install-launcher", "--uninstall"], env=env, capture_output=True, text=True
    )
    assert again.returncode == 0 and "nothing removed" in again.stdout


def test_exec_line_quotes_spaces_dollars_and_percent_as_the_spec_asks():
    command = launcher.LaunchCommand(Path("/opt/lab apps/$x/100%/desktop-tl"), ("gui",))
    text = launcher.desktop_entry_text(command)
    assert 'Exec="/opt/lab apps/\\$x/100%%/desktop-tl" gui\n' in text


def test_unwritable_menu_folder_says_what_to_do(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    with pytest.raises(UserError, match="cannot create .*write access"):
        launcher.install_linux(data_home=blocker / "share")


def test_macos_app_bundle_starts_this_installation(tmp_path):
    command = launcher.LaunchCommand(Path(sys.executable), ("-m", "desktop_tl"))
    (app,) = launcher.install_macos(applications=tmp_path, command=command)
    with open(app / "Contents" / "Info.plist", "rb") as handle:
        info = plistlib.load(handle)
    assert info["CFBundlePackageType"] == "APPL"
    assert (app / "Contents" / "Resources" / info["CFBundleIconFile"]).is_file()
    executable = app / "Contents" / "MacOS" / info["CFBundleExecutable"]
    assert os.access(executable, os.X_OK)
    # The bundle's executable is a shell script, so it runs here too and must reach us.
    done = subprocess.run([str(executable), "--version"], capture_output=True, text=True)
    assert done.stdout.strip() == f"desktop-tl {__version__}"


@pytest.mark.skipif(sys.platform != "win32", reason="a Start-menu shortcut needs Windows")
def test_windows_start_menu_shortcut(tmp_path, monkeypatch):
    monkeypatch.setenv("APPDATA", str(tmp_path))
    (shortcut,) = launcher.install_windows()
    assert shortcut.suffix == ".lnk" and shortcut.stat().st_size > 0
    assert launcher.uninstall_launcher("win32") == [shortcut] and not shortcut.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="checks the message where PowerShell is absent")
def test_windows_shortcut_without_powershell_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("APPDATA", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(UserError, match="PowerShell is not on PATH"):
        launcher.install_windows()
