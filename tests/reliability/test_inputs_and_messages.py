"""Bad inputs a hostile tester tried on the command line, and the messages they got.

Every case: one clear line on stderr, a non-zero exit, no traceback, nothing created.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

from plugin.fakedist import FakeSite
from desktop_tl.cli import main
from desktop_tl.core.config import ConfigError, RunConfig
from desktop_tl.plugin import manager
from desktop_tl.plugin.manager import PluginHost

from helpers_training import sample_subset

LONG_NAME = "x" * 300  # longer than any file system allows for one name (255)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return sample_subset(tmp_path_factory.mktemp("photos"), n_train=4, n_val=2)


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """A private runs folder, so 'nothing created' can be checked."""
    folder = tmp_path / "runs"
    monkeypatch.setenv("DTL_RUNS_DIR", str(folder))
    return folder


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert err.count("\n") == 1, err
    return err


def nothing_in(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


# --------------------------------------------------------------------------- numbers (9)


@pytest.mark.parametrize(
    "flag, value, words",
    [
        ("--lr", "nan", "train.lr"),
        ("--lr", "inf", "train.lr"),
        ("--backbone-lr-mult", "nan", "train.backbone_lr_mult"),
        ("--seed", "99999999999999999999", "train.seed"),
        ("--seed", "-1", "train.seed"),
    ],
)
def test_bad_numbers_on_the_command_line_are_refused_before_anything_is_made(
    photos, runs, tmp_path, capsys, flag, value, words
):
    out = tmp_path / "run"
    code = main(["train", "--data", str(photos), flag, value, "--out", str(out), "--quiet"])
    line = one_error_line(capsys)
    assert code == 2
    assert words in line and value in line
    assert not out.exists() and nothing_in(runs)


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("train", "lr", "nan"),
        ("train", "backbone_lr_mult", "inf"),
        ("train", "weight_decay", "-inf"),
        ("train", "gamma", "nan"),
        ("data", "val_fraction", "nan"),
        ("data", "split_seed", "-5"),
        ("train", "seed", "9223372036854775807"),
        ("data", "num_workers", "-7"),
    ],
)
def test_bad_numbers_in_a_run_file_are_refused(tmp_path, section, key, value):
    text = f'[data]\npath = "{tmp_path}"\n' if section != "data" else ""
    text += f"[{section}]\n{key} = {value}\n"
    with pytest.raises(ConfigError, match=rf"{section}\.{key}"):
        RunConfig.from_toml(text)


def test_a_run_file_with_nan_learning_rate_gives_one_line(photos, runs, tmp_path, capsys):
    run_file = tmp_path / "run.toml"
    run_file.write_text(f'[data]\npath = "{photos}"\n[train]\nlr = nan\n', encoding="utf-8")
    assert main(["train", str(run_file), "--quiet"]) == 2
    assert "train.lr" in one_error_line(capsys)
    assert nothing_in(runs)


# --------------------------------------------------------------------------- long names (13)


def test_a_300_character_data_folder_name_is_one_line(runs, tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path / LONG_NAME), "--quiet"])
    line = one_error_line(capsys)
    assert code == 2 and "too long" in line and "--data" in line
    assert nothing_in(runs)


def test_a_300_character_out_folder_name_is_one_line(photos, runs, tmp_path, capsys):
    code = main(["train", "--data", str(photos), "--out", str(tmp_path / LONG_NAME), "--quiet"])
    line = one_error_line(capsys)
    assert code == 2 and "too long" in line and "--out" in line
    assert nothing_in(runs) and not (tmp_path / LONG_NAME[:200]).exists()


def test_a_300_character_run_folder_for_predict_is_one_line(tmp_path, capsys):
    code = main(["predict", str(tmp_path / LONG_NAME), str(tmp_path / "a.png")])
    line = one_error_line(capsys)
    assert code == 2 and "too long" in line


def test_a_300_character_image_name_for_predict_is_one_line(tmp_path, capsys):
    code = main(["predict", str(tmp_path), str(tmp_path / (LONG_NAME + ".png"))])
    line = one_error_line(capsys)
    assert code == 2 and "too long" in line


# --------------------------------------------------------------------------- messages (15)


def test_a_failed_train_prints_its_error_once_and_no_missing_report(runs, tmp_path, capsys):
    data = tmp_path / "broken"
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
        (data / name / "1.png").write_bytes(b"not an image")
    assert main(["train", "--data", str(data), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "could be read" in lines[0]
    assert "bad-file report" not in lines[0]
    assert nothing_in(runs)


@pytest.fixture
def site(fake_site):
    """A fake site-packages that the application's own plugin host sees."""
    yield fake_site
    sys.path.remove(str(fake_site.root))  # before the host reloads, or it imports these again
    fake_site.forget_modules()
    manager.get_host(refresh=True)


def _install(site: FakeSite, dist: str, module: str, source: str) -> None:
    site.add(dist, {module: source})
    importlib.invalidate_caches()


BROKEN_PROVIDER = """
    from desktop_tl.plugin import hookimpl
    from desktop_tl.plugin.descriptors import BackboneProvider, WeightsStatus

    DTL_API_VERSION = "1.0"

    def create(model_name, weights="auto"):
        {body}

    @hookimpl
    def dtl_backbone_providers():
        return [BackboneProvider(
            id="brokenbb", display_name="Broken", list_models=lambda: ["tinybroken"],
            create=create, weights_status=lambda m: WeightsStatus(True, "random", None, ""),
            weight_file_names=lambda m: [])]
"""


@pytest.mark.parametrize(
    "body, words",
    [('raise ZeroDivisionError("division by zero in my plugin")', "ZeroDivisionError"), ("return 42", "int")],
)
def test_a_backbone_plugin_whose_create_breaks_is_named(site, photos, runs, capsys, body, words):
    _install(site, "lab-broken-backbones", "fake_rel_broken", BROKEN_PROVIDER.replace("{body}", body))
    manager.get_host(refresh=True)
    code = main(["train", "--data", str(photos), "--backbone", "brokenbb:tinybroken", "--quiet"])
    line = one_error_line(capsys)
    assert code != 0
    assert "fake_rel_broken" in line and "lab-broken-backbones" in line and words in line
    assert nothing_in(runs)


def test_a_raising_epoch_end_hook_is_one_named_warning(site, photos, tmp_path, capsys):
    _install(
        site,
        "lab-noisy-hooks",
        "fake_rel_noisy",
        """
        from desktop_tl.plugin import hookimpl
        DTL_API_VERSION = "1.0"

        @hookimpl
        def dtl_on_epoch_end(metrics):
            raise KeyError("val_f1")
        """,
    )
    manager.get_host(refresh=True)
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--data",
            str(photos),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if "dtl_on_epoch_end" in line]
    assert len(warnings) == 1 and "fake_rel_noisy" in warnings[0] and "val_f1" in warnings[0]
    assert "val_f1" in (out / "run.log").read_text(encoding="utf-8")


def test_a_disabled_shipped_plugin_is_named_when_its_model_is_asked_for(monkeypatch):
    monkeypatch.setenv("DTL_DISABLED_PLUGINS", "dtl_efficientnet_lite")
    host = PluginHost()
    with pytest.raises(manager.BackboneNotFoundError) as info:
        host.resolve_backbone("efficientnet_lite0")
    message = str(info.value)
    assert "DTL_DISABLED_PLUGINS" in message and "dtl-efficientnet-lite" in message
    with pytest.raises(manager.BackboneNotFoundError, match="DTL_DISABLED_PLUGINS"):
        host.resolve_backbone("efficientnet_lite:efficientnet_lite0")


def test_a_disabled_plugin_in_train_is_one_line_naming_the_switch(photos, runs, monkeypatch, capsys):
    monkeypatch.setenv("DTL_DISABLED_PLUGINS", "dtl_efficientnet_lite")
    manager.get_host(refresh=True)
    try:
        code = main(["train", "--data", str(photos), "--quiet"])
    finally:
        monkeypatch.delenv("DTL_DISABLED_PLUGINS")
        manager.get_host(refresh=True)
    line = one_error_line(capsys)
    assert code != 0 and re.search(r"DTL_DISABLED_PLUGINS", line)
    assert nothing_in(runs)
