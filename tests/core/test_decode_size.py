"""JPEGs are decoded at the size their transform needs, the same way on every path:
training, validation, prediction and the exported bundle's predict.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from desktop_tl.core import images
from desktop_tl.core.transforms import build_transform, decode_short_side
from desktop_tl.core.loaders import ImageDataset, make_loader
from desktop_tl.core.image_cache import DecodedImageDataset, DecodedImages
from desktop_tl.core.images import open_rgb, probe_image
from desktop_tl.plugin.descriptors import Preprocessing

PREPROCESSING = Preprocessing(resize=256, crop=224)
BUNDLE_SCRIPT = Path(images.__file__).parent / "export" / "bundle_predict.py"

#: EXIF orientation tag.
ORIENTATION = 0x0112


def bundle_script():
    spec = importlib.util.spec_from_file_location("bundle_predict_under_test", BUNDLE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_photo(
    path: Path, source: np.ndarray, size=(1600, 1200), orientation: int | None = None, mode: str = "RGB"
) -> Path:
    """A real photo upscaled to ``size`` and saved as JPEG, optionally with an EXIF
    orientation tag (as a camera held sideways writes it)."""
    image = Image.fromarray(source).convert("RGB").resize(size, Image.BICUBIC).convert(mode)
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION] = orientation
    image.save(path, "JPEG", quality=90, exif=exif.tobytes())
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    return {
        "plain": write_photo(folder / "astronaut.jpg", data.astronaut()),
        "rotated": write_photo(folder / "coffee_rotated.jpg", data.coffee(), orientation=6),
        "mirrored": write_photo(
            folder / "chelsea_mirrored.jpg", data.chelsea(), size=(1200, 1600), orientation=5
        ),
        "gray": write_photo(folder / "camera_gray.jpg", data.camera(), mode="L"),
        "cmyk": write_photo(folder / "rocket_cmyk.jpg", data.rocket(), mode="CMYK"),
        "small": write_photo(folder / "small.jpg", data.astronaut(), size=(300, 280)),
    }


def test_eval_and_decode_transforms_name_the_short_side_they_need():
    assert decode_short_side(build_transform(PREPROCESSING, "none", train=False)) == 256
    # a 60 % crop at the narrowest aspect ratio (3:4) must still cover 224 pixels
    needed = decode_short_side(build_transform(PREPROCESSING, "light", train=True))
    assert needed == int(np.ceil(224 / np.sqrt(0.6 * 0.75)))
    assert decode_short_side(None) is None
    assert decode_short_side(lambda image: image) is None  # unknown: the full image


@pytest.mark.parametrize("name", ["plain", "rotated", "mirrored", "gray", "cmyk"])
def test_large_jpeg_decodes_at_the_smallest_scale_that_keeps_the_short_side(photos, name):
    path = photos[name]
    full = open_rgb(path)
    reduced = open_rgb(path, 256)
    assert reduced.mode == "RGB"
    # 1200 px short side: 1/4 gives 300 (>= 256), 1/8 would give 150
    assert min(reduced.size) == 300 and max(reduced.size) == 400
    # upright like the full decode: the long side lies the same way
    assert (reduced.width > reduced.height) == (full.width > full.height)
    # same picture: the full decode reduced by 4 differs only by resampling
    expected = np.asarray(full.reduce(4), dtype=np.int16)
    difference = np.abs(np.asarray(reduced, dtype=np.int16) - expected)
    assert difference.mean() < 3.0


def test_jpeg_already_small_enough_is_decoded_in_full(photos):
    path = photos["small"]
    assert np.array_equal(np.asarray(open_rgb(path, 256)), np.asarray(open_rgb(path)))


def test_non_jpeg_is_decoded_in_full(tmp_path):
    from skimage import data

    path = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).resize((1024, 768)).save(path)
    assert open_rgb(path, 256).size == (1024, 768)


def test_evaluation_after_reduced_decode_matches_full_decode_closely(photos):
    transform = build_transform(PREPROCESSING, "none", train=False)
    for name in ("plain", "rotated", "mirrored"):
        reduced = transform(open_rgb(photos[name], 256))
        full = transform(open_rgb(photos[name]))
        assert reduced.shape == full.shape == (3, 224, 224)
        # normalised units (std ~0.22): a mean difference of 0.05 is ~3 grey levels
        assert (reduced - full).abs().mean() < 0.05


@pytest.mark.parametrize("name", ["plain", "rotated", "mirrored", "gray", "cmyk", "small"])
def test_bundle_decodes_exactly_as_desktop_tl(photos, name):
    script = bundle_script()
    core = np.asarray(open_rgb(photos[name], 256))
    bundle = np.asarray(script.open_rgb(photos[name], 256))
    assert core.shape == bundle.shape and np.array_equal(core, bundle)


def test_same_tensor_from_every_training_and_prediction_path(photos):
    """Validation (ImageDataset), the decoded-image store (training's resize cache), the
    store's fallback decode from the file, and prediction give one tensor per image."""
    from desktop_tl.core.feature_cache import MemoryBudget

    items = [(str(photos[name]), i % 2) for i, name in enumerate(("plain", "rotated", "mirrored", "cmyk"))]
    transform = build_transform(PREPROCESSING, "none", train=False)
    reference = [transform(open_rgb(path, decode_short_side(transform))) for path, _ in items]

    validation = [ImageDataset(items, transform)[i][0] for i in range(len(items))]
    decoded = DecodedImages.build(items, PREPROCESSING, MemoryBudget(1 << 30), decode_threads=2)
    assert decoded.held == len(items)
    from_store = [
        DecodedImageDataset(items, decoded, PREPROCESSING, "none", False)[i][0] for i in range(len(items))
    ]
    from_file = [
        DecodedImageDataset(items, None, PREPROCESSING, "none", False)[i][0] for i in range(len(items))
    ]
    for expected, *others in zip(reference, validation, from_store, from_file):
        for other in others:
            assert torch.equal(expected, other)


def test_predictor_and_bundle_see_the_same_image(photos):
    """The bundle's preprocessing (numpy and Pillow, no torch) on the same decoded image
    matches the engine's tensor up to the two libraries' antialiased resampling."""
    script = bundle_script()
    transform = build_transform(PREPROCESSING, "none", train=False)
    settings = PREPROCESSING.to_dict()
    for name in ("plain", "rotated", "mirrored", "gray"):
        engine = transform(open_rgb(photos[name], 256)).numpy()
        bundle = script.load(str(photos[name]), settings)
        assert bundle.shape == engine.shape
        assert np.abs(bundle - engine).mean() < 0.02


def test_loader_batches_use_the_reduced_decode(photos):
    items = [(str(photos["rotated"]), 0), (str(photos["plain"]), 1)]
    transform = build_transform(PREPROCESSING, "none", train=False)
    loader = make_loader(ImageDataset(items, transform), batch_size=2, shuffle=False, num_workers=0)
    batch, labels = next(iter(loader))
    expected = torch.stack([transform(open_rgb(path, 256)) for path, _ in items])
    assert torch.equal(batch, expected) and labels.tolist() == [0, 1]


def test_probe_accepts_a_good_photo_and_rejects_a_cut_one(photos, tmp_path):
    assert probe_image(photos["rotated"]) is None
    data = Path(photos["plain"]).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    reason = probe_image(cut)
    assert reason is not None and "truncated" in reason
