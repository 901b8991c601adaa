"""Reading any image a person may drop into a dataset as correct 8-bit RGB.

Cameras, scanners and microscopes write many pixel formats. A network trained on RGB
photos must see them the way a person does: rotated as the EXIF tag says, transparent
areas on white, 16-bit and float images scaled down to 8 bits over their full range
rather than clipped to white. Every failure becomes an :class:`ImageReadError` whose
reason a person can act on.

A JPEG larger than the network needs is decoded at the size it needs: Pillow's draft
mode lets libjpeg scale by 1/2, 1/4 or 1/8 inside the inverse DCT, to the smallest scale
whose short side is still at least the caller's ``min_short_side``; the caller's own
resize then runs on that image. A 12-megapixel photo decodes about seven times faster
this way. Very large images of other formats (scanned plates, stitched panoramas) are
decoded reduced above :data:`REDUCE_ABOVE_PIXELS`, and those above a pixel limit
(:data:`PIXEL_LIMIT_VARIABLE`) are refused with a message, in place of Pillow's
decompression-bomb warning.

:func:`probe_image` (the data check) reads the header and checks the compressed data
without a full decode, so checking 10,000 camera photos costs seconds, not minutes.
"""

from __future__ import annotations

import math
import os
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from PIL import Image as PILImage

from ..plugin.images import IMAGE_EXTENSIONS  # the SDK owns the list plugins share

#: Modes PIL decodes to that carry an alpha channel; they are composited on white.
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")

#: Integer modes wider than 8 bits per sample.
_WIDE_INT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

#: Environment variable that sets the largest image accepted, in megapixels.
PIXEL_LIMIT_VARIABLE = "DTL_MAX_IMAGE_MEGAPIXELS"

#: Default for :data:`PIXEL_LIMIT_VARIABLE`: above the largest camera photos (150 MP),
#: below what an image can claim in its header to exhaust memory.
DEFAULT_MAX_MEGAPIXELS = 200

#: Images with more pixels than this are decoded reduced. Above every full-frame camera
#: photo (61 MP), so those decode exactly as before.
REDUCE_ABOVE_PIXELS = 70_000_000

#: A reduced image keeps at least this many pixels on its short side: more than any
#: backbone resizes to (600 at most) even after a random crop of 60 % of the area.
DECODE_SHORT_SIDE = 1024

#: Pillow's own default pixel limit; replaced by ours unless someone changed it.
_PILLOW_DEFAULT_LIMIT = int(1024 * 1024 * 1024 // 4 // 3)

#: Large images that cannot be decoded reduced (PNG, TIFF) briefly need their full size;
#: the image check decodes on many threads, so only two of those at a time.
_LARGE_DECODES = threading.BoundedSemaphore(2)

#: EXIF orientation -> the transpose that makes the image upright (as ImageOps does).
_ORIENTATION_TRANSPOSE = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}


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


def open_rgb(path: str | Path, min_short_side: int | None = None) -> "PILImage.Image":
    """Decode ``path`` and return it as an RGB image, upright.

    With ``min_short_side``, a JPEG whose short side is larger is decoded at the smallest
    DCT scale (1/2, 1/4, 1/8) that keeps its short side at least that (see
    :func:`desktop_tl.core.transforms.decode_short_side` for the size a transform needs);
    otherwise, and for other formats, the image is decoded in full. An image above :data:`REDUCE_ABOVE_PIXELS` comes back reduced so that its short side
    stays at least :data:`DECODE_SHORT_SIDE` (JPEGs are decoded at that scale directly).
    Raises :class:`ImageReadError` for a missing, truncated, corrupt or oversized file, or
    one that is not a regular file (reading a named pipe would wait forever).
    """
    from PIL import Image, ImageOps

    try:
        limit = max_image_pixels()
    except ValueError as exc:
        raise ImageReadError(path, str(exc)) from None
    if Image.MAX_IMAGE_PIXELS == _PILLOW_DEFAULT_LIMIT:
        # Our limit, checked on the header below, replaces Pillow's; its bare warning
        # would reach stderr for images we accept.
        Image.MAX_IMAGE_PIXELS = None
    try:
        _refuse_special_file(path)
        with Image.open(path) as image:
            pixels = image.width * image.height
            if pixels > limit:
                raise ImageReadError(path, _too_many_pixels_reason(image.size, limit))
            if min_short_side is not None and _draft(image, min_short_side):
                pixels = image.width * image.height
            if pixels > REDUCE_ABOVE_PIXELS:
                with _LARGE_DECODES:
                    return _open_reduced(image, Image)
            image.load()  # decode everything now: truncation shows up here, not later
            image = _exif_upright(image, ImageOps)
            return _to_rgb(image, Image)
    except ImageReadError:
        raise
    except Exception as exc:  # decoders raise many types for broken files
        raise ImageReadError(path, _reason(exc, Image)) from None


def max_image_pixels() -> int:
    """The largest image accepted, in pixels, from :data:`PIXEL_LIMIT_VARIABLE`.

    Raises ``ValueError`` with a message to show when the setting is not a number above 0.
    """
    raw = os.environ.get(PIXEL_LIMIT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_MAX_MEGAPIXELS * 1_000_000
    try:
        megapixels = float(raw)
    except ValueError:
        megapixels = math.nan
    if not (0 < megapixels < math.inf):
        raise ValueError(
            f"{PIXEL_LIMIT_VARIABLE}={raw!r} is not a number of megapixels above 0; set it "
            f"to e.g. 300, or unset it for the default limit of {DEFAULT_MAX_MEGAPIXELS} "
            "megapixels"
        )
    return int(megapixels * 1_000_000)


def probe_image(path: str | Path) -> str | None:
    """Return why ``path`` cannot be used as an image, or ``None`` when it looks usable.

    Reads the header (format, size, mode) and checks the compressed data cheaply: a JPEG
    is decoded at 1/8 scale (every coefficient is still read, so truncated or corrupt
    data shows up, at a fraction of the cost), a PNG's chunks and checksums are verified
    without inflating them; other formats are decoded in full as training will. A file
    damaged in a way only the full decode notices (a PNG whose compressed stream is wrong
    under valid checksums) passes here; training then skips it and reports it with its
    reason, as for a file that changes on disk after the check.
    """
    from PIL import Image

    try:
        limit = max_image_pixels()
    except ValueError as exc:
        return str(exc)
    if Image.MAX_IMAGE_PIXELS == _PILLOW_DEFAULT_LIMIT:
        Image.MAX_IMAGE_PIXELS = None
    try:
        _refuse_special_file(path)
        with Image.open(path) as image:
            if image.width * image.height > limit:
                return _too_many_pixels_reason(image.size, limit)
            if image.format == "JPEG":
                image.draft(image.mode, (1, 1))  # the smallest scale libjpeg offers
                image.load()
                _to_rgb(image, Image)  # modes a conversion refuses show up here
                return None
            if image.format == "PNG":
                image.verify()
                return None
    except ImageReadError as exc:
        return exc.reason
    except Exception as exc:  # decoders raise many types for broken files
        return _reason(exc, Image)
    try:
        open_rgb(path)
    except ImageReadError as exc:
        return exc.reason
    return None


# --------------------------------------------------------------------------- helpers


def _refuse_special_file(path: str | Path) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # Image.open reports it (not found, permission denied)
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise ImageReadError(path, "is a folder, not an image file")
    kind = (
        "a named pipe (FIFO)"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a special file"
    )
    raise ImageReadError(
        path, f"not a regular file ({kind}); reading it could wait forever, so it is skipped"
    )


def _draft(image: "PILImage.Image", min_short_side: int) -> bool:
    """Ask libjpeg to decode ``image`` at the smallest DCT scale whose short side stays at
    least ``min_short_side``; True when that changed its size. Keeps the file's own mode,
    so colour conversion (CMYK, grayscale, YCbCr) stays what a full decode does."""
    if image.format != "JPEG" or min(image.size) <= min_short_side:
        return False
    before = image.size
    # Pillow takes the largest scale s in (1, 2, 4, 8) with size // s >= the request on
    # both sides, so the short side alone decides it.
    image.draft(image.mode, (int(min_short_side), int(min_short_side)))
    return image.size != before


def _too_many_pixels_reason(size: tuple[int, int], limit: int) -> str:
    megapixels = size[0] * size[1] / 1_000_000
    return (
        f"image has {megapixels:.1f} megapixels ({size[0]} x {size[1]}), more than the "
        f"limit of {limit / 1_000_000:g} megapixels; shrink it or remove it from the "
        f"dataset, or raise the limit with the environment variable "
        f"{PIXEL_LIMIT_VARIABLE} (e.g. {PIXEL_LIMIT_VARIABLE}={math.ceil(megapixels)})"
    )


def _open_reduced(image: "PILImage.Image", image_module) -> "PILImage.Image":
    """Decode a very large image no bigger than training needs, upright, as RGB."""
    if image.format == "JPEG":  # decodes at 1/2, 1/4 or 1/8 scale: never the full size
        image.draft(image.mode, (DECODE_SHORT_SIDE, DECODE_SHORT_SIDE))
    image.load()
    try:
        orientation = image.getexif().get(0x0112)
    except Exception:  # a damaged EXIF block must not make the pixels unusable
        orientation = None
    rgb = _to_rgb(image, image_module)
    factor = min(rgb.size) // DECODE_SHORT_SIDE
    if factor >= 2:
        rgb = rgb.reduce(factor)
    method = _ORIENTATION_TRANSPOSE.get(orientation)
    if method is not None:
        rgb = rgb.transpose(getattr(image_module.Transpose, method))
    return rgb


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
    dark 16-bit exposure stays dark; those whose values never exceed 4095 hold 12-bit data
    (many scientific and medical cameras) and are scaled by 4095, or they would come out
    nearly black. Float images in 0..1 are scaled by 255, those in
    0..255 kept; anything else (signed or unbounded values) is stretched from its minimum
    to its maximum, the only mapping that keeps every detail visible.
    """
    import numpy as np

    values = np.asarray(image).astype(np.float64)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low = float(values.min()) if values.size else 0.0
    high = float(values.max()) if values.size else 0.0
    if image.mode != "F" and low >= 0 and high <= 65535:
        full_scale = 4095.0 if high <= 4095 else 65535.0
        scaled = values * (255.0 / full_scale)
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
