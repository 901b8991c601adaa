"""``desktop-tl plugin new NAME``: start a plugin package from the template.

The package it writes is a complete distribution: a ``pyproject.toml`` registering the
module under the ``desktop_tl`` entry-point group, one working hook written only against
the plugin SDK (:mod:`desktop_tl.plugin`), a README and a test that loads it through the
real plugin host. The template files live in ``desktop_tl/plugin/template/``.
"""

from __future__ import annotations

import argparse
import importlib.util
import keyword
import re
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UserError

KINDS = ("backbone", "loader", "head")

_USAGE = {
    "backbone": "Train with it: `desktop-tl train --data FOLDER --backbone "
    "{{plugin_id}}:{{model}} --weights none`, or pick the provider "
    "\"{{title}}\" in the window's model panel.",
    "loader": "Train with it: `desktop-tl train --data FOLDER --loader {{plugin_id}}`, or "
    "choose the loader \"{{title}}\" in the window's data panel.",
    "head": "Train with it: `desktop-tl train --data FOLDER --head {{plugin_id}}`, or choose "
    "the head \"{{title}}\" in the window's model panel.",
}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plugin",
        help="start a plugin package (desktop-tl plugin new NAME)",
        description="Tools for plugin authors.",
    )
    actions = parser.add_subparsers(
        dest="plugin_action", metavar="ACTION", required=True, parser_class=type(parser)
    )
    new = actions.add_parser(
        "new",
        help="write a new plugin package from the template",
        description="Write a plugin package: pyproject.toml with its entry point, one "
        "working hook, a README and a test that loads it through the plugin host. "
        "Install it with pip install -e NAME.",
    )
    new.add_argument(
        "name", metavar="NAME", help="the plugin's name: letters, digits, - or _ (e.g. leaf-heads)"
    )
    new.add_argument(
        "--kind", choices=KINDS, default="backbone", help="what the plugin provides (default: backbone)"
    )
    new.add_argument(
        "--directory",
        metavar="DIR",
        default=".",
        help="where to create the NAME folder (default: the current folder)",
    )
    new.set_defaults(run=run)


def names_for(name: str) -> dict[str, str]:
    """The package, distribution and descriptor names derived from ``name``; a
    :class:`UserError` when it cannot name a Python package."""
    text = (name or "").strip()
    package = re.sub(r"[-.\s]+", "_", text).lower()
    if not re.fullmatch(r"[a-z][a-z0-9_]*", package) or keyword.iskeyword(package):
        raise UserError(
            f"{name!r} cannot name a plugin package: use letters, digits, - and _, starting "
            "with a letter (e.g. leaf-heads)"
        )
    if importlib.util.find_spec(package) is not None:
        raise UserError(
            f"a module named {package!r} is already importable here, so the plugin would "
            "clash with it; choose another name (e.g. prefix it with your lab's name)"
        )
    return {
        "package": package,
        "distribution": package.replace("_", "-"),
        "plugin_id": package.replace("_", "-"),
        "model": f"{package}_small",
        "title": package.replace("_", " ").title(),
    }


def render(name: str, kind: str, directory: str | Path) -> Path:
    """Write the plugin package ``name`` of ``kind`` under ``directory``; its folder."""
    if kind not in KINDS:
        raise UserError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    from ..plugin.descriptors import API_VERSION

    values = names_for(name)
    values["api_version"] = API_VERSION
    values["description"] = f"{values['title']}, a {kind} plugin for desktop_tl"
    values["usage"] = _USAGE[kind]
    target = Path(directory).expanduser() / values["distribution"]
    if target.exists() and any(target.iterdir()):
        raise UserError(f"{target} already exists and is not empty; choose another name or --directory")
    template = resources.files("desktop_tl.plugin") / "template"
    files = {
        "pyproject.toml": template / "common" / "pyproject.toml.tmpl",
        "README.md": template / "common" / "README.md.tmpl",
        f"{values['package']}/__init__.py": template / kind / "__init__.py.tmpl",
        f"tests/test_{values['package']}.py": template / kind / "test_plugin.py.tmpl",
    }
    for relative, source in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_fill(source.read_text(encoding="utf-8"), values), encoding="utf-8")
    return target


def _fill(text: str, values: dict[str, str]) -> str:
    for _ in range(2):  # a value (the usage line) may itself hold placeholders
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
    left = re.search(r"\{\{\w+\}\}", text)
    assert left is None, f"template placeholder {left.group(0)} has no value"
    return text


def run(args: argparse.Namespace) -> int:
    target = render(args.name, args.kind, args.directory)
    package = names_for(args.name)["package"]
    print(
        f"Wrote the {args.kind} plugin {package} in {target}. Next:\n"
        f"  pip install -e {target}\n"
        f"  desktop-tl plugins                  # lists {package}\n"
        f"  python -m pytest {target / 'tests'}"
    )
    return 0
