#!/usr/bin/env python3
"""Classify image files or folders with the exported model in this folder.

Needs only onnxruntime, numpy and Pillow (no torch, no desktop_tl)::

    python predict.py photo.jpg more_photos/ --top-k 3
    python predict.py photos/ --json > predictions.json

Images are prepared exactly as desktop_tl prepared them for training and validation:
a JPEG larger than needed decoded at the smallest DCT scale that keeps the resize's short
side, EXIF orientation applied, transparency composited on white, 16-bit and float images
scaled to 8 bits, the short side resized (preprocessing.json says to what and how), a
centre crop, scaling to [0, 1] and normalisation by the weights' mean and std.

This file is copied into every ONNX export bundle by desktop_tl; it imports nothing
from desktop_tl on purpose.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WIDE_INT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


# ----------------------------------------------------------------- reading images


def open_rgb(path, min_short_side=None):
    """Decode ``path`` as upright 8-bit RGB, the way desktop_tl reads training images.

    With ``min_short_side``, a JPEG whose short side is larger is decoded at the smallest
    DCT scale (1/2, 1/4, 1/8) keeping its short side at least that, as desktop_tl does.
    """
    with Image.open(path) as image:
        if min_short_side is not None and image.format == "JPEG" and min(image.size) > min_short_side:
            # the file's own mode: colour conversion stays that of a full decode
            image.draft(image.mode, (int(min_short_side), int(min_short_side)))
        image.load()
        try:
            image = ImageOps.exif_transpose(image)
        except Exception:  # a damaged EXIF block must not make the pixels unusable
            pass
        return _to_rgb(image)


def _to_rgb(image):
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in _WIDE_INT_MODES or mode == "F":
        return _wide_to_rgb(image)
    return image.convert("RGB")


def _wide_to_rgb(image):
    """16/32-bit integer or float single-channel image to 8 bits over its full range
    (values never above 4095 are 12-bit camera data, scaled by 4095)."""
    values = np.nan_to_num(np.asarray(image).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
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
    return Image.fromarray(gray).convert("RGB")


# ----------------------------------------------------------------- preprocessing


def resized_size(width, height, short_side):
    """torchvision's Resize(int): the short side becomes ``short_side``, the long side
    is scaled and truncated."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(short_side * long / short)
    return (short_side, new_long) if width <= height else (new_long, short_side)


def resize(image, size, interpolation):
    if size == image.size:
        return np.asarray(image)
    if interpolation == "nearest":
        # torch's "nearest" takes floor(dst * in / out), not the pixel centre as PIL does.
        pixels = np.asarray(image)
        width, height = image.size
        rows = np.minimum(np.floor(np.arange(size[1]) * (height / size[1])).astype(np.int64), height - 1)
        cols = np.minimum(np.floor(np.arange(size[0]) * (width / size[0])).astype(np.int64), width - 1)
        return pixels[rows][:, cols]
    # Pillow's antialiased filters are the ones torchvision's antialias=True reproduces.
    return np.asarray(image.resize(size, _RESAMPLE[interpolation]))


def center_crop(pixels, crop):
    """torchvision's CenterCrop: zero padding when the image is smaller, then the crop."""
    height, width = pixels.shape[:2]
    if crop > height or crop > width:
        pad_top = (crop - height) // 2 if crop > height else 0
        pad_bottom = (crop - height + 1) // 2 if crop > height else 0
        pad_left = (crop - width) // 2 if crop > width else 0
        pad_right = (crop - width + 1) // 2 if crop > width else 0
        pixels = np.pad(pixels, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)))
        height, width = pixels.shape[:2]
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    return pixels[top : top + crop, left : left + crop]


def load(path, preprocessing):
    """An image file to the float32 (3, crop, crop) array the model takes."""
    return preprocess(open_rgb(path, int(preprocessing["resize"])), preprocessing)


def preprocess(image, preprocessing):
    """An RGB PIL image to the float32 (3, crop, crop) array the model takes."""
    interpolation = preprocessing.get("interpolation", "bilinear")
    if interpolation not in ("bilinear", "bicubic", "nearest"):
        raise ValueError(f"interpolation {interpolation!r} is not one of bilinear, bicubic, nearest")
    size = resized_size(image.size[0], image.size[1], int(preprocessing["resize"]))
    pixels = center_crop(resize(image, size, interpolation), int(preprocessing["crop"]))
    scaled = pixels.astype(np.float32) / np.float32(255.0)
    mean = np.asarray(preprocessing["mean"], dtype=np.float32)
    std = np.asarray(preprocessing["std"], dtype=np.float32)
    return np.ascontiguousarray(((scaled - mean) / std).transpose(2, 0, 1))


def softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------- the classifier


class Classifier:
    """The exported model with its labels and preprocessing, read from a bundle folder."""

    def __init__(self, bundle_dir=HERE, model_file=None):
        import onnxruntime

        bundle_dir = Path(bundle_dir)
        self.class_names = json.loads((bundle_dir / "labels.json").read_text(encoding="utf-8"))
        self.preprocessing = json.loads((bundle_dir / "preprocessing.json").read_text(encoding="utf-8"))
        model_path = Path(model_file) if model_file else bundle_dir / "model.onnx"
        self.session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def probabilities(self, batch):
        logits = self.session.run(None, {self.input_name: batch})[0]
        return softmax(logits.astype(np.float32))

    def predict(self, paths, top_k=3, batch_size=16):
        """One dict per path: ``{"path", "top": [{"class", "probability"}], "error"}``."""
        top_k = max(1, min(int(top_k), len(self.class_names)))
        results = [{"path": str(p), "top": [], "error": None} for p in paths]
        for start in range(0, len(paths), batch_size):
            ready, arrays = [], []
            for i in range(start, min(start + batch_size, len(paths))):
                try:
                    arrays.append(load(paths[i], self.preprocessing))
                    ready.append(i)
                except Exception as exc:  # one unreadable file must not stop the others
                    results[i]["error"] = f"cannot read image {paths[i]}: {exc}"
            if not ready:
                continue
            probs = self.probabilities(np.stack(arrays))
            for i, row in zip(ready, probs):
                order = np.argsort(-row, kind="stable")[:top_k]
                results[i]["top"] = [
                    {"class": self.class_names[int(j)], "probability": round(float(row[j]), 6)} for j in order
                ]
        return results


def expand(paths):
    """Image files as given, and every image file under the folders given (sorted)."""
    result = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            result.extend(str(p) for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            result.append(raw)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description="Classify images with the exported model.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    parser.add_argument("--top-k", type=int, default=3, metavar="K")
    parser.add_argument("--model", default=None, help="model file (default: model.onnx beside this script)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")
    images = expand(args.images)
    if not images:
        parser.error("no images: the folders given hold no image files")
    results = Classifier(HERE, args.model).predict(images, top_k=args.top_k)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if r["error"]:
                print(f"{r['path']}: error: {r['error']}")
            else:
                print(f"{r['path']}: " + ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"]))
    return 1 if all(r["error"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
