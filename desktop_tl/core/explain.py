"""Where the model looked: Grad-CAM heat maps over an image, through captum.

The target layer is the backbone's last staged block that still has a spatial feature
map (height and width at least 2); a backbone without one (a vision transformer's
tokens) is refused with the reason rather than shown a map that means nothing. Maps are
computed on the centre crop the model sees and laid back over the whole upright image
(zero where the crop did not reach), so they have the original image's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..plugin.descriptors import Preprocessing


class ExplanationUnsupported(UserError):
    """The backbone has no spatial feature map for a class-activation map."""


@dataclass
class Explanation:
    path: str
    class_name: str
    class_index: int
    probability: float
    layer: str
    #: (height, width) of the original upright image, float32 in [0, 1].
    heatmap: np.ndarray

    def overlay(self, image, alpha: float = 0.45):
        """``image`` (the upright RGB PIL image) with the map blended over it."""
        from matplotlib import colormaps
        from PIL import Image

        colours = colormaps["inferno"](self.heatmap)[..., :3]
        base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        blended = (1 - alpha) * base + alpha * colours
        return Image.fromarray(np.clip(blended * 255.0 + 0.5, 0, 255).astype(np.uint8))


class Explainer:
    """Grad-CAM for a trained classifier (``TransferModel``: a backbone of named stages
    plus a head)."""

    def __init__(
        self,
        model: nn.Module,
        class_names: Sequence[str],
        preprocessing: Preprocessing,
        backbone_name: str = "this backbone",
    ) -> None:
        from .transforms import build_transform

        self.model = model.eval()
        self.class_names = list(class_names)
        self.preprocessing = preprocessing
        self.transform = build_transform(preprocessing, "none", train=False)
        self.layer_name, self.layer = target_layer(model, preprocessing, backbone_name)

    def explain(self, path: str | Path, classes: Sequence[int | str] | None = None) -> list[Explanation]:
        """One map per class in ``classes`` (indices or names; default: the predicted
        class). Raises :class:`UserError` for an image that cannot be read."""
        from captum.attr import LayerAttribution, LayerGradCam

        from .images import open_rgb

        try:
            image = open_rgb(path)
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
        device = next(self.model.parameters()).device
        inputs = self.transform(image).unsqueeze(0).to(device)
        with torch.no_grad():
            probabilities = self.model(inputs).float().softmax(dim=1)[0].cpu()
        targets = [int(probabilities.argmax())] if not classes else [self._index(c) for c in classes]
        grad_cam = LayerGradCam(self.model, self.layer)
        explanations = []
        for target in targets:
            with torch.enable_grad():
                attribution = grad_cam.attribute(inputs, target=target, relu_attributions=True)
            crop = self.preprocessing.crop
            upsampled = LayerAttribution.interpolate(
                attribution.detach().float(), (crop, crop), interpolate_mode="bilinear"
            )[0, 0].cpu()
            peak = float(upsampled.max())
            on_crop = (upsampled / peak).numpy() if peak > 0 else np.zeros((crop, crop), np.float32)
            explanations.append(
                Explanation(
                    str(path),
                    self.class_names[target],
                    target,
                    float(probabilities[target]),
                    self.layer_name,
                    _onto_image(on_crop, image.size, self.preprocessing),
                )
            )
        return explanations

    def _index(self, wanted: int | str) -> int:
        if isinstance(wanted, str):
            if wanted not in self.class_names:
                raise UserError(
                    f"class {wanted!r} is not one of this model's classes ({', '.join(self.class_names)})"
                )
            return self.class_names.index(wanted)
        if not 0 <= int(wanted) < len(self.class_names):
            raise UserError(f"class index {wanted} is outside 0..{len(self.class_names) - 1}")
        return int(wanted)


def target_layer(
    model: nn.Module, preprocessing: Preprocessing, backbone_name: str = "this backbone"
) -> tuple[str, nn.Module]:
    """The backbone's last stage whose output is a feature map of at least 2 x 2."""
    stages = list(model.backbone.named_children())
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        module.register_forward_hook(
            lambda _m, _i, output, name=name: shapes.__setitem__(
                name, tuple(output.shape) if torch.is_tensor(output) else ()
            )
        )
        for name, module in stages
    ]
    try:
        probe = torch.zeros(
            1, 3, preprocessing.crop, preprocessing.crop, device=next(model.parameters()).device
        )
        with torch.no_grad():
            model.backbone(probe)
    finally:
        for hook in hooks:
            hook.remove()
    for name, module in reversed(stages):
        shape = shapes.get(name, ())
        if len(shape) == 4 and shape[2] >= 2 and shape[3] >= 2:
            return f"backbone.{name}", module
    seen = ", ".join(f"{name} {list(shapes.get(name, ()))}" for name, _ in stages[-3:])
    raise ExplanationUnsupported(
        f"Grad-CAM needs a convolutional feature map, and {backbone_name} has none (its last "
        f"stages give {seen}: tokens or vectors, as in a vision transformer); no heat map is "
        "shown rather than one that means nothing"
    )


def _onto_image(on_crop: np.ndarray, size: tuple[int, int], preprocessing: Preprocessing) -> np.ndarray:
    """The crop's map placed where the centre crop sits in the resized image, then scaled
    to the original ``size`` (width, height); exact to about a pixel."""
    width, height = size
    scale = preprocessing.resize / min(width, height)
    resized_w, resized_h = max(1, round(width * scale)), max(1, round(height * scale))
    crop = preprocessing.crop
    canvas = torch.zeros(resized_h, resized_w)
    top, left = round((resized_h - crop) / 2), round((resized_w - crop) / 2)
    src_top, src_left = max(0, -top), max(0, -left)  # a crop larger than the image is padded
    dst_top, dst_left = max(0, top), max(0, left)
    h = min(crop - src_top, resized_h - dst_top)
    w = min(crop - src_left, resized_w - dst_left)
    canvas[dst_top : dst_top + h, dst_left : dst_left + w] = torch.from_numpy(
        on_crop[src_top : src_top + h, src_left : src_left + w]
    )
    full = nn.functional.interpolate(
        canvas[None, None], size=(height, width), mode="bilinear", align_corners=False
    )[0, 0]
    return full.clamp(0, 1).numpy().astype(np.float32)
