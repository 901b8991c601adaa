"""Prediction with a trained model, from a run folder or from a model in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..plugin.descriptors import Preprocessing
from .checkpoints import find_run_checkpoint
from .evaluation import evaluate
from .model import TransferModel, build_head
from .reports import EvaluationReport


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (class, probability)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "top": [{"class": name, "probability": round(prob, 6)} for name, prob in self.top],
            "error": self.error,
        }


class Predictor:
    """A trained classifier with the preprocessing its backbone's weights expect."""

    def __init__(
        self,
        model: TransferModel,
        class_names: Sequence[str],
        preprocessing: Preprocessing,
        device: str | torch.device = "cpu",
        source: str = "",
    ) -> None:
        from .data import build_transform

        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.class_names = list(class_names)
        self.preprocessing = preprocessing
        self.transform = build_transform(preprocessing, "none", train=False)
        self.source = source

    @classmethod
    def from_run_dir(cls, path: str | Path, device: str = "cpu", host: Any = None) -> Predictor:
        """Load the best checkpoint of a run folder (or a checkpoint folder itself)."""
        from ..plugin.manager import get_host

        checkpoint = find_run_checkpoint(Path(path), "best")
        meta = checkpoint.meta
        host = host or get_host()
        provider, model_name = host.resolve_backbone(meta["backbone"])
        # The checkpoint holds every weight; the backbone's own initial weights are not needed.
        backbone = provider.create(model_name, "none")
        _, _, head = build_head(
            host, meta["head"]["id"], meta["head"].get("options", {}), backbone.feature_dim, len(meta["classes"])
        )
        model = TransferModel(backbone.module, head)
        try:
            model.load_state_dict(checkpoint.model_state())
        except RuntimeError as exc:
            raise UserError(f"checkpoint {checkpoint.path} does not fit {meta['backbone']}: {exc}") from None
        return cls(
            model,
            meta["classes"],
            Preprocessing.from_dict(meta["preprocessing"]),
            device=device,
            source=str(checkpoint.path),
        )

    @classmethod
    def from_model(cls, built, class_names: Sequence[str], device: str = "cpu") -> Predictor:
        """A predictor over a copy of an in-memory model (training may go on with the original)."""
        import copy

        model = copy.deepcopy(built.model).to("cpu")
        return cls(model, class_names, built.backbone.preprocessing, device=device, source="current model")

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The model's class scores for a batch of preprocessed images."""
        return self.model(images.to(self.device))

    def evaluate(self, items: Sequence[tuple[str | Path, int]], batch_size: int = 16) -> EvaluationReport | None:
        """Score the model on labelled images ``(path, class index)`` with the loop that
        scores validation and the test split; None when no image could be read."""
        from .data import ImageDataset, make_loader

        items = [(str(path), int(label)) for path, label in items]
        loader = make_loader(ImageDataset(items, self.transform, with_index=True),
                             batch_size=batch_size, shuffle=False, num_workers=0)
        batches = ((b.images, b.labels, b.indices) for b in loader.batches())
        return evaluate(self.logits, batches, self.class_names, [path for path, _ in items])

    @torch.inference_mode()
    def predict(self, paths: Sequence[str | Path], top_k: int = 5, batch_size: int = 16) -> list[Prediction]:
        """Top-k classes per image; an unreadable image gets its reason, not an exception."""
        from .data import decode_short_side
        from .images import open_rgb

        top_k = max(1, min(int(top_k), len(self.class_names)))
        results: list[Prediction] = [Prediction(str(p)) for p in paths]
        # Decode one batch at a time so a folder of thousands of images stays small in memory.
        for start in range(0, len(paths), batch_size):
            ready: list[tuple[int, torch.Tensor]] = []
            for i in range(start, min(start + batch_size, len(paths))):
                try:
                    ready.append((i, self.transform(open_rgb(paths[i], decode_short_side(self.transform)))))
                except UserError as exc:
                    results[i].error = str(exc)
                except OSError as exc:
                    results[i].error = f"cannot read {paths[i]}: {exc.strerror or exc}"
            if not ready:
                continue
            probs = self.logits(torch.stack([tensor for _, tensor in ready])).float().softmax(dim=1).cpu()
            values, indices = probs.topk(top_k, dim=1)
            for (i, _), vals, idxs in zip(ready, values, indices):
                results[i].top = [(self.class_names[int(j)], float(v)) for v, j in zip(vals, idxs)]
        return results
