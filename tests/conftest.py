"""Test-wide set-up: offscreen Qt, private data folders, a small thread budget."""

import os
import tempfile

# Set before anything imports Qt or reads these paths.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_private = tempfile.mkdtemp(prefix="dtl-tests-")
for _name, _sub in (("DTL_RUNS_DIR", "runs"), ("DTL_CACHE_DIR", "cache"), ("DTL_WEIGHTS_DIR", "weights")):
    os.environ.setdefault(_name, os.path.join(_private, _sub))
os.environ.setdefault("DTL_ALLOW_DOWNLOAD", "0")

import pytest  # noqa: E402


def pytest_configure(config):
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    import torch

    from desktop_tl.core.device import mps_available

    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_mps = pytest.mark.skip(reason="needs Apple MPS")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)
        if "mps" in item.keywords and not mps_available():
            item.add_marker(skip_mps)
