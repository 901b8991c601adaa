"""A checkpoint's own validation logits, kept beside its weights.

The epoch a checkpoint is saved after has just scored the validation split with those
weights. Keeping what it computed (the logits, true classes and image indices) lets a
front end show the checkpoint's evaluation, top-k accuracy included, without decoding and
scoring every validation image again: minutes on thousands of camera photos. The file
names the split it scored by a digest of the images' names relative to the dataset
folder and their classes, so scores are only used for the split they were made on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .evaluation import ItemScores
from .exclusions import exclusion_keys

SCORES_FILE = "validation_scores.safetensors"
#: Logits kept up to this many values (images x classes, 32 MB as float32); a larger
#: split is scored again where its evaluation is shown.
MAX_KEPT_LOGITS = 2**23


def split_digest(items: Sequence[tuple[str, int]], root: str) -> str:
    """A digest of the validation split ``items`` ((path, class index), in order)."""
    digest = hashlib.sha256()
    for key, (_path, label) in zip(exclusion_keys([path for path, _ in items], root), items):
        digest.update(f"{key}\t{int(label)}\n".encode())
    return digest.hexdigest()


def write_scores(folder: Path, scores: ItemScores, items: Sequence[tuple[str, int]], root: str) -> None:
    """Write ``scores`` of the split ``items`` into the checkpoint folder ``folder``."""
    save_file(
        {
            "logits": scores.logits.float().contiguous(),
            "targets": scores.targets.to(torch.int64).contiguous(),
            "indices": scores.indices.to(torch.int64).contiguous(),
        },
        str(Path(folder) / SCORES_FILE),
        metadata={"split_sha256": split_digest(items, root), "items": str(len(items))},
    )


def read_scores(folder: Path, items: Sequence[tuple[str, int]], root: str, classes: int) -> ItemScores | None:
    """The scores kept in the checkpoint folder ``folder`` for the split ``items``; None
    when there are none, they are damaged, or they were made on another split."""
    path = Path(folder) / SCORES_FILE
    try:
        with safe_open(str(path), framework="pt") as handle:
            if (handle.metadata() or {}).get("split_sha256") != split_digest(items, root):
                return None
            if not {"logits", "targets", "indices"} <= set(handle.keys()):
                return None
            logits, targets, indices = (handle.get_tensor(name) for name in ("logits", "targets", "indices"))
    except (OSError, SafetensorError, ValueError):
        return None
    rows = len(indices)
    if logits.shape != (rows, classes) or targets.shape != (rows,) or rows == 0:
        return None
    if int(indices.min()) < 0 or int(indices.max()) >= len(items):
        return None
    if not torch.equal(
        targets, torch.tensor([int(items[i][1]) for i in indices.tolist()], dtype=targets.dtype)
    ):
        return None
    return ItemScores(logits, targets, indices)
