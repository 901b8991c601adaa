"""Weight files a user would import, made in the test: random torchvision state dicts
written as .pth or .safetensors, and the sha256 that names official files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torchvision
from safetensors.torch import save_file


def random_state(name: str = "resnet18", seed: int = 0, **kwargs) -> "dict[str, torch.Tensor]":
    torch.manual_seed(seed)
    return torchvision.models.get_model(name, weights=None, **kwargs).state_dict()


def save_state(state, path: Path) -> Path:
    """Write ``state`` as safetensors or a torch pickle, by the file's suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file(dict(state), path)
    else:
        torch.save(state, path)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def one_error_line(capsys) -> str:
    """The one stderr line a refused command prints (and no traceback)."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err
