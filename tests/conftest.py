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

# The fake site-packages for plugin tests (fixture ``fake_site``), for every test folder.
pytest_plugins = ["plugin.fakedist"]


def pytest_configure(config):
    import torch

    # Test processes side by side (make test) share the cores: more threads than cores
    # would spin against each other.
    processes = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // processes)))


def pytest_collection_modifyitems(config, items):
    import torch

    from desktop_tl.core.device import mps_available

    # The torchrun launches are the longest file: first, so that with two test processes
    # (make test) the other process works through the rest meanwhile, not at the end.
    items.sort(key=lambda item: not item.nodeid.startswith("tests/distributed/"))
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_mps = pytest.mark.skip(reason="needs Apple MPS")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)
        if "mps" in item.keywords and not mps_available():
            item.add_marker(skip_mps)


@pytest.fixture
def places(tmp_path, monkeypatch):
    """A private weights folder and torch hub cache, downloads off, and a folder outside
    both for files a user would import."""
    weights_dir = tmp_path / "weights"
    torch_home = tmp_path / "torch"
    monkeypatch.setenv("DTL_WEIGHTS_DIR", str(weights_dir))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.delenv("DTL_ALLOW_DOWNLOAD", raising=False)
    return {
        "weights": weights_dir,
        "hub": torch_home / "hub" / "checkpoints",
        "outside": tmp_path / "downloads",
    }
