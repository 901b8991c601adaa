"""glibc's mmap threshold is fixed once per process (see desktop_tl.core.allocator; the
memory it saves on 10,000 camera photos is measured by tests/benchmarks/bench_photos.py)."""

import sys

import pytest

from desktop_tl.core.allocator import keep_large_buffers_returnable


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_the_threshold_is_set_once_and_stays_set():
    assert keep_large_buffers_returnable() is True
    assert keep_large_buffers_returnable() is True  # a second Trainer changes nothing
