"""Heat maps ready to show: Grad-CAM maps of an image, blended and sized for the screen.

Runs on a worker thread. :class:`ExplainerCache` keeps one
:class:`~desktop_tl.core.explain.Explainer` per predictor, over a private copy of its
model, so the predictor's own model goes on serving predictions meanwhile;
:func:`compute_explanations` turns its maps into overlays at display size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PySide6.QtGui import QImage

from ..errors import UserError

#: Longest side of the image and of the overlay as shown (a 12-megapixel photo is not
#: blended at full size only to be scaled down on screen).
SHOWN_SIDE = 1024


@dataclass
class ShownExplanation:
    """One class's map, ready to show: the overlay at display size and its heat map."""

    path: str
    class_name: str
    probability: float
    layer: str
    overlay: QImage
    #: (height, width) of ``overlay``, float32 in [0, 1].
    heatmap: np.ndarray


class ExplainerCache:
    """One :class:`Explainer` per predictor, over a deep copy of its model.

    Used by the jobs of one queue only (they run one at a time), so it needs no lock. A
    backbone that cannot be explained is remembered, not probed again for every image.
    """

    def __init__(self) -> None:
        self._predictor: Any = None  # held, so that its id is never reused for another
        self._explainer: Any = None
        self._refusal: str | None = None

    def explainer(self, predictor: Any) -> Any:
        import copy

        from ..core.explain import Explainer, ExplanationUnsupported

        if predictor is not self._predictor:
            self._predictor, self._explainer, self._refusal = predictor, None, None
            try:
                # A copy: captum hooks the target layer while it works, and the predictor's
                # model may be running a prediction on another worker at that moment.
                self._explainer = Explainer(
                    copy.deepcopy(predictor.model),
                    predictor.class_names,
                    predictor.preprocessing,
                    backbone_name="this model's backbone",
                )
            except ExplanationUnsupported as exc:
                self._refusal = str(exc)
        if self._refusal is not None:
            raise ExplanationUnsupported(self._refusal)
        return self._explainer


def _to_qimage(image: Any) -> QImage:
    width, height = image.size
    data = image.convert("RGB").tobytes("raw", "RGB")
    return QImage(data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def compute_explanations(
    cache: ExplainerCache, predictor: Any, path: str, classes: Sequence[str]
) -> list[ShownExplanation]:
    """Worker thread: the maps of ``classes`` for the image at ``path``, at display size.
    Raises :class:`UserError` with the reason when there is nothing to show."""
    from PIL import Image

    from ..core.images import open_rgb

    if not os.path.exists(path):
        raise UserError(
            f"{os.path.basename(path)} is no longer there: it was moved or deleted "
            f"after it was listed ({path}), so there is nothing to explain; "
            "put it back to see where the model looked."
        )
    explanations = cache.explainer(predictor).explain(path, list(classes))
    image = open_rgb(path)
    image.thumbnail((SHOWN_SIDE, SHOWN_SIDE), Image.Resampling.LANCZOS)
    shown = []
    for explanation in explanations:
        heatmap = explanation.heatmap
        if heatmap.shape != (image.height, image.width):
            heatmap = np.asarray(
                Image.fromarray(heatmap.astype(np.float32), mode="F").resize(
                    image.size, Image.Resampling.BILINEAR
                ),
                dtype=np.float32,
            ).clip(0, 1)
        overlay = replace(explanation, heatmap=heatmap).overlay(image)
        shown.append(
            ShownExplanation(
                path,
                explanation.class_name,
                explanation.probability,
                explanation.layer,
                _to_qimage(overlay),
                heatmap,
            )
        )
    return shown
