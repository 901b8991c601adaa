"""``[train] tensorboard = true``: a real short run also leaves a TensorBoard log that
TensorBoard itself reads back; off by default; without the package the run goes on."""

from __future__ import annotations

import pytest

from desktop_tl.core.training import Trainer

from helpers_training import lite0_config, sample_subset

pytest.importorskip("tensorboard")
CLASSES = ("brick", "grass", "gravel")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return sample_subset(
        tmp_path_factory.mktemp("tensorboard") / "photos", classes=CLASSES, n_train=6, n_val=3
    )


def test_a_run_logs_scalars_and_the_confusion_matrix_per_epoch(photos, tmp_path):
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = lite0_config(photos, tmp_path / "run", epochs=2, device="cpu")
    config.train.tensorboard = True
    finished = Trainer(config).run()
    assert finished.status == "completed", finished.reason
    log = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0})
    log.Reload()
    accuracy = log.Scalars("accuracy/validation")
    assert [s.step for s in accuracy] == [1, 2]  # epochs counted as metrics.csv counts them
    import csv

    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [round(s.value, 5) for s in accuracy] == [round(float(row["val_acc"]), 5) for row in rows]
    assert {"loss/train", "loss/validation", "accuracy/train", "learning_rate"} <= set(log.Tags()["scalars"])
    (last, *_) = reversed(log.Images("confusion_matrix/validation"))
    import io

    picture = Image.open(io.BytesIO(last.encoded_image_string))
    assert picture.width > 100 and picture.height > 100


def test_it_is_off_by_default(photos, tmp_path):
    finished = Trainer(lite0_config(photos, tmp_path / "run", epochs=1, device="cpu")).run()
    assert finished.status == "completed", finished.reason
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_the_confusion_matrix_picture_has_one_cell_per_class_pair():
    import numpy as np

    from desktop_tl.core.tensorboard_log import confusion_matrix_image

    picture = confusion_matrix_image([[3, 1, 0], [0, 4, 0], [1, 0, 2]], list(CLASSES))
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    assert picture.std() > 0  # drawn, not blank


def test_without_the_package_the_reason_says_how_to_get_it():
    import subprocess
    import sys

    # A child interpreter where the package cannot be imported, as on a machine without it.
    code = (
        "import sys; sys.modules['tensorboard'] = None; "
        "from desktop_tl.core.tensorboard_log import missing_reason; print(missing_reason())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install tensorboard" in done.stdout and "goes on without it" in done.stdout
