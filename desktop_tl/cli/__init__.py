"""The ``desktop-tl`` command: GUI, train, predict, plugins, plugin new, models, weights,
runs, export, launch-files.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and
``run(args) -> int``. A :class:`~desktop_tl.errors.UserError` becomes one line on stderr
and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ..errors import UserError

SUBCOMMANDS = (
    "gui",
    "train",
    "predict",
    "plugins",
    "plugin",
    "models",
    "weights",
    "install-launcher",
    "runs",
    "export",
    "launch-files",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line, not the usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="desktop-tl",
        description="Transfer learning with pretrained image models. "
        "Without a subcommand, opens the desktop window.",
    )
    parser.add_argument("--version", action="version", version=f"desktop-tl {__version__}")
    subparsers = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"{__name__}.{name.replace('-', '_')}_command")
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["gui", *argv])
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        print(f"desktop-tl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        import errno

        # a path no file system accepts, found past the up-front checks
        if exc.errno != errno.ENAMETOOLONG:
            raise
        from .paths import too_long_message

        print(
            f"desktop-tl {args.command}: error: {too_long_message(exc.filename or '', 'a file or folder')}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"desktop-tl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
