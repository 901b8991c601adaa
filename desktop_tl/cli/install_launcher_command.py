"""``desktop-tl install-launcher``: put the app in the desktop's application menu."""

from __future__ import annotations

import argparse

from .. import launcher


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "install-launcher",
        help="add desktop-tl to the application menu (or remove it with --uninstall)",
        description="Write a launcher that opens this installation's desktop window: a "
        "freedesktop .desktop entry and icons under $XDG_DATA_HOME on Linux, a Start-menu "
        "shortcut on Windows, ~/Applications/desktop-tl.app on macOS. Only the current "
        "user's folders are touched.",
    )
    parser.add_argument("--uninstall", action="store_true", help="remove the launcher this command wrote")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.uninstall:
        removed = launcher.uninstall_launcher()
        if not removed:
            print("no desktop-tl launcher was installed for this user; nothing removed")
        for path in removed:
            print(f"removed {path}")
        return 0
    written = launcher.install_launcher()
    command = launcher.launch_command()
    print(f"launcher for {command.program} written:")
    for path in written:
        print(f"  {path}")
    return 0
