"""What the bundled application runs: the ``desktop-tl`` command, opening the window when
started without arguments (as from the desktop's application menu)."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # data-loader worker processes re-enter the bundle here
    from desktop_tl.cli import main

    sys.exit(main())
