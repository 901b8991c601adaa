"""Grad-CAM heat maps from a really trained classifier: where it looked, on demand, from the
library and the command line; a backbone without a feature map is refused with the reason."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop_tl.cli import main
from desktop_tl.core.explain import Explainer, ExplanationUnsupported
from desktop_tl.core.predict import Predictor
from desktop_tl.core.training import Trainer
from desktop_tl.errors import UserError

from helpers_training import lite0_config, sample_subset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    photos = sample_subset(root / "photos", classes=("brick", "grass"), n_train=8, n_val=4)
    finished = Trainer(lite0_config(photos, root / "run", epochs=2, device="cpu")).run()
    assert finished.status == "completed", finished.reason
    return {"root": root, "photos": photos, "run": root / "run"}


def _half_and_half(photos: Path, out: Path) -> Path:
    """A real brick photo on the left, a real grass photo on the right."""
    brick = Image.open(sorted((photos / "val" / "brick").iterdir())[0]).convert("RGB").resize((256, 256))
    grass = Image.open(sorted((photos / "val" / "grass").iterdir())[0]).convert("RGB").resize((256, 256))
    both = Image.new("RGB", (512, 256))
    both.paste(brick, (0, 0))
    both.paste(grass, (256, 0))
    both.save(out)
    return out


def test_each_class_map_lies_on_the_half_that_shows_it(trained, tmp_path):
    predictor = Predictor.from_run_dir(trained["run"])
    explainer = Explainer(predictor.model, predictor.class_names, predictor.preprocessing)
    assert explainer.layer_name == "backbone.top"  # the last stage with a 7 x 7 feature map
    image = _half_and_half(trained["photos"], tmp_path / "both.png")
    brick, grass = explainer.explain(image, ["brick", "grass"])
    for explanation in (brick, grass):
        assert explanation.heatmap.shape == (256, 512)  # the image's own size
        assert np.isfinite(explanation.heatmap).all()
        assert 0 <= explanation.heatmap.min() and explanation.heatmap.max() <= 1
    assert brick.heatmap[:, :256].mean() > 3 * brick.heatmap[:, 256:].mean()
    assert grass.heatmap[:, 256:].mean() > 3 * grass.heatmap[:, :256].mean()
    assert abs(brick.probability + grass.probability - 1) < 1e-4


def test_the_default_class_is_the_predicted_one_and_the_overlay_keeps_the_size(trained):
    predictor = Predictor.from_run_dir(trained["run"])
    explainer = Explainer(predictor.model, predictor.class_names, predictor.preprocessing)
    path = sorted((trained["photos"] / "val" / "grass").iterdir())[1]
    (explanation,) = explainer.explain(path)
    (predicted,) = predictor.predict([path], top_k=1)
    assert explanation.class_name == predicted.top[0][0]
    image = Image.open(path).convert("RGB")
    overlay = explanation.overlay(image)
    assert overlay.size == image.size and overlay.mode == "RGB"
    assert np.asarray(overlay).astype(int).std() > 0


def test_a_frozen_model_in_memory_is_explained_too(trained):
    predictor = Predictor.from_run_dir(trained["run"])
    for parameter in predictor.model.parameters():  # as the window holds it during a head-only run
        parameter.requires_grad_(False)
    explainer = Explainer(predictor.model, predictor.class_names, predictor.preprocessing)
    (explanation,) = explainer.explain(sorted((trained["photos"] / "val" / "brick").iterdir())[0])
    assert explanation.heatmap.max() > 0


def test_bad_requests_say_what_is_wrong(trained, tmp_path):
    predictor = Predictor.from_run_dir(trained["run"])
    explainer = Explainer(predictor.model, predictor.class_names, predictor.preprocessing)
    image = sorted((trained["photos"] / "val" / "brick").iterdir())[0]
    with pytest.raises(UserError, match="'cat' is not one of this model's classes"):
        explainer.explain(image, ["cat"])
    with pytest.raises(UserError, match="no longer|not found|does not exist|cannot"):
        explainer.explain(tmp_path / "deleted.jpg")  # an image removed since it was listed


def test_a_vision_transformer_is_refused_instead_of_showing_garbage():
    import torch

    from desktop_tl.core.model import TransferModel
    from desktop_tl.plugin.manager import get_host

    provider, name = get_host().resolve_backbone("torchvision:vit_b_16")
    backbone = provider.create(name, "none")  # staged as the plugin stages it for training
    model = TransferModel(backbone.module, torch.nn.Linear(backbone.feature_dim, 2))
    with pytest.raises(ExplanationUnsupported, match="needs a convolutional feature map.*vision transformer"):
        Explainer(model, ["a", "b"], backbone.preprocessing, backbone_name="vit_b_16")


def test_predict_writes_a_table_and_heat_maps(trained, tmp_path, capsys):
    images = tmp_path / "new"
    images.mkdir()
    for path in sorted((trained["photos"] / "val" / "grass").iterdir())[:2]:
        (images / path.name).write_bytes(path.read_bytes())
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    table, maps = tmp_path / "predictions.csv", tmp_path / "maps"
    code = main(
        [
            "predict",
            str(trained["run"]),
            str(images),
            "--top-k",
            "2",
            "--csv",
            str(table),
            "--explain",
            str(maps),
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(table.open()))
    assert [Path(r["path"]).name for r in rows] == sorted(p.name for p in images.iterdir())
    good = [r for r in rows if not r["error"]]
    assert len(good) == 2 and all(r["label_1"] in ("brick", "grass") for r in good)
    assert all(abs(float(r["probability_1"]) + float(r["probability_2"]) - 1) < 1e-5 for r in good)
    assert next(r for r in rows if r["error"])["label_1"] == ""
    written = sorted(p.name for p in maps.iterdir())
    assert len(written) == 2 and all(name.endswith((".brick.png", ".grass.png")) for name in written)
    for name in written:
        source = images / (name.split(".")[0] + ".jpg")
        assert Image.open(maps / name).size == Image.open(source).size


@pytest.mark.parametrize(
    "flag, value, words",
    [
        ("--csv", "predictions.txt", "--csv must name a .csv file"),
        ("--explain", "a-file", "is a file; give a folder"),
    ],
)
def test_predict_output_mistakes_are_refused_before_any_work(trained, tmp_path, capsys, flag, value, words):
    (tmp_path / "a-file").write_text("keep me")
    image = sorted((trained["photos"] / "val" / "grass").iterdir())[0]
    code = main(["predict", str(trained["run"]), str(image), flag, str(tmp_path / value)])
    err = capsys.readouterr().err
    assert code == 2 and words in err
    assert (tmp_path / "a-file").read_text() == "keep me"


@pytest.mark.parametrize(
    "backbone",
    [
        "torchvision:resnet18",
        "torchvision:mobilenet_v3_small",
        "torchvision:efficientnet_b0",
        "torchvision:convnext_tiny",
        "torchvision:regnet_y_400mf",
        "timm:resnet10t.c3_in1k",
    ],
)
def test_every_convolutional_family_gets_a_map_from_its_staged_blocks(backbone, trained):
    import torch

    from desktop_tl.core.model import TransferModel
    from desktop_tl.plugin.manager import get_host

    provider, name = get_host().resolve_backbone(backbone)
    built = provider.create(name, "none")  # the structure is what matters, not the weights
    torch.manual_seed(0)
    model = TransferModel(built.module, torch.nn.Linear(built.feature_dim, 2)).eval()
    explainer = Explainer(model, ["brick", "grass"], built.preprocessing, backbone_name=backbone)
    assert explainer.layer_name.startswith("backbone.")
    image = sorted((trained["photos"] / "val" / "brick").iterdir())[0]
    for explanation in explainer.explain(image, ["brick", "grass"]):
        assert explanation.heatmap.shape == Image.open(image).size[::-1]
        assert np.isfinite(explanation.heatmap).all()
