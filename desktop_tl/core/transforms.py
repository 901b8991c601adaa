"""The transforms from an RGB image to a network's input: evaluation (resize, centre crop,
normalise) and the augmentation presets, the size a transform needs an image decoded at
(:func:`decode_short_side`), and whether its steps may run on any thread.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..plugin.descriptors import DatasetError, Preprocessing

#: Interpolation names a backbone's preprocessing may ask for.
INTERPOLATIONS = ("nearest", "nearest-exact", "bilinear", "bicubic")


def build_transform(preprocessing: Preprocessing, augment: str, train: bool):
    """The transform from an RGB PIL image to a normalised float tensor.

    Evaluation (and training with ``augment="none"``): resize the short side to
    ``preprocessing.resize``, centre-crop ``preprocessing.crop``, scale to [0, 1],
    normalise. ``"light"`` trains on random resized crops (60-100 % of the area) with
    horizontal flips; ``"strong"`` adds colour jitter and TrivialAugmentWide. The result is
    a picklable ``torchvision.transforms.v2.Compose``.
    """
    from torchvision.transforms import v2

    _check_augment(augment)
    if not train or augment == "none":
        return v2.Compose(
            [
                v2.ToImage(),
                v2.Resize(
                    preprocessing.resize, interpolation=interpolation_mode(preprocessing), antialias=True
                ),
                v2.CenterCrop(preprocessing.crop),
                *normalization_steps(preprocessing),
            ]
        )
    return v2.Compose(
        [v2.ToImage(), *augmentation_steps(preprocessing, augment), *normalization_steps(preprocessing)]
    )


def augmentation_steps(preprocessing: Preprocessing, augment: str) -> list:
    """The random steps of ``augment`` (``"light"`` or ``"strong"``), from an image
    tensor to a ``preprocessing.crop`` square; shared by :func:`build_transform` and the
    decoded-image cache."""
    from torchvision.transforms import v2

    _check_augment(augment)
    interpolation = interpolation_mode(preprocessing)
    steps = [
        v2.RandomResizedCrop(
            preprocessing.crop, scale=(0.6, 1.0), interpolation=interpolation, antialias=True
        ),
        v2.RandomHorizontalFlip(),
    ]
    if augment == "strong":
        steps += [
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05),
            v2.TrivialAugmentWide(interpolation=interpolation),
        ]
    return steps


def normalization_steps(preprocessing: Preprocessing) -> list:
    """From a uint8 image tensor to the normalised float tensor a backbone takes."""
    from torchvision.transforms import v2

    return [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(preprocessing.mean), std=list(preprocessing.std)),
        v2.ToPureTensor(),  # a plain Tensor, not a tv_tensors.Image
    ]


def _check_augment(augment: str) -> None:
    if augment not in ("none", "light", "strong"):
        raise DatasetError(f"augmentation {augment!r} is not one of none, light, strong")


def interpolation_mode(preprocessing: Preprocessing):
    """The torchvision interpolation mode the preprocessing names."""
    from torchvision.transforms import InterpolationMode

    if preprocessing.interpolation not in INTERPOLATIONS:
        raise DatasetError(
            f"interpolation {preprocessing.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}"
        )
    return InterpolationMode(preprocessing.interpolation)


#: Transform steps that draw nothing at random: they may run on any thread, in any order.
_DETERMINISTIC_STEPS = (
    "ToImage",
    "PILToTensor",
    "ToTensor",
    "Resize",
    "CenterCrop",
    "ToDtype",
    "ConvertImageDtype",
    "Normalize",
    "ToPureTensor",
    "Identity",
)


def decode_short_side(transform: Callable | None) -> int | None:
    """The short side an image must keep for ``transform``, or ``None`` for full size.

    A transform that starts (after type conversions) with a resize of the short side to
    N needs N; one that starts with a random resized crop needs enough for its smallest
    crop to still cover the output. :func:`~desktop_tl.core.images.open_rgb` decodes a
    larger JPEG at the smallest DCT scale that keeps this, the transform then resizes as
    on the full-size image. Any other transform gets the full image.
    """
    for step in _steps(transform):
        name = type(step).__name__
        if name in ("ToImage", "PILToTensor", "ToPureTensor"):
            continue
        if name == "Resize":
            size = step.size
            if isinstance(size, int):
                return size
            if isinstance(size, (list, tuple)) and len(size) == 1:
                return int(size[0])
            return None
        if name == "RandomResizedCrop":
            scale, ratio = step.scale, step.ratio
            narrowest = min(float(ratio[0]), 1.0 / float(ratio[1]), 1.0)
            smallest = math.sqrt(float(scale[0]) * narrowest)
            if smallest <= 0:
                return None
            return math.ceil(max(step.size) / smallest)
        return None
    return None


def is_deterministic(transform: Callable | None) -> bool:
    """True when ``transform`` is made only of steps that draw no random numbers."""
    return all(
        type(step).__module__.startswith("torchvision.transforms")
        and type(step).__name__ in _DETERMINISTIC_STEPS
        for step in _steps(transform)
    )


def apply_on_any_thread(transform: Callable, image: Any) -> Any:
    """``transform(image)`` for a deterministic torchvision ``Compose``, safe on a
    decoding thread: each step's ``forward`` is called directly, because torch.fx tracing
    on another thread (the frozen prefix's batch-norm folding) replaces
    ``nn.Module.__call__`` for every thread while it runs."""
    for step in _steps(transform):
        forward = getattr(step, "forward", None)
        image = forward(image) if forward is not None else step(image)
    return image


def _steps(transform) -> list:
    """The flat list of steps of a (nested) torchvision ``Compose``; ``[transform]``
    for anything else."""
    if transform is None:
        return []
    inner = getattr(transform, "transforms", None)
    if type(transform).__name__ == "Compose" and isinstance(inner, (list, tuple)):
        return [step for part in inner for step in _steps(part)]
    return [transform]
