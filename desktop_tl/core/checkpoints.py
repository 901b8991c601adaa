"""Checkpoints: model weights as safetensors, JSON metadata, optimiser state.

A checkpoint is a folder (``checkpoints/last``, ``checkpoints/best``) holding
``model.safetensors``, ``meta.json`` and ``training_state.pt``. It is written into a
temporary folder first and swapped into place by renames, so a crash never leaves a
half-written checkpoint: at worst the previous one survives as ``<name>.old``.
``training_state.pt`` holds only tensors and plain containers and loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save, save_file

from ..errors import UserError
from .atomic import follow_umask
from .run_folder import check_free_space, describe_os_error

MODEL_FILE = "model.safetensors"
META_FILE = "meta.json"
STATE_FILE = "training_state.pt"


class CheckpointError(UserError):
    """A checkpoint is missing or unreadable."""


@dataclass
class Checkpoint:
    path: Path
    meta: dict[str, Any]

    def model_state(self) -> dict[str, torch.Tensor]:
        try:
            return load_file(str(self.path / MODEL_FILE))
        except Exception as exc:  # safetensors raises its own error type for damaged files
            raise CheckpointError(
                f"model weights in {self.path} are damaged ({exc}); use another checkpoint "
                "(checkpoints/last or checkpoints/best) or train again"
            ) from None

    def training_state(self) -> dict[str, Any]:
        state_path = self.path / STATE_FILE
        if not state_path.exists():
            raise CheckpointError(f"{self.path} has no training state; it cannot be resumed")
        try:
            return torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated or foreign file: never retry without weights_only
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"training state {state_path} is damaged ({first}); the run cannot be resumed "
                "from it, but its model weights can still be used for prediction"
            ) from None


def versions() -> dict[str, str]:
    import torchvision

    from .. import __version__

    return {
        "desktop_tl": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def tensor_bytes(obj: Any) -> int:
    """How many bytes the tensors in ``obj`` (nested dicts, lists, tuples) hold."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


#: Room kept beyond the tensors: metadata, file headers, pickled containers.
CHECKPOINT_OVERHEAD = 2**20


def warm_up_checkpoint_writers() -> None:
    """Write a one-value checkpoint into memory, once before a run's first epoch.

    safetensors and torch.save import parts of themselves on their first write (a few
    milliseconds); done here, that one-off cost is not part of the first epoch's work
    between epochs, which the time left takes as the cost of every one to come.
    """
    value = {"value": torch.zeros(1)}
    save(value)
    torch.save(value, io.BytesIO())


def save_checkpoint(
    folder: Path,
    model_state: dict[str, torch.Tensor],
    meta: dict[str, Any],
    training_state: dict[str, Any] | None = None,
    extra: Callable[[Path], None] | None = None,
) -> None:
    """Write a checkpoint folder atomically (temp folder, then renames); ``extra(tmp)``
    writes any further files into the new folder before it is swapped in.

    Free space is checked first (the new checkpoint is written whole before the old one
    goes), and a failed write becomes one :class:`CheckpointError` naming the folder.
    """
    needed = tensor_bytes(model_state) + tensor_bytes(training_state) + CHECKPOINT_OVERHEAD

    def write(tmp: Path) -> None:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model_state.items()}
        try:
            save_file(tensors, str(tmp / MODEL_FILE))
        except SafetensorError as exc:  # its I/O errors come as this type, not OSError
            raise CheckpointError(
                f"cannot write checkpoint {folder}: {exc}; free some space on that disk or make it "
                "writable, then try again"
            ) from None
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        if training_state is not None:
            torch.save(training_state, tmp / STATE_FILE)
        if extra is not None:
            extra(tmp)

    _write_atomically(Path(folder), needed, write)


def copy_checkpoint(source: Path, folder: Path, leave_out: tuple[str, ...] = (STATE_FILE,)) -> None:
    """Make ``folder`` a checkpoint holding ``source``'s files but ``leave_out``, as
    atomically as :func:`save_checkpoint`: hard links where the disk has them (nothing is
    written again; ``source`` is only ever replaced whole, never changed in place), copies
    where it has not."""
    source = Path(source)
    files = [path for path in source.iterdir() if path.is_file() and path.name not in leave_out]

    def link(tmp: Path) -> None:
        for path in files:
            try:
                os.link(path, tmp / path.name)
            except OSError:  # a disk without hard links (FAT, some network shares)
                shutil.copyfile(path, tmp / path.name)

    _write_atomically(Path(folder), sum(path.stat().st_size for path in files) + CHECKPOINT_OVERHEAD, link)


def _write_atomically(folder: Path, needed: int, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` the files into a temporary folder beside ``folder``, then swap it
    in by renames: at worst the previous one survives as ``<name>.old``."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        check_free_space(folder.parent, needed, f"save checkpoint {folder.name}")
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError as exc:
        raise CheckpointError(describe_os_error(exc, folder)) from None
    try:
        follow_umask(tmp, directory=True)
        write(tmp)
        for written in tmp.iterdir():  # the safetensors writer makes its file 0600
            follow_umask(written)
        old = folder.with_name(folder.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(describe_os_error(exc, folder)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: ``mkdtemp`` names of :func:`save_checkpoint`'s temporary folders: ``.<name>.<random>``.
_TEMP_CHECKPOINT = re.compile(r"^\.[^.]+\.[A-Za-z0-9_]+$")


def tidy_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Clear what a killed :func:`save_checkpoint` leaves behind; returns what it removed.

    Temporary folders are removed. A ``<name>.old`` is removed when ``<name>`` is in
    place, and renamed back to ``<name>`` when the swap stopped between its two renames.
    Only call it while holding the run's lock: then no save can be under way.
    """
    checkpoints_dir = Path(checkpoints_dir)
    removed: list[Path] = []
    if not checkpoints_dir.is_dir():
        return removed
    for path in sorted(checkpoints_dir.iterdir()):
        try:
            if path.is_dir() and _TEMP_CHECKPOINT.match(path.name):
                shutil.rmtree(path)
                removed.append(path)
            elif path.is_dir() and path.name.endswith(".old"):
                current = path.with_name(path.name[: -len(".old")])
                if current.exists():
                    shutil.rmtree(path)
                    removed.append(path)
                else:
                    path.rename(current)
        except OSError:
            pass  # left for the next start; the checkpoints in place are untouched
    return removed


def load_checkpoint(folder: Path) -> Checkpoint:
    """Open a checkpoint folder, falling back to ``<name>.old`` after an interrupted save."""
    folder = Path(folder)
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        meta_path = candidate / META_FILE
        if meta_path.exists() and (candidate / MODEL_FILE).exists():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CheckpointError(f"checkpoint metadata {meta_path} is unreadable: {exc}") from None
            return Checkpoint(candidate, meta)
    raise CheckpointError(f"no checkpoint at {folder}")


def find_run_checkpoint(run_dir: Path, which: str = "best") -> Checkpoint:
    """The ``best`` (or ``last``) checkpoint of a run folder, with a clear error if absent."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"run folder {run_dir} does not exist")
    if (run_dir / META_FILE).exists():  # a checkpoint folder given directly
        return load_checkpoint(run_dir)
    order = [which, "last" if which == "best" else "best"]
    for name in order:
        try:
            return load_checkpoint(run_dir / "checkpoints" / name)
        except CheckpointError:
            continue
    raise CheckpointError(
        f"{run_dir} holds no checkpoint (checkpoints/best or checkpoints/last); "
        "is it a desktop-tl run folder, and did the run finish an epoch?"
    )
