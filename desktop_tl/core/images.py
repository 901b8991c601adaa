"""Reading any image a person may drop into a dataset as correct 8-bit RGB.

Cameras, scanners and microscopes write many pixel formats. A network trained on RGB
photos must see them the way a person does: rotated as the EXIF tag says, transparent
areas on white, 16-bit and float images scaled down to 8 bits over their full range
rather than clipped to white. Every failure becomes an :class:`ImageReadError` whose
reason a person can act on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from PIL import Image as PILImage

#: File name extensions (lower case) treated as images when listing a dataset folder.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".bmp",
    ".gif",
    ".jpeg",
    ".jpg",
    ".png",
    ".tif",
    ".tiff",
    ".webp",
)

#: Modes PIL decodes to that carry an alpha channel; they are composited on white.
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")

#: Integer modes wider than 8 bits per sample.
_WIDE_INT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageReadError(UserError):
    """An image file cannot be decoded; ``reason`` says why in plain words."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # keep (path, reason) when sent between processes
        return (type(self), (self.path, self.reason))


def is_image_file_name(name: str) -> bool:
    """True when ``name`` ends with one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def open_rgb(path: str | Path) -> "PILImage.Image":
    """Decode ``path`` fully and return it as an RGB image, upright.

    Raises :class:`ImageReadError` for a missing, truncated, corrupt or oversized file.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            image.load()  # decode everything now: truncation shows up here, not later
            image = _exif_upright(image, ImageOps)
            return _to_rgb(image, Image)
    except ImageReadError:
        raise
    except Exception as exc:  # decoders raise many types for broken files
        raise ImageReadError(path, _reason(exc, Image)) from None


def probe_image(path: str | Path) -> str | None:
    """Return why ``path`` cannot be used as an image, or ``None`` when it decodes.

    Decodes the whole file exactly as training will (:func:`open_rgb`), so a file that
    passes here is not rejected later unless it changes on disk.
    """
    try:
        open_rgb(path)
    except ImageReadError as exc:
        return exc.reason
    return None


# --------------------------------------------------------------------------- helpers


def _exif_upright(image: "PILImage.Image", image_ops) -> "PILImage.Image":
    try:
        return image_ops.exif_transpose(image)
    except Exception:  # a damaged EXIF block must not make the pixels unusable
        return image


def _to_rgb(image: "PILImage.Image", image_module) -> "PILImage.Image":
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = image_module.new("RGBA", rgba.size, (255, 255, 255, 255))
        return image_module.alpha_composite(background, rgba).convert("RGB")
    if mode in _WIDE_INT_MODES or mode == "F":
        return _wide_to_rgb(image, image_module)
    # L, 1, P, CMYK, YCbCr, LAB, HSV: PIL converts these correctly.
    return image.convert("RGB")


def _wide_to_rgb(image: "PILImage.Image", image_module) -> "PILImage.Image":
    """Scale a 16/32-bit integer or float single-channel image to 8 bits.

    Integer images holding 0..65535 are scaled by their type's range (65535 -> 255), so a
    dark 16-bit exposure stays dark. Float images in 0..1 are scaled by 255, those in
    0..255 kept; anything else (signed or unbounded values) is stretched from its minimum
    to its maximum, the only mapping that keeps every detail visible.
    """
    import numpy as np

    values = np.asarray(image).astype(np.float64)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low = float(values.min()) if values.size else 0.0
    high = float(values.max()) if values.size else 0.0
    if image.mode != "F" and low >= 0 and high <= 65535:
        scaled = values * (255.0 / 65535.0)
    elif image.mode == "F" and low >= 0 and high <= 1.0:
        scaled = values * 255.0
    elif image.mode == "F" and low >= 0 and high <= 255.0:
        scaled = values
    elif high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(values)
    gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return image_module.fromarray(gray).convert("RGB")


def _reason(exc: BaseException, image_module) -> str:
    """A short, actionable description of why decoding failed."""
    if isinstance(exc, image_module.DecompressionBombError):
        return (
            "image has too many pixels to open safely (decompression-bomb guard); "
            f"shrink it or remove it from the dataset ({exc})"
        )
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not an image file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, image_module.UnidentifiedImageError):
        return "not a recognised image format (corrupt, empty or not an image)"
    text = str(exc) or type(exc).__name__
    if "truncated" in text.lower():
        return f"file is truncated, probably an incomplete copy or download ({text})"
    return f"corrupt image data ({type(exc).__name__}: {text})"
