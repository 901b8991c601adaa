"""Large buffers go straight back to the system on Linux.

glibc serves an allocation above its mmap threshold with its own mapping, returned on
free; but each such free raises the threshold (up to 32 MiB), so after the first few
decoded photos every camera-size buffer comes from the heap instead, and the heap,
fragmented by the decoding threads, keeps what they freed: a run's memory then grows with
the number of photos (about 0.5 MB each) far past its cache budget. A fixed threshold
turns that adjustment off. Elsewhere (macOS, Windows, musl) there is nothing to do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: mallopt's M_MMAP_THRESHOLD, and the value set: buffers of 1 MiB or more are mappings.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20

_done = False


def keep_large_buffers_returnable() -> bool:
    """Fix glibc's mmap threshold once per process; True when it was set."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    return _done
