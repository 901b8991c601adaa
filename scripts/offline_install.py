"""Install desktop-tl from this wheelhouse folder, with no network.

This file is copied into every wheelhouse as ``install.py``. It needs only a Python of
the version the wheelhouse was built for (see ``manifest.json``), nothing else:

    python install.py                 # into the default folder for this user
    python install.py D:\\desktop-tl   # into a folder of your choice
    python install.py --launcher      # and add the app to the application menu

Steps: every file listed in ``SHA256SUMS`` is checked first and nothing is installed
unless all match and no unlisted wheel lies beside them; then a virtual environment is
created (or reused, to add plugins later) and ``pip install --no-index --find-links``
installs what ``requirements.txt`` names from this folder only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKSUMS = "SHA256SUMS"


class InstallError(Exception):
    """What went wrong and what to do; printed as one line."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksums(wheelhouse: Path) -> int:
    """Check every file named in SHA256SUMS; returns how many were checked."""
    listing = wheelhouse / CHECKSUMS
    if not listing.is_file():
        raise InstallError(
            f"{listing} is missing, so the wheelhouse cannot be verified; "
            "copy the whole wheelhouse folder again"
        )
    expected = {}
    for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise InstallError(
                f"{listing} line {number} is not '<sha256>  <file>'; copy the whole wheelhouse folder again"
            )
        expected[name] = digest
    for name, digest in expected.items():
        path = wheelhouse / name
        if not path.is_file():
            raise InstallError(
                f"{name} is listed in {CHECKSUMS} but missing; copy the whole wheelhouse folder again"
            )
        if sha256(path) != digest:
            raise InstallError(
                f"{name} does not match its checksum (damaged or changed); "
                "copy the wheelhouse folder again from the machine that built it"
            )
    unlisted = sorted(
        p.relative_to(wheelhouse).as_posix()
        for p in (wheelhouse / "wheels").glob("*.whl")
        if p.relative_to(wheelhouse).as_posix() not in expected
    )
    if unlisted:
        raise InstallError(
            f"{', '.join(unlisted)} is not listed in {CHECKSUMS}; add packages with "
            "'wheelhouse.py add' (which lists them) or remove the file"
        )
    return len(expected)


def check_python(wheelhouse: Path) -> None:
    manifest = json.loads((wheelhouse / "manifest.json").read_text(encoding="utf-8"))
    wanted = manifest.get("python_version")
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if wanted and wanted != running:
        raise InstallError(
            f"this wheelhouse was built for Python {wanted} but this is Python "
            f"{running}; run install.py with Python {wanted}, or build a wheelhouse "
            f"with --python-version {running}"
        )


def default_target() -> Path:
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "desktop-tl" / "venv"


def venv_python(target: Path) -> Path:
    return target / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def offline_environment() -> dict:
    """The process environment without PIP_* settings, and no pip config files, so that
    only this folder is used: a stray index or find-links setting must not leak in."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def create_venv(target: Path) -> Path:
    python = venv_python(target)
    if python.is_file():
        return python  # reuse: adding plugins to an existing installation
    if target.exists() and any(target.iterdir()):
        raise InstallError(f"{target} exists and is not a virtual environment; choose an empty or new folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InstallError(
            f"cannot create {target.parent} ({exc.strerror}); "
            "pass a folder you can write to: python install.py FOLDER"
        ) from exc
    done = subprocess.run([sys.executable, "-m", "venv", str(target)], capture_output=True, text=True)
    if done.returncode != 0 or not python.is_file():
        raise InstallError(
            f"could not create a virtual environment in {target}: "
            f"{(done.stderr or done.stdout).strip()}; on Debian/Ubuntu install python3-venv"
        )
    return python


def pip_install(python: Path, wheelhouse: Path) -> None:
    command = [
        str(python),
        "-m",
        "pip",
        "install",
        "--no-index",
        "--find-links",
        str(wheelhouse / "wheels"),
        "-r",
        str(wheelhouse / "requirements.txt"),
    ]
    print("+ " + " ".join(command), flush=True)
    if subprocess.run(command, env=offline_environment()).returncode != 0:
        raise InstallError(
            "pip could not install from the wheelhouse (see its message above); "
            "the wheelhouse may be for another platform or Python: rebuild it with "
            "--platform and --python-version for this machine"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install desktop-tl offline from this wheelhouse.")
    parser.add_argument(
        "target",
        nargs="?",
        type=Path,
        default=None,
        help=f"virtual environment to create or add to (default: {default_target()})",
    )
    parser.add_argument(
        "--wheelhouse",
        type=Path,
        default=HERE,
        help="the wheelhouse folder (default: the folder this script is in)",
    )
    parser.add_argument("--verify-only", action="store_true", help="check the checksums and stop")
    parser.add_argument(
        "--launcher",
        action="store_true",
        help="afterwards run 'desktop-tl install-launcher' to add it to the menu",
    )
    args = parser.parse_args(argv)
    wheelhouse = args.wheelhouse.resolve()
    target = (args.target or default_target()).absolute()
    try:
        count = verify_checksums(wheelhouse)
        print(f"checksums: {count} files match {CHECKSUMS}")
        if args.verify_only:
            return 0
        check_python(wheelhouse)
        python = create_venv(target)
        pip_install(python, wheelhouse)
    except InstallError as exc:
        print(f"install.py: error: {exc}", file=sys.stderr)
        return 2
    bin_dir = python.parent
    app = bin_dir / ("desktop-tl.exe" if sys.platform == "win32" else "desktop-tl")
    print(f"installed into {target}\nstart it with: {app}")
    if args.launcher:
        return subprocess.run([str(app), "install-launcher"]).returncode
    print(f"add it to the application menu with: {app} install-launcher")
    return 0


if __name__ == "__main__":
    sys.exit(main())
