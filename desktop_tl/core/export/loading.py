"""Reading what an export needs from a run folder, without writing anything to it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import UserError
from ...plugin.descriptors import Preprocessing
from ..checkpoints import META_FILE, MODEL_FILE, CheckpointError, load_checkpoint
from ..run_folder import CHECKPOINTS, RUN_FILE, SPLIT_FILE, SUMMARY_FILE


@dataclass
class LoadedRun:
    run_dir: Path
    checkpoint_name: str
    checkpoint_path: Path
    meta: dict[str, Any]
    model: torch.nn.Module
    classes: list[str]
    preprocessing: Preprocessing
    host: Any
    summary: dict[str, Any] = field(default_factory=dict)
    run_toml: str = ""

    @property
    def backbone_id(self) -> str:
        return str(self.meta.get("backbone", "?"))


@dataclass
class Samples:
    inputs: torch.Tensor  # (N, 3, crop, crop), the engine's own preprocessing
    labels: np.ndarray | None
    paths: list[str]
    source: str


def load_run_model(run_dir: Path, which: str = "best", host: Any = None) -> LoadedRun:
    """The plain eval-mode float32 classifier of ``checkpoints/<which>``."""
    from ...plugin.manager import get_host

    run_dir = Path(run_dir)
    checkpoint = load_checkpoint(checkpoint_folder(run_dir, which))
    meta = checkpoint.meta
    try:
        classes = [str(c) for c in meta["classes"]]
        preprocessing = Preprocessing.from_dict(meta["preprocessing"])
        meta["backbone"], meta["head"]["id"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint metadata {checkpoint.path / META_FILE} is damaged (missing or bad {exc})"
        ) from None
    host = host or get_host()
    model = rebuild_model(host, meta, checkpoint.model_state(), str(checkpoint.path))
    summary = _read_json(run_dir / SUMMARY_FILE)
    try:
        run_toml = (run_dir / RUN_FILE).read_text(encoding="utf-8")
    except OSError:
        run_toml = ""
    return LoadedRun(
        run_dir, which, checkpoint.path, meta, model, classes, preprocessing, host, summary, run_toml
    )


def checkpoint_folder(run_dir: Path, which: str) -> Path:
    """``run_dir/checkpoints/<which>``, or a clear refusal of what is not a usable run."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"run folder {run_dir} does not exist")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is a file, not a run folder")
    folder = run_dir / CHECKPOINTS / which
    if not (run_dir / RUN_FILE).exists() and not (run_dir / CHECKPOINTS).is_dir():
        raise CheckpointError(f"{run_dir} is not a desktop-tl run folder (no {RUN_FILE}, no {CHECKPOINTS}/)")
    if not (folder / META_FILE).exists() and not (folder.with_name(which + ".old") / META_FILE).exists():
        others = [
            name
            for name in ("best", "last")
            if name != which and (run_dir / CHECKPOINTS / name / MODEL_FILE).exists()
        ]
        hint = (
            f"; it has checkpoint {others[0]} (use --checkpoint {others[0]})"
            if others
            else "; the run stopped before its first epoch ended, so there is nothing to export"
        )
        raise CheckpointError(f"{run_dir} has no {which} checkpoint{hint}")
    return folder


def rebuild_model(host: Any, meta: dict[str, Any], state: dict[str, torch.Tensor], source: str):
    """Backbone (without its initial weights: the checkpoint holds every weight) + head."""
    from ..model import TransferModel, build_head

    provider, model_name = host.resolve_backbone(meta["backbone"])
    backbone = provider.create(model_name, "none")
    _, _, head = build_head(
        host, meta["head"]["id"], meta["head"].get("options", {}), backbone.feature_dim, len(meta["classes"])
    )
    model = TransferModel(backbone.module, head)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {source} does not fit {meta['backbone']}: {first}") from None
    return model.float().eval()


def validation_samples(run_dir: Path, loaded: LoadedRun, limit: int) -> Samples:
    """Up to ``limit`` validation images of the run, preprocessed as the engine does.

    When the dataset is no longer where the run found it, parity is still checked, on a
    fixed batch of random inputs, and the report says so.
    """
    paths, labels, tensors, source = _subset_images(run_dir, loaded, ("val", "test", "train"), limit)
    if tensors:
        return Samples(torch.stack(tensors), np.asarray(labels), paths, source)
    crop = loaded.preprocessing.crop
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(8, 3, crop, crop, generator=generator)
    return Samples(inputs, None, [], "8 random inputs (the run's images were not found)")


def calibration_samples(run_dir: Path, loaded: LoadedRun, limit: int) -> Samples | None:
    """Up to ``limit`` training images (else validation images) for calibrating static
    int8 quantisation; training images first so that the accuracy change is measured on
    images the calibration did not see. None when the run's images are gone."""
    paths, labels, tensors, source = _subset_images(run_dir, loaded, ("train", "val", "test"), limit)
    if not tensors:
        return None
    return Samples(torch.stack(tensors), np.asarray(labels), paths, source)


def _subset_images(run_dir: Path, loaded: LoadedRun, subsets: tuple[str, ...], limit: int):
    """(paths, labels, tensors, source) from the first of ``subsets`` with readable images."""
    from ..data import PreparedData
    from ..transforms import build_transform, decode_short_side
    from ..images import open_rgb

    paths: list[str] = []
    labels: list[int] = []
    tensors: list[torch.Tensor] = []
    source = ""
    split_path = Path(run_dir) / SPLIT_FILE
    if not split_path.exists():
        return paths, labels, tensors, source
    try:
        prepared = PreparedData.load_manifest(split_path)
    except UserError:
        return paths, labels, tensors, source
    transform = build_transform(loaded.preprocessing, "none", train=False)
    for subset in subsets:
        for path, label in getattr(prepared, subset):
            if len(paths) >= limit:
                break
            try:
                tensors.append(transform(open_rgb(path, decode_short_side(transform))))
            except (UserError, OSError):
                continue
            paths.append(path)
            labels.append(label)
        if paths:  # one subset only
            source = f"{subset} images" if subset != "val" else "validation images"
            break
    return paths, labels, tensors, source


@torch.inference_mode()
def reference_outputs(model: torch.nn.Module, inputs: torch.Tensor) -> np.ndarray:
    return np.concatenate([model(inputs[i : i + 32]).float().numpy() for i in range(0, len(inputs), 32)])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
