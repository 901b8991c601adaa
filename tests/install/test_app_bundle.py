"""The bundled application folder (PyInstaller): built from this environment, it trains the
demo through its own window with no Python of ours on the path. Slow (minutes, several GB):
only with DTL_TEST_APP_BUNDLE=1."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("DTL_TEST_APP_BUNDLE") != "1",
        reason="builds a multi-GB application folder; set DTL_TEST_APP_BUNDLE=1",
    ),
]


def load_build_script():
    spec = importlib.util.spec_from_file_location("build_app", ROOT / "scripts" / "build_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bundled_folder_trains_the_demo_without_python(tmp_path):
    pytest.importorskip("PyInstaller")
    build_app = load_build_script()
    folder = build_app.build(tmp_path / "dist", tmp_path / "work")
    assert build_app.executable(folder).is_file()
    # The plugins are found through their collected entry points, the weights as package data.
    assert any(folder.rglob("dtl_efficientnet_lite-*.dist-info/entry_points.txt")) or any(
        folder.rglob("dtl_efficientnet_lite*.dist-info")
    )
    report = build_app.smoke(folder)
    assert report["status"] == "completed", report
    assert report["epochs_completed"] == 1 and report["val_acc"] is not None
