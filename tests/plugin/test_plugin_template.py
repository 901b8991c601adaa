"""A plugin package started with ``desktop-tl plugin new``, installed with pip, is found
by the real host, listed, selectable in the window and used in a short training run."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_data import make_image_folder
from desktop_tl.cli import main
from desktop_tl.errors import UserError
from desktop_tl.plugin.manager import get_host


EPOCH_HOOK = '''

EPOCHS = []


@hookimpl
def dtl_on_epoch_end(run_dir, epoch, metrics):
    EPOCHS.append((epoch, metrics["epoch"]))
'''


def pip_install(package_dir: Path, site: Path) -> None:
    """Install into a folder of its own (not into the test environment's site-packages),
    offline: the build backend comes from this environment."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(package_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def render(tmp_path: Path, name: str, kind: str) -> Path:
    assert main(["plugin", "new", name, "--kind", kind, "--directory", str(tmp_path)]) == 0
    return tmp_path / name


def run_its_own_tests(package_dir: Path, site: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            str(package_dir / "tests"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=package_dir,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout


@pytest.fixture
def installed_backbone_plugin(tmp_path):
    """The backbone template rendered as ``leaf-net`` and pip-installed into a folder put
    on sys.path; the process-wide host reloaded with it, and without it afterwards."""
    package_dir = render(tmp_path / "src", "leaf-net", "backbone")
    with open(package_dir / "leaf_net" / "__init__.py", "a") as module:
        module.write(EPOCH_HOOK)  # an author's second hook: sees the epochs training counts
    site = tmp_path / "site"
    pip_install(package_dir, site)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield package_dir, site, get_host(refresh=True)
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("leaf_net", None)
        importlib.invalidate_caches()
        get_host(refresh=True)


def test_the_rendered_package_has_an_entry_point_a_readme_and_imports_only_the_sdk(tmp_path):
    for kind in ("backbone", "loader", "head"):
        package_dir = render(tmp_path / kind, f"lab-{kind}", kind)
        pyproject = (package_dir / "pyproject.toml").read_text()
        assert '[project.entry-points.desktop_tl]\nlab_' + kind + ' = "lab_' + kind + '"' in pyproject
        assert "pip install -e ." in (package_dir / "README.md").read_text()
        source = (package_dir / f"lab_{kind}" / "__init__.py").read_text()
        assert "{{" not in source and "{{" not in pyproject
        imported = {
            node.module
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.ImportFrom) and node.module
        } | {
            alias.name
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        ours = {name for name in imported if name.startswith("desktop_tl")}
        assert ours == {"desktop_tl.plugin"}, (kind, ours)


def test_an_installed_backbone_plugin_is_listed_selectable_and_trains(
    installed_backbone_plugin, tmp_path, capsys
):
    package_dir, site, host = installed_backbone_plugin
    [record] = [r for r in host.records if r.name == "leaf_net"]
    assert (record.status, record.distribution, record.provides) == (
        "loaded",
        "leaf-net",
        ["backbone:leaf-net", "hook:dtl_on_epoch_end"],
    )

    assert main(["plugins", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert listed["leaf_net"]["status"] == "loaded"
    assert main(["models", "--provider", "leaf-net", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["name"] == "leaf-net:leaf_net_small" and row["available"] is False
    assert row["file_names"] == ["leaf_net_small.safetensors"]

    provider, model = host.resolve_backbone("leaf_net_small")
    assert (provider.id, model) == ("leaf-net", "leaf_net_small")

    data = tmp_path / "data"
    make_image_folder(data, {"cat": 6, "dog": 6}, size=(24, 24))
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--backbone",
            "leaf-net:leaf_net_small",
            "--weights",
            "none",
            "--head",
            "linear",
            "--freeze",
            "none",
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed", summary
    assert summary["epochs_completed"] == 2
    assert summary["backbone"] == "leaf-net:leaf_net_small"
    assert summary["weights"]["pretrained"] is False
    run = (out / "run.toml").read_text()
    assert 'backbone = "leaf-net:leaf_net_small"' in run
    assert (out / "metrics.csv").read_text().count("\n") == 3  # header, epochs 1 and 2
    # the hook's epoch is counted as metrics["epoch"] is: from 1
    assert sys.modules["leaf_net"].EPOCHS == [(1, 1), (2, 2)]


def test_the_window_lists_and_selects_the_installed_provider(installed_backbone_plugin, qtbot):
    from desktop_tl.gui.model_panel import ModelPanel

    _, _, host = installed_backbone_plugin
    panel = ModelPanel()
    qtbot.addWidget(panel)
    panel.set_host(host)
    index = panel.provider_combo.findData("leaf-net")
    assert index >= 0 and panel.provider_combo.itemText(index) == "Leaf Net"
    panel.provider_combo.setCurrentIndex(index)
    assert panel.listed_models() == ["leaf_net_small"]
    assert panel.backbone_name() == "leaf-net:leaf_net_small"
    panel.cancel()


@pytest.mark.parametrize("kind", ["backbone", "loader", "head"])
def test_the_rendered_test_loads_the_plugin_through_the_real_host(tmp_path, kind):
    package_dir = render(tmp_path / "src", f"lab-{kind}-demo", kind)
    site = tmp_path / "site"
    pip_install(package_dir, site)
    run_its_own_tests(package_dir, site)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("1leaf", "starting with a letter"),
        ("leaf net!", "use letters, digits"),
        ("class", "use letters, digits"),
        ("torch", "already importable"),
    ],
)
def test_a_name_that_cannot_name_a_package_is_refused(tmp_path, capsys, name, expected):
    assert main(["plugin", "new", name, "--directory", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_an_existing_folder_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "leaf-net").mkdir()
    (tmp_path / "leaf-net" / "notes.txt").write_text("mine")
    assert main(["plugin", "new", "leaf-net", "--directory", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "leaf-net" / "notes.txt").read_text() == "mine"


def test_kind_must_be_known():
    with pytest.raises(UserError, match="backbone, loader, head"):
        from desktop_tl.cli.plugin_command import render as render_package

        render_package("leaf", "optimizer", ".")
