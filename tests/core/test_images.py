"""Every pixel format a dataset may hold becomes correct, upright 8-bit RGB."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from desktop_tl.core.images import IMAGE_EXTENSIONS, ImageReadError, is_image_file_name, open_rgb, probe_image
from desktop_tl.errors import UserError
from helpers_data import truncate_file, write_image


def rgb_pixels(path) -> np.ndarray:
    image = open_rgb(path)
    assert image.mode == "RGB"
    return np.asarray(image)


def test_rgb_is_returned_unchanged(tmp_path):
    path = write_image(tmp_path / "a.png", (10, 120, 250))
    expected = np.asarray(Image.open(path))
    assert np.array_equal(rgb_pixels(path), expected)


def test_grayscale_becomes_equal_channels(tmp_path):
    path = tmp_path / "gray.png"
    Image.new("L", (4, 3), 77).save(path)
    pixels = rgb_pixels(path)
    assert pixels.shape == (3, 4, 3)
    assert (pixels == 77).all()


def test_one_bit_image_becomes_black_and_white(tmp_path):
    image = Image.new("1", (4, 2), 0)
    image.putpixel((1, 0), 1)
    path = tmp_path / "bits.png"
    image.save(path)
    pixels = rgb_pixels(path)
    assert tuple(pixels[0, 1]) == (255, 255, 255)
    assert tuple(pixels[0, 0]) == (0, 0, 0)


def test_palette_image_uses_its_palette(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255])
    image.putpixel((1, 0), 1)
    path = tmp_path / "palette.gif"
    image.save(path)
    pixels = rgb_pixels(path)
    assert tuple(pixels[0, 0]) == (255, 0, 0)
    assert tuple(pixels[0, 1]) == (0, 0, 255)


def test_palette_transparency_is_composited_on_white(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 0, 200, 0])  # index 0 black (transparent), 1 green
    image.putpixel((1, 0), 1)
    path = tmp_path / "palette_transparent.png"
    image.save(path, transparency=0)
    assert Image.open(path).mode == "P"
    pixels = rgb_pixels(path)
    assert tuple(pixels[0, 0]) == (255, 255, 255)  # transparent black shows as white
    assert tuple(pixels[0, 1]) == (0, 200, 0)


def test_rgba_is_composited_on_white(tmp_path):
    image = Image.new("RGBA", (3, 1))
    image.putpixel((0, 0), (255, 0, 0, 0))  # fully transparent red
    image.putpixel((1, 0), (0, 0, 255, 255))  # opaque blue
    image.putpixel((2, 0), (0, 0, 0, 128))  # half-transparent black
    path = tmp_path / "rgba.png"
    image.save(path)
    pixels = rgb_pixels(path).astype(int)
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    assert tuple(pixels[0, 1]) == (0, 0, 255)
    assert np.all(np.abs(pixels[0, 2] - 127) <= 1)


def test_grayscale_with_alpha_is_composited_on_white(tmp_path):
    image = Image.new("LA", (2, 1))
    image.putpixel((0, 0), (50, 255))
    image.putpixel((1, 0), (0, 0))
    path = tmp_path / "la.png"
    image.save(path)
    pixels = rgb_pixels(path)
    assert tuple(pixels[0, 0]) == (50, 50, 50)
    assert tuple(pixels[0, 1]) == (255, 255, 255)


@pytest.mark.parametrize("file_name", ["cmyk.tif", "cmyk.jpg"])
def test_cmyk_becomes_rgb(tmp_path, file_name):
    path = tmp_path / file_name
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path)  # no cyan, full magenta+yellow: red
    assert Image.open(path).mode == "CMYK"
    pixels = rgb_pixels(path).astype(int)
    assert np.all(np.abs(pixels - np.array([255, 0, 0])) <= 3)


def _sixteen_bit(values: np.ndarray, mode: str) -> Image.Image:
    dtype = ">u2" if mode == "I;16B" else "<u2"
    return Image.frombytes(mode, (values.shape[1], values.shape[0]), values.astype(dtype).tobytes())


@pytest.mark.parametrize(
    "mode, file_name", [("I;16", "wide.png"), ("I;16", "wide.tif"), ("I;16B", "wide_be.tif")]
)
def test_sixteen_bit_is_scaled_not_clipped(tmp_path, mode, file_name):
    values = np.array([[0, 257 * 100, 65535, 1000]], dtype=np.uint16)
    path = tmp_path / file_name
    _sixteen_bit(values, mode).save(path)
    assert Image.open(path).mode == mode
    pixels = rgb_pixels(path)
    # 65535 -> 255 and 25700 -> 100; a dark 1000 stays dark (4), where a plain
    # conversion would clip everything above 255 to white.
    assert pixels[0, :, 0].tolist() == [0, 100, 255, 4]
    assert (pixels[..., 0] == pixels[..., 2]).all()


def test_32_bit_integer_image_in_16_bit_range_is_scaled_by_that_range(tmp_path):
    path = tmp_path / "int32.tif"
    Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.int32)).save(path)
    assert Image.open(path).mode == "I"
    assert rgb_pixels(path)[0, :, 1].tolist() == [0, 128, 255]


def test_32_bit_integer_image_beyond_16_bits_is_stretched(tmp_path):
    path = tmp_path / "int32_wide.tif"
    Image.fromarray(np.array([[-1000, 0, 99000]], dtype=np.int32)).save(path)
    assert rgb_pixels(path)[0, :, 0].tolist() == [0, 3, 255]


def test_float_image_in_unit_range_is_scaled_by_255(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(path)
    assert Image.open(path).mode == "F"
    assert rgb_pixels(path)[0, :, 0].tolist() == [0, 128, 255]


def test_float_image_with_other_range_is_stretched(tmp_path):
    path = tmp_path / "float_wide.tif"
    Image.fromarray(np.array([[-2.0, 0.0, 2.0]], dtype=np.float32)).save(path)
    assert rgb_pixels(path)[0, :, 0].tolist() == [0, 128, 255]


def test_exif_orientation_is_applied(tmp_path):
    # Stored 20 wide x 10 high, left half red, right half blue. Orientation 6 means the
    # camera was turned: shown upright the image is 10 wide x 20 high, red on top.
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[:, :10] = (255, 0, 0)
    pixels[:, 10:] = (0, 0, 255)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    upright = rgb_pixels(path).astype(int)
    assert upright.shape == (20, 10, 3)
    assert np.abs(upright[2, 5] - [255, 0, 0]).max() < 40
    assert np.abs(upright[17, 5] - [0, 0, 255]).max() < 40


def test_skimage_texture_photo_reads_as_rgb(tmp_path):
    from skimage import data

    path = tmp_path / "brick.jpg"
    Image.fromarray(data.brick()[:64, :64]).save(path)
    pixels = rgb_pixels(path)
    assert pixels.shape == (64, 64, 3)
    assert (pixels[..., 0] == pixels[..., 1]).all()


@pytest.mark.parametrize("file_name, fmt", [("cut.jpg", "JPEG"), ("cut.png", "PNG")])
def test_truncated_image_is_reported_with_reason(tmp_path, file_name, fmt):
    path = write_image(tmp_path / file_name, (40, 90, 140), size=(64, 64), format=fmt)
    truncate_file(path, 0.6)
    reason = probe_image(path)
    assert reason is not None and "truncated" in reason
    with pytest.raises(ImageReadError) as info:
        open_rgb(path)
    assert isinstance(info.value, UserError)
    assert info.value.path == str(path)
    assert str(path) in str(info.value) and "truncated" in str(info.value)


def test_garbage_file_is_reported(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"this is not a JPEG at all" * 20)
    assert "not a recognised image" in probe_image(path)


def test_empty_file_is_reported(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert probe_image(path) is not None


def test_missing_file_is_reported(tmp_path):
    assert probe_image(tmp_path / "gone.png") == "file not found"


def test_decompression_bomb_has_a_clear_reason(tmp_path, monkeypatch):
    path = write_image(tmp_path / "big.png", size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 4096 pixels > 2 x limit
    reason = probe_image(path)
    assert reason is not None and "too many pixels" in reason


def test_readable_image_probes_clean(tmp_path):
    assert probe_image(write_image(tmp_path / "ok.webp", size=(8, 8))) is None


def test_image_read_error_survives_pickling():
    error = pickle.loads(pickle.dumps(ImageReadError("/data/x.jpg", "file not found")))
    assert (error.path, error.reason) == ("/data/x.jpg", "file not found")
    assert "x.jpg" in str(error)


def test_extension_check_ignores_case():
    assert ".jpg" in IMAGE_EXTENSIONS
    assert is_image_file_name("IMG_0001.JPG")
    assert not is_image_file_name("notes.txt")
    assert not is_image_file_name("README")
