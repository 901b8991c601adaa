"""Build the bundled application folder: ``desktop-tl`` that runs without Python.

    python scripts/build_app.py [--dist DIR] [--smoke]

Runs PyInstaller (``pip install pyinstaller`` first) on ``packaging/desktop-tl.spec``
from the environment the app is installed in, so whichever torch build that environment
holds (CUDA or CPU) is what the folder carries. ``--smoke`` then trains the demo for one
epoch through the bundled window, without a display, and checks its report. Build on each
platform for that platform: PyInstaller does not cross-build.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "desktop-tl.spec"


def build(dist: Path, work: Path) -> Path:
    """The bundled folder (``dist/desktop-tl``), built afresh."""
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        raise SystemExit(
            f"PyInstaller is not installed in this environment: {sys.executable} -m pip install pyinstaller"
        ) from None
    command = [
        sys.executable,
        "-m",
        "PyInstaller",
        str(SPEC),
        "--noconfirm",
        "--distpath",
        str(dist),
        "--workpath",
        str(work),
    ]
    subprocess.run(command, check=True, cwd=ROOT)
    return dist / "desktop-tl"


def executable(folder: Path) -> Path:
    return folder / ("desktop-tl.exe" if os.name == "nt" else "desktop-tl")


def smoke(folder: Path) -> dict:
    """One demo epoch through the bundled window, offscreen, from an empty working folder
    and with no Python on PATH that could stand in for the bundle's own."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PYTHON", "VIRTUAL_ENV", "CONDA"))
        }
        env.update(
            QT_QPA_PLATFORM="offscreen",
            DTL_RUNS_DIR=str(Path(tmp) / "runs"),
            DTL_CACHE_DIR=str(Path(tmp) / "cache"),
        )
        if os.name != "nt":
            env["PATH"] = os.defpath  # the system's, without any virtual environment's bin/
        subprocess.run(
            [
                str(executable(folder)),
                "gui",
                "--demo",
                "--run",
                "--exit-when-done",
                "--epochs",
                "1",
                "--settings",
                str(Path(tmp) / "settings.ini"),
                "--report",
                str(report),
            ],
            check=True,
            cwd=tmp,
            env=env,
            timeout=1800,
        )
        return json.loads(report.read_text())


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", default=str(ROOT / "dist"), help="where the folder goes (default: dist/)")
    parser.add_argument("--smoke", action="store_true", help="train the demo once with the built folder")
    args = parser.parse_args()
    dist = Path(args.dist).resolve()
    started = time.perf_counter()
    folder = build(dist, dist.parent / "build-app")
    print(f"built {folder} ({folder_size(folder) / 2**30:.1f} GiB) in {time.perf_counter() - started:.0f} s")
    if args.smoke:
        report = smoke(folder)
        print(f"smoke run: {report.get('status')}, validation accuracy {report.get('val_acc')}")
        return 0 if report.get("status") == "completed" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
