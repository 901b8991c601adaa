"""Cut the embedded demo dataset from the texture photos bundled with scikit-image.

Each class is one photo (brick wall, grass, gravel; 512x512 grayscale, CC0). Patches are
cut at random positions, sizes and rotations, then resized to a fixed size. Training
patches come only from the left part of each photo and validation patches only from the
right part, with a gap between the two, so no validation pixel was ever seen in training.

Run from the repository root (needs numpy, Pillow and scikit-image)::

    python resources/make_sample_dataset.py            # rewrites resources/sample_dataset
    python resources/make_sample_dataset.py --seed 1 --out /tmp/other

The same seed gives the same patches.
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("brick", "grass", "gravel")  # names of skimage.data functions

#: Columns of the 512-px-wide photos each subset is cut from; the gap keeps them apart
#: even after rotation and interpolation.
REGIONS = {"train": (0, 320), "val": (336, 512)}

#: Side of a patch in source pixels, before rotation and resizing.
MIN_SIDE, MAX_SIDE = 56, 112


def load_photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)())


def cut_patch(
    photo: Image.Image, region: tuple[int, int], size: int, rng: np.random.Generator
) -> Image.Image:
    """A randomly placed, scaled and rotated square patch lying wholly inside ``region``."""
    left, right = region
    height = photo.height
    side = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    # A square rotated by any angle stays inside a circle of this radius around its centre.
    radius = math.ceil(side * math.sqrt(2) / 2) + 1
    if 2 * radius > min(right - left, height):
        raise ValueError(f"region {region} is too narrow for {side}-px patches")
    cx = int(rng.integers(left + radius, right - radius + 1))
    cy = int(rng.integers(radius, height - radius + 1))
    angle = float(rng.uniform(0.0, 360.0))
    window = photo.crop((cx - radius, cy - radius, cx + radius, cy + radius))
    rotated = window.rotate(angle, resample=Image.Resampling.BICUBIC)
    offset = (2 * radius - side) // 2
    patch = rotated.crop((offset, offset, offset + side, offset + side))
    return patch.resize((size, size), Image.Resampling.LANCZOS)


def make_dataset(out: Path, *, seed: int, size: int, counts: dict[str, int], quality: int) -> int:
    written = 0
    for class_index, name in enumerate(CLASSES):
        photo = load_photo(name)
        for subset, count in counts.items():
            folder = out / subset / name
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            # One generator per (class, subset): changing one count leaves the rest alone.
            rng = np.random.default_rng([seed, class_index, list(counts).index(subset)])
            for i in range(count):
                patch = cut_patch(photo, REGIONS[subset], size, rng)
                patch.save(folder / f"{name}_{subset}_{i:03d}.jpg", quality=quality, optimize=True)
                written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "sample_dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128, help="patch side in pixels")
    parser.add_argument("--train", type=int, default=80, help="training images per class")
    parser.add_argument("--val", type=int, default=25, help="validation images per class")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    args = parser.parse_args(argv)
    written = make_dataset(
        args.out,
        seed=args.seed,
        size=args.size,
        counts={"train": args.train, "val": args.val},
        quality=args.quality,
    )
    total = sum(p.stat().st_size for p in args.out.rglob("*.jpg"))
    print(f"wrote {written} images to {args.out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
