"""Fake installed distributions for plugin tests.

A :class:`FakeSite` is a folder on ``sys.path`` holding ``<name>-<version>.dist-info``
folders (``METADATA`` + ``entry_points.txt``) and plugin modules, exactly what pip leaves
in site-packages, so the host discovers them through :mod:`importlib.metadata` like any
installed plugin.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest

import desktop_tl
from desktop_tl.plugin.manager import PluginHost

GOOD_HEADER = """\
from desktop_tl.plugin import hookimpl
from desktop_tl.plugin.descriptors import (
    Backbone, BackboneProvider, DatasetLoader, HeadOption, HeadType, LoadedDataset,
    Preprocessing, Sample, WeightsProvenance, WeightsStatus)

DTL_API_VERSION = "1.0"
"""


class FakeSite:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: set[str] = set()

    def add(
        self,
        dist: str,
        modules: dict[str, str],
        entry_points: dict[str, str] | None = None,
        version: str = "1.0",
    ) -> None:
        """Install ``dist``: write each module (name -> source, dedented) and register
        entry points (name -> "module[:attr]"; default: one per module, named after it)."""
        for name, source in modules.items():
            (self.root / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            self.modules.add(name)
        if entry_points is None:
            entry_points = {name: name for name in modules}
        info = self.root / f"{re.sub(r'[-_.]+', '_', dist)}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = ["[desktop_tl]", *(f"{k} = {v}" for k, v in entry_points.items()), ""]
        (info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")
        importlib.invalidate_caches()

    def host(self, **kwargs) -> PluginHost:
        """A loaded host that sees only this site's distributions."""
        host = PluginHost(path=[str(self.root)], **kwargs)
        host.load()
        return host

    def forget_modules(self) -> None:
        for name in self.modules:
            sys.modules.pop(name, None)


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    """An empty fake site-packages on sys.path, with the plugin env variables cleared."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("DTL_DISABLED_PLUGINS", raising=False)
    monkeypatch.delenv("DTL_STRICT_PLUGINS", raising=False)
    site = FakeSite(root)
    yield site
    site.forget_modules()


def record(host: PluginHost, name: str):
    """The record of the entry point ``name``."""
    matches = [r for r in host.records if r.name == name]
    assert len(matches) == 1, [r.name for r in host.records]
    return matches[0]


def python_env(*folders) -> dict[str, str]:
    """The environment for a child Python that imports desktop_tl and ``folders``."""
    paths = [*map(str, folders), str(Path(desktop_tl.__file__).parents[1])]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
