"""Features of the frozen part of the model, computed once per image.

With a frozen prefix of the backbone and no random augmentation, the prefix's output for
an image never changes, so running it every epoch (as the plain recipe does) is wasted
work. A :class:`FeatureStore` holds those outputs for one dataset, in fp16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class FeatureStore:
    """Cached outputs of the backbone chain up to (not including) stage ``chain_index``."""

    chain_index: int
    features: torch.Tensor  # (N, ...) fp16, on the CPU
    labels: torch.Tensor  # (N,)
    keep: torch.Tensor  # indices into the dataset items that were readable

    def __len__(self) -> int:
        return self.features.shape[0]

    def take(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[rows], self.labels[rows]

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()


def extract_features(
    run_prefix: Callable[[torch.Tensor], torch.Tensor],
    batches,
    chain_index: int,
    *,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FeatureStore | None:
    """Run ``run_prefix`` once over ``batches`` of (images, labels, indices).

    Returns ``None`` when ``should_stop`` asks to stop part-way.
    """
    feats: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    indices: list[torch.Tensor] = []
    done = 0
    for images, batch_labels, batch_indices in batches:
        if should_stop is not None and should_stop():
            return None
        out = run_prefix(images)
        feats.append(out.detach().to("cpu", torch.float16))
        labels.append(batch_labels.cpu())
        indices.append(batch_indices.cpu())
        done += len(batch_labels)
        if progress is not None:
            progress(done)
    if not feats:
        raise ValueError("no readable images to extract features from")
    return FeatureStore(
        chain_index=chain_index,
        features=torch.cat(feats),
        labels=torch.cat(labels),
        keep=torch.cat(indices),
    )
