"""``desktop-tl plugins``: the listing a person reads when a plugin misbehaves."""

from __future__ import annotations

import json

import pytest

from desktop_tl.cli import main
from desktop_tl.plugin import API_VERSION, manager


GOOD = '''
from desktop_tl.plugin import hookimpl
from desktop_tl.plugin.descriptors import HeadType
DTL_API_VERSION = "1.0"

def _build(in_features, num_classes):
    from torch import nn
    return nn.Linear(in_features, num_classes)

@hookimpl
def dtl_head_types():
    return [HeadType(id="fake-cli-head", display_name="Linear", build=_build)]
'''

BROKEN = '''
from desktop_tl.plugin import hookimpl
DTL_API_VERSION = "1.0"

@hookimpl
def dtl_dataset_loaders():
    raise RuntimeError("loader registry exploded")
'''


@pytest.fixture
def installed(fake_site, monkeypatch):
    """A good, a broken and an outdated plugin installed; the process-wide host is fresh
    for the test and restored afterwards."""
    monkeypatch.setattr(manager, "_host", None)
    monkeypatch.setattr(manager, "_host_disabled", ())
    fake_site.add("fake-cli-good", {"fake_cli_good": GOOD}, version="1.2.0")
    fake_site.add("fake-cli-broken", {"fake_cli_broken": BROKEN}, version="0.1")
    fake_site.add("fake-cli-old", {"fake_cli_old": "DTL_API_VERSION = '0.3'\n"}, version="0.0.9")
    return fake_site


def ours(report: dict) -> dict[str, dict]:
    """The fake plugins' entries (the real shipped plugins may be installed too)."""
    return {p["name"]: p for p in report["plugins"] if p["distribution"].startswith("fake-cli-")}


def test_plugins_json_lists_good_broken_and_refused_plugins(installed, capsys):
    assert main(["plugins", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["api_version"] == API_VERSION
    plugins = ours(report)
    assert set(plugins) == {"fake_cli_good", "fake_cli_broken", "fake_cli_old"}

    good = plugins["fake_cli_good"]
    assert good == {
        "name": "fake_cli_good",
        "distribution": "fake-cli-good",
        "version": "1.2.0",
        "module": "fake_cli_good",
        "provides": ["head:fake-cli-head"],
        "status": "loaded",
        "error": None,
        "summary": None,
        "notes": [],
    }

    broken = plugins["fake_cli_broken"]
    assert broken["status"] == "failed" and broken["provides"] == []
    assert broken["summary"] == ("raised in dtl_dataset_loaders: RuntimeError: loader registry exploded")
    assert broken["error"].startswith(broken["summary"])
    assert "Traceback (most recent call last)" in broken["error"]

    old = plugins["fake_cli_old"]
    assert old["status"] == "refused"
    assert "targets plugin API 0.3, but this desktop_tl supports 1.x" in old["summary"]


def test_plugins_table_shows_status_and_errors(installed, capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "PROVIDES"]
    rows = {  # table rows, not the detail lines "name (distribution version) status: ..."
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.startswith("fake_cli") and not line.split()[1].startswith("(")
    }
    assert rows["fake_cli_good"] == [
        "fake_cli_good",
        "fake-cli-good",
        "1.2.0",
        "loaded",
        "head:fake-cli-head",
    ]
    assert rows["fake_cli_broken"][:4] == ["fake_cli_broken", "fake-cli-broken", "0.1", "failed"]
    assert (
        "fake_cli_broken (fake-cli-broken 0.1) failed: raised in dtl_dataset_loaders: "
        "RuntimeError: loader registry exploded"
    ) in out
    assert "Traceback" not in out
    assert "desktop-tl plugins --verbose" in out


def test_plugins_verbose_prints_tracebacks(installed, capsys):
    assert main(["plugins", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "Traceback (most recent call last)" in out
    assert "fake_cli_broken.py" in out and 'raise RuntimeError("loader registry exploded")' in out


def test_plugins_honours_disabled_plugins(installed, capsys, monkeypatch):
    monkeypatch.setenv("DTL_DISABLED_PLUGINS", "fake-cli-broken")
    assert main(["plugins", "--json"]) == 0
    plugins = ours(json.loads(capsys.readouterr().out))
    assert plugins["fake_cli_broken"]["status"] == "disabled"
    assert plugins["fake_cli_broken"]["error"] is None
    assert plugins["fake_cli_good"]["status"] == "loaded"


def test_plugins_lists_duplicate_ids_as_problems(installed, capsys):
    installed.add("fake-cli-zz-copy", {"fake_cli_copy": GOOD})
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    problems = out.split("Problems:")[1]
    assert (
        "head type id 'fake-cli-head' is provided by both plugin 'fake_cli_good' "
        "(fake-cli-good 1.2.0) and plugin 'fake_cli_copy' (fake-cli-zz-copy 1.0)" in problems
    )
    assert "note: head:fake-cli-head not registered" in out
