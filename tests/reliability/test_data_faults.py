"""Bad data a hostile tester tried: each case reproduced on real files, then fixed.

Links that loop or duplicate folders, special files named like images, data problems
that used to pass silently (a class never validated, classes differing only in case,
conflicting manifest rows, mixed separators), huge images and 12-bit data in 16-bit
files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop_tl.core import images
from desktop_tl.core.config import DataConfig
from desktop_tl.core.data import PreparedData, prepare_data
from desktop_tl.core.images import open_rgb, probe_image
from desktop_tl.plugin.descriptors import DatasetError
from helpers_data import LoaderHost, make_image_folder

needs_symlinks = pytest.mark.skipif(
    not hasattr(os, "symlink") or sys.platform == "win32",
    reason="directory symlinks need a POSIX system here",
)


def prepare(path, **options) -> PreparedData:
    return prepare_data(DataConfig(path=str(path), **options), LoaderHost())


def refusal(path, **options) -> str:
    with pytest.raises(DatasetError) as info:
        prepare(path, **options)
    return str(info.value)


def split_layout(root: Path, train: dict[str, int], val: dict[str, int]) -> Path:
    make_image_folder(root, train, subset="train")
    make_image_folder(root, val, subset="val")
    return root


def warnings_text(prepared: PreparedData) -> str:
    return "\n".join(prepared.warnings)


# --------------------------------------------------------------------------- links (2)


@needs_symlinks
def test_link_loop_inside_a_class_folder_does_not_pull_other_classes_in(tmp_path):
    root = split_layout(tmp_path / "data", {"cats": 3, "dogs": 3}, {"cats": 1, "dogs": 1})
    loop = root / "train" / "cats" / "loop"
    loop.symlink_to("..", target_is_directory=True)  # train/cats/loop -> train/

    prepared = prepare(root)

    assert prepared.counts()["train"] == {"cats": 3, "dogs": 3}
    assert any(path == str(loop) and "loop" in reason for path, reason in prepared.ignored)
    assert "loop" in warnings_text(prepared) and str(Path("train", "cats", "loop")) in warnings_text(prepared)


@needs_symlinks
def test_link_from_one_class_to_another_does_not_count_images_twice(tmp_path):
    root = tmp_path / "data"
    make_image_folder(root, {"cats": 3, "dogs": 3})
    (root / "cats" / "more").symlink_to(root / "dogs", target_is_directory=True)

    prepared = prepare(root, val_fraction=0.34)

    counts = prepared.counts()
    assert {name: counts["train"][name] + counts["val"][name] for name in ("cats", "dogs")} == {
        "cats": 3,
        "dogs": 3,
    }
    assert str(Path("cats", "more")) in warnings_text(prepared)


@needs_symlinks
def test_val_folder_linked_to_train_folder_does_not_leak_training_images(tmp_path):
    root = split_layout(tmp_path / "data", {"cats": 3, "dogs": 3}, {"dogs": 1})
    (root / "val" / "cats").symlink_to(root / "train" / "cats", target_is_directory=True)

    prepared = prepare(root)

    train_paths = {os.path.realpath(p) for p, _ in prepared.train}
    assert not train_paths & {os.path.realpath(p) for p, _ in prepared.val}
    assert "val" in warnings_text(prepared) and "cats" in warnings_text(prepared)


@needs_symlinks
def test_image_file_linked_into_a_second_class_is_counted_once(tmp_path):
    root = tmp_path / "data"
    written = make_image_folder(root, {"cats": 3, "dogs": 3})
    (root / "cats" / "sneaky.png").symlink_to(written["dogs"][0])

    prepared = prepare(root, val_fraction=0.34)

    labels_of_dog_file = [
        label for p, label in prepared.train + prepared.val if os.path.realpath(p) == str(written["dogs"][0])
    ]
    assert len(labels_of_dog_file) == 1
    assert "sneaky.png" in warnings_text(prepared)


# --------------------------------------------------------------------------- special files (17)


def _prepare_with_deadline(root: Path, fifo: Path) -> PreparedData | BaseException:
    """prepare() on a thread; a reader blocked on the FIFO is released so that a failing
    test reports instead of hanging the suite."""
    outcome: list = []

    def work() -> None:
        try:
            outcome.append(prepare(root, val_fraction=0.34))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():
        # A writer end lets a blocked open() of the FIFO return.
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        worker.join(10)
        os.close(fd)
        pytest.fail("checking the images hung on a FIFO named like an image")
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_fifo_named_like_an_image_is_skipped_with_a_reason(tmp_path):
    root = tmp_path / "data"
    make_image_folder(root, {"cats": 3, "dogs": 3})
    fifo = root / "cats" / "pipe.jpg"
    os.mkfifo(fifo)

    prepared = _prepare_with_deadline(root, fifo)

    assert isinstance(prepared, PreparedData), prepared
    reasons = dict(prepared.ignored) | dict(prepared.bad_files)
    assert "not a regular file" in reasons[str(fifo)]
    assert len(prepared.train) + len(prepared.val) == 6


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_fifo_listed_in_a_manifest_is_reported_not_waited_on(tmp_path):
    written = make_image_folder(tmp_path / "img", {"cats": 2, "dogs": 2})
    fifo = tmp_path / "img" / "pipe.png"
    os.mkfifo(fifo)
    rows = [f"{p},{name}" for name, paths in written.items() for p in paths] + [f"{fifo},cats"]
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")

    prepared = _prepare_with_deadline(manifest, fifo)

    assert isinstance(prepared, PreparedData), prepared
    assert "not a regular file" in dict(prepared.bad_files)[str(fifo)]


# --------------------------------------------------------------------------- unreported data problems (11)


def test_class_with_one_image_warns_that_validation_has_none_of_it(tmp_path):
    root = tmp_path / "data"
    make_image_folder(root, {"cats": 5, "dogs": 5, "owls": 1})

    prepared = prepare(root)

    assert prepared.counts()["val"]["owls"] == 0
    text = warnings_text(prepared)
    assert "'owls'" in text and "validation" in text


def test_class_only_in_train_warns_that_it_is_never_validated(tmp_path):
    root = split_layout(tmp_path / "data", {"cats": 3, "dogs": 3, "owls": 3}, {"cats": 1, "dogs": 1})

    prepared = prepare(root)

    text = warnings_text(prepared)
    assert "'owls'" in text and str(Path("val", "owls")) in text
    assert "'cats'" not in text


def test_classes_differing_only_in_letter_case_are_warned_about(tmp_path):
    root = tmp_path / "data"
    make_image_folder(root, {"Cats": 3, "cats": 3, "dogs": 3})
    if not (root / "Cats").exists() or len(os.listdir(root)) < 3:
        pytest.skip("this file system does not tell Cats from cats")

    prepared = prepare(root)

    assert prepared.class_names == ["Cats", "cats", "dogs"]
    text = warnings_text(prepared)
    assert "'Cats'" in text and "'cats'" in text and "letter case" in text


def test_train_and_val_class_names_differing_in_case_are_refused_naming_both(tmp_path):
    root = split_layout(tmp_path / "data", {"Cats": 3, "dogs": 3}, {"cats": 1, "dogs": 1})
    if len(os.listdir(root / "val")) < 2 or not (root / "val" / "cats").exists():
        pytest.skip("this file system does not tell Cats from cats")

    message = refusal(root)

    assert "'cats'" in message and "'Cats'" in message and "letter case" in message


def test_conflicting_duplicate_manifest_rows_are_warned_about(tmp_path):
    written = make_image_folder(tmp_path / "img", {"cat": 3, "dog": 3})
    rows = [f"{p},{name}" for name, paths in written.items() for p in paths]
    rows.append(f"{written['cat'][0]},dog")
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")

    prepared = prepare(manifest, val_fraction=0.34)

    text = warnings_text(prepared)
    assert written["cat"][0].name in text and "'cat'" in text and "'dog'" in text


def test_manifest_header_with_semicolons_and_rows_with_commas_is_refused_clearly(tmp_path):
    written = make_image_folder(tmp_path / "img", {"cat": 2, "dog": 2})
    rows = [f"{p},{name}" for name, paths in written.items() for p in paths]
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path;label\n" + "\n".join(rows) + "\n")

    message = refusal(manifest)

    assert "lists no images" not in message
    assert "';'" in message and "','" in message and "separator" in message


def test_manifest_rows_skipped_for_another_separator_are_warned_about(tmp_path):
    written = make_image_folder(tmp_path / "img", {"cat": 3, "dog": 3})
    rows = [f"{p},{name}" for name, paths in written.items() for p in paths]
    rows[0] = rows[0].replace(",", ";")  # a row pasted from another program
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")

    prepared = prepare(manifest, val_fraction=0.34)

    assert len(prepared.train) + len(prepared.val) == 5
    text = warnings_text(prepared)
    assert "labels.csv" in text and "1 row" in text and "';'" in text


def test_warnings_survive_the_saved_split(tmp_path):
    root = tmp_path / "data"
    make_image_folder(root, {"cats": 5, "dogs": 5, "owls": 1})
    prepared = prepare(root)
    prepared.save_manifest(tmp_path / "split.json")

    assert PreparedData.load_manifest(tmp_path / "split.json").warnings == prepared.warnings
    assert prepared.warnings


# --------------------------------------------------------------------------- huge and deep images (14)


@pytest.fixture(scope="module")
def hundred_megapixel_jpeg(tmp_path_factory) -> Path:
    # A flat colour encodes fast; L keeps the writer's own memory at 100 MB.
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    Image.new("L", (10_000, 10_000), 90).save(path, quality=75)
    return path


def _peak_memory_mb_opening(path: Path) -> tuple[tuple[int, int], float, str]:
    """Open ``path`` with open_rgb in a fresh interpreter: size, peak RSS, stderr.

    The peak is the kernel's VmHWM of the new program (ru_maxrss would include the memory
    of this test process, inherited across fork and exec)."""
    code = (
        "import sys\n"
        "from desktop_tl.core.images import open_rgb\n"
        "image = open_rgb(sys.argv[1])\n"
        "peak = [line.split()[1] for line in open('/proc/self/status')"
        " if line.startswith('VmHWM:')][0]\n"
        "print(image.size[0], image.size[1], image.mode, peak)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    width, height, mode, peak_kb = result.stdout.split()
    assert mode == "RGB"
    return (int(width), int(height)), int(peak_kb) / 1024, result.stderr


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmHWM")
def test_hundred_megapixel_jpeg_is_decoded_at_the_size_needed_quietly(hundred_megapixel_jpeg):
    size, peak_mb, stderr = _peak_memory_mb_opening(hundred_megapixel_jpeg)

    assert min(size) >= images.DECODE_SHORT_SIDE and max(size) < 10_000
    # Fully decoded as RGB it would take 300 MB on its own.
    assert peak_mb < 150, peak_mb
    assert "DecompressionBomb" not in stderr and stderr.strip() == ""


def test_hundred_megapixel_jpeg_passes_the_check_without_pillow_warnings(hundred_megapixel_jpeg):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert probe_image(hundred_megapixel_jpeg) is None
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_image_above_the_pixel_limit_is_refused_with_how_to_raise_it(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    Image.new("RGB", (2000, 1000), (40, 90, 160)).save(path)
    monkeypatch.setenv("DTL_MAX_IMAGE_MEGAPIXELS", "1.5")

    reason = probe_image(path)

    assert reason is not None
    assert "2.0 megapixels" in reason and "1.5" in reason and "DTL_MAX_IMAGE_MEGAPIXELS" in reason


def test_unusable_pixel_limit_setting_is_refused_before_checking_images(tmp_path, monkeypatch):
    root = tmp_path / "data"
    make_image_folder(root, {"cats": 2, "dogs": 2})
    monkeypatch.setenv("DTL_MAX_IMAGE_MEGAPIXELS", "lots")

    message = refusal(root)

    assert "DTL_MAX_IMAGE_MEGAPIXELS" in message and "'lots'" in message


def test_large_png_is_reduced_to_the_size_needed(tmp_path, monkeypatch):
    # Lower the threshold rather than write a 100 MP PNG: the same code path.
    monkeypatch.setattr(images, "REDUCE_ABOVE_PIXELS", 1_000_000)
    monkeypatch.setattr(images, "DECODE_SHORT_SIDE", 300)
    path = tmp_path / "big.png"
    Image.new("RGB", (1800, 1200), (10, 200, 30)).save(path)

    image = open_rgb(path)

    assert image.size == (450, 300)
    assert image.getpixel((200, 150)) == (10, 200, 30)


def test_large_image_is_still_turned_upright(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "REDUCE_ABOVE_PIXELS", 1_000_000)
    monkeypatch.setattr(images, "DECODE_SHORT_SIDE", 300)
    pixels = np.zeros((1200, 1800, 3), dtype=np.uint8)
    pixels[:, :900] = (250, 0, 0)  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: shown turned 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)

    image = open_rgb(path)

    assert image.size[0] < image.size[1]  # portrait once upright
    top = np.asarray(image)[5, image.size[0] // 2]
    assert top[0] > 200 and top[1] < 60  # the red half is on top


def test_twelve_bit_values_in_a_sixteen_bit_png_are_scaled_by_4095(tmp_path):
    values = np.array([[0, 1000, 2048, 4095]], dtype=np.uint16)
    path = tmp_path / "twelve_bit.png"
    Image.frombytes("I;16", (4, 1), values.astype("<u2").tobytes()).save(path)

    pixels = np.asarray(open_rgb(path))

    assert pixels[0, :, 0].tolist() == [0, 62, 128, 255]


def test_full_sixteen_bit_range_is_still_scaled_by_65535(tmp_path):
    values = np.array([[0, 1000, 40000, 65535]], dtype=np.uint16)
    path = tmp_path / "sixteen_bit.png"
    Image.frombytes("I;16", (4, 1), values.astype("<u2").tobytes()).save(path)

    assert np.asarray(open_rgb(path))[0, :, 0].tolist() == [0, 4, 156, 255]


# --------------------------------------------------------------------------- where warnings reach a person


@pytest.mark.slow  # trains one epoch
def test_data_warnings_reach_the_command_line_and_run_log(tmp_path, capsys):
    import shutil

    from desktop_tl.cli import main
    from helpers_training import sample_subset

    data = sample_subset(tmp_path / "photos", classes=("brick", "grass"), n_train=4, n_val=2)
    source = sample_subset(tmp_path / "more", classes=("gravel",), n_train=3, n_val=0)
    shutil.copytree(source / "train" / "gravel", data / "train" / "gravel")  # no val/gravel
    out = tmp_path / "run"

    code = main(
        [
            "train",
            "--data",
            str(data),
            "--backbone",
            "resnet18",
            "--weights",
            "none",
            "--head",
            "linear",
            "--freeze",
            "head-only",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--augment",
            "none",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--quiet",
        ]
    )

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "warning: class 'gravel' has no validation images" in captured.err
    assert "class 'gravel' has no validation images" in (out / "run.log").read_text()


def test_data_warnings_are_shown_in_the_data_panel(qtbot, tmp_path):
    from desktop_tl.gui.data_panel import DataPanel

    root = tmp_path / "data"
    make_image_folder(root, {"cats": 5, "dogs": 5, "owls": 1})
    panel = DataPanel()
    qtbot.addWidget(panel)
    panel.set_host(LoaderHost())
    logged = []
    panel.log.connect(lambda level, message: logged.append((level, message)))

    panel.set_path(root)
    qtbot.waitUntil(lambda: panel.prepared is not None, timeout=30_000)

    assert panel.notice.level == "warning" and "'owls'" in panel.notice.text()
    assert any(level == "warning" and "'owls'" in message for level, message in logged)


# --------------------------------------------------------------------------- damage only a full decode finds


def corrupt_png_stream_keeping_checksums(path: Path) -> Path:
    """Overwrite the middle of a PNG's compressed pixel data and recompute the chunk's
    CRC: the chunk structure and checksums are valid, the zlib stream is not."""
    import struct
    import zlib

    data = bytearray(path.read_bytes())
    position = 8
    while position < len(data):
        length = struct.unpack(">I", data[position : position + 4])[0]
        kind = bytes(data[position + 4 : position + 8])
        if kind == b"IDAT":
            start = position + 8
            middle = start + length // 2
            data[middle : middle + 16] = bytes(16)
            crc = zlib.crc32(bytes(data[position + 4 : start + length])) & 0xFFFFFFFF
            data[start + length : start + length + 4] = struct.pack(">I", crc)
            break
        position += 12 + length
    path.write_bytes(bytes(data))
    return path


def test_header_check_passes_a_png_only_the_full_decode_refuses(tmp_path):
    from skimage import data as photos

    path = tmp_path / "coffee.png"
    Image.fromarray(photos.coffee()[:96, :128]).save(path)
    corrupt_png_stream_keeping_checksums(path)
    assert probe_image(path) is None  # header and checksums are fine: the check is cheap
    with pytest.raises(images.ImageReadError) as info:
        open_rgb(path)
    assert "corrupt image data" in info.value.reason


@pytest.mark.slow  # trains one epoch
def test_image_failing_only_at_full_decode_is_skipped_and_reported_by_training(tmp_path):
    from desktop_tl.core.training import Trainer
    from helpers_training import lite0_config, sample_subset

    data = sample_subset(tmp_path / "photos", classes=("brick", "grass"), n_train=6, n_val=2)
    victim = sorted((data / "train" / "brick").iterdir())[0]
    damaged = victim.with_suffix(".png")
    Image.open(victim).convert("RGB").save(damaged)
    victim.unlink()
    corrupt_png_stream_keeping_checksums(damaged)
    out = tmp_path / "run"

    finished = Trainer(lite0_config(data, out, epochs=1, device="cpu")).run()

    assert finished.status == "completed", finished.reason
    reason = probe_image(damaged) or ""
    assert reason == ""  # it passed the data check ...
    import json

    summary = json.loads((out / "summary.json").read_text())
    skipped = {entry["path"]: entry["reason"] for entry in summary["skipped_files"]}
    with pytest.raises(images.ImageReadError) as info:
        open_rgb(damaged)
    assert skipped == {str(damaged): info.value.reason}  # ... and training names it and why
    assert f"skipped unreadable image {damaged}" in (out / "run.log").read_text()
