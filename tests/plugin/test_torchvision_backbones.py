"""The torchvision backbone provider: model list, preprocessing, offline weights.

torchvision's ImageNet files cannot be downloaded here, so the tests write their own
weight files (a randomly initialised model's state dict under the usual file name) and
check where they are found and that exactly those weights end up in the backbone.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torchvision

import dtl_torchvision
from dtl_torchvision import provider
from helpers_weights import random_state, save_state, sha256
from desktop_tl.plugin.descriptors import (
    Backbone,
    BackboneProvider,
    WeightsFileError,
    WeightsUnavailableError,
)

RESNET18_FILE = "resnet18-f37072fd.pth"
(PROVIDER,) = dtl_torchvision.dtl_backbone_providers()


def assert_backbone_holds(backbone: Backbone, state, skip_prefix: str) -> None:
    """Every backbone tensor equals the saved tensor of the same name."""
    loaded = backbone.module.state_dict()
    expected = {k: v for k, v in state.items() if not k.startswith(skip_prefix)}
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


# --------------------------------------------------------------------------- the provider


def test_the_hook_offers_one_provider_with_every_classification_model():
    (tv,) = dtl_torchvision.dtl_backbone_providers()
    assert isinstance(tv, BackboneProvider) and tv.id == "torchvision"
    assert dtl_torchvision.DTL_API_VERSION == "1.1"
    models = tv.list_models()
    assert set(models) == set(torchvision.models.list_models(module=torchvision.models))
    assert "resnet18" in models and "vit_b_16" in models
    assert "fasterrcnn_resnet50_fpn" not in models and "r3d_18" not in models


def test_weight_file_names_are_torchvision_s():
    assert PROVIDER.weight_file_names("resnet18") == [RESNET18_FILE]
    assert PROVIDER.weight_file_names("efficientnet_b0") == ["efficientnet_b0_rwightman-7f5810bc.pth"]


def test_an_unknown_model_gets_suggestions():
    with pytest.raises(Exception, match="no classification model named 'resnet19'.*resnet18"):
        PROVIDER.create("resnet19", "none")


def test_preprocessing_comes_from_the_default_weights():
    assert provider.preprocessing_of(torchvision.models.ResNet18_Weights.DEFAULT).to_dict() == {
        "resize": 256,
        "crop": 224,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "interpolation": "bilinear",
    }
    b0 = provider.preprocessing_of(torchvision.models.EfficientNet_B0_Weights.DEFAULT)
    assert (b0.resize, b0.crop, b0.interpolation) == (256, 224, "bicubic")


# --------------------------------------------------------------------------- random init


def test_random_initialisation_is_explicit_and_labelled(places):
    backbone = PROVIDER.create("resnet18", "none")
    assert backbone.provenance.source == "random" and backbone.provenance.pretrained is False
    assert backbone.provenance.path is None and backbone.provenance.sha256 is None
    assert backbone.feature_dim == 512
    assert [n for n, _ in backbone.module.named_children()][-3:] == ["layer4", "avgpool", "flatten"]
    # preprocessing and categories still come from the weights' description
    assert (backbone.preprocessing.resize, backbone.preprocessing.crop) == (256, 224)
    assert len(backbone.categories) == 1000 and backbone.categories[0] == "tench"
    out = backbone.module.eval()(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 512)


def test_no_weights_on_the_machine_is_a_clear_state(places):
    status = PROVIDER.weights_status("resnet18")
    assert not status.available and status.source == "missing"
    with pytest.raises(WeightsUnavailableError) as info:
        PROVIDER.create("resnet18", "auto")
    assert str(info.value) == (
        "No pretrained weights for resnet18 on this machine. Import a weights file "
        "(desktop-tl weights import FILE --model resnet18), put resnet18-f37072fd.pth in "
        f"{places['weights']}, or choose random initialisation (--weights none)"
    )
    assert status.detail == str(info.value)


def test_downloads_are_announced_only_when_allowed(places, monkeypatch):
    monkeypatch.setenv("DTL_ALLOW_DOWNLOAD", "1")
    status = PROVIDER.weights_status("resnet18")
    assert (status.available, status.source) == (True, "download")
    assert "download.pytorch.org" in status.detail


# --------------------------------------------------------------------------- offline files


def test_weights_folder_file_is_loaded_with_provenance(places):
    state = random_state("resnet18", seed=1)
    path = save_state(state, places["weights"] / RESNET18_FILE.replace(".pth", ".safetensors"))

    status = PROVIDER.weights_status("resnet18")
    assert (status.available, status.source, status.path) == (True, "weights-dir", str(path))
    backbone = PROVIDER.create("resnet18", "auto")
    provenance = backbone.provenance
    assert (provenance.source, provenance.pretrained) == ("weights-dir", True)
    assert provenance.path == str(path.resolve()) and provenance.sha256 == sha256(path)
    assert "ResNet18_Weights.IMAGENET1K_V1" in provenance.detail
    assert_backbone_holds(backbone, state, "fc.")
    assert len(backbone.categories) == 1000


def test_the_hub_cache_is_looked_at_first(places):
    save_state(
        random_state("resnet18", seed=2), places["weights"] / RESNET18_FILE.replace(".pth", ".safetensors")
    )
    hub_state = random_state("resnet18", seed=3)
    path = save_state(hub_state, places["hub"] / RESNET18_FILE.replace(".pth", ".safetensors"))
    backbone = PROVIDER.create("resnet18", "auto")
    assert backbone.provenance.source == "hub-cache"
    assert backbone.provenance.path == str(path.resolve())
    assert_backbone_holds(backbone, hub_state, "fc.")


def test_a_chosen_safetensors_file_wins(places, tmp_path):
    save_state(random_state("resnet18", seed=2), places["hub"] / RESNET18_FILE)
    state = random_state("resnet18", seed=4)
    path = save_state(state, tmp_path / "lab" / "resnet18-finetuned.safetensors")
    backbone = PROVIDER.create("resnet18", str(path))
    assert (backbone.provenance.source, backbone.provenance.path) == ("file", str(path.resolve()))
    assert backbone.provenance.sha256 == sha256(path)
    assert_backbone_holds(backbone, state, "fc.")


def test_a_model_fine_tuned_on_other_classes_still_gives_its_features(places, tmp_path):
    state = random_state("resnet18", seed=5, num_classes=7)
    path = save_state(state, tmp_path / "seven-classes.pth")
    backbone = PROVIDER.create("resnet18", str(path))
    assert_backbone_holds(backbone, state, "fc.")
    assert backbone.categories is None  # its classes are not ImageNet's


def test_weights_of_another_model_are_refused_naming_keys(places, tmp_path):
    path = save_state(random_state("resnet34"), tmp_path / "resnet34.pth")
    with pytest.raises(WeightsFileError, match=r"do not fit.*unexpected key\(s\) \(layer1\.2\."):
        PROVIDER.create("resnet18", str(path))


def test_an_unsafe_pickle_is_refused_and_nothing_runs(places, tmp_path):
    class WritesMarker:
        def __reduce__(self):
            return (open, (str(tmp_path / "payload-ran"), "w"))

    path = tmp_path / RESNET18_FILE
    torch.save({"state_dict": random_state("resnet18"), "hook": WritesMarker()}, path)
    with pytest.raises(WeightsFileError, match="refused"):
        PROVIDER.create("resnet18", str(path))
    assert not (tmp_path / "payload-ran").exists()


# --------------------------------------------------------------------------- family quirks


def test_densenet_files_with_the_published_old_key_names_load(places):
    """download.pytorch.org's DenseNet files name layers ``norm.1``; the model ``norm1``."""
    state = random_state("densenet121", seed=6)
    # as published (2017): old names, and no BatchNorm batch counters
    old_style = OrderedDict(
        (_old_densenet_key(k), v) for k, v in state.items() if "num_batches_tracked" not in k
    )
    assert "features.denseblock1.denselayer1.norm.1.weight" in old_style
    save_state(
        old_style,
        places["weights"] / PROVIDER.weight_file_names("densenet121")[0].replace(".pth", ".safetensors"),
    )
    backbone = PROVIDER.create("densenet121", "auto")
    loaded = backbone.module.state_dict()
    for key, value in state.items():
        if not key.startswith("classifier.") and "num_batches_tracked" not in key:
            assert torch.equal(loaded[key], value), key


def _old_densenet_key(key: str) -> str:
    import re

    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_mnasnet_loads_with_and_without_its_version_tag(places, tmp_path, suffix):
    """safetensors files carry no module versions, which MNASNet otherwise insists on."""
    state = random_state("mnasnet0_5", seed=7)
    path = save_state(state, tmp_path / f"mnasnet{suffix}")
    backbone = PROVIDER.create("mnasnet0_5", str(path))
    assert_backbone_holds(backbone, state, "classifier.")


def test_googlenet_loads_files_with_auxiliary_classifiers_and_drops_them(places):
    state = random_state("googlenet", seed=8, aux_logits=True, init_weights=True)
    assert any(k.startswith("aux1.") for k in state)
    save_state(
        state, places["hub"] / PROVIDER.weight_file_names("googlenet")[0].replace(".pth", ".safetensors")
    )
    backbone = PROVIDER.create("googlenet", "auto")
    body = backbone.module.body
    assert body.transform_input is True  # as the published weights expect
    assert body.aux1 is None and body.aux2 is None
    loaded = backbone.module.state_dict()
    for key, value in state.items():
        if not key.startswith(("aux1.", "aux2.", "fc.")):
            assert torch.equal(loaded[f"body.{key}"], value)
    backbone.module.train()
    assert backbone.module(torch.randn(2, 3, 64, 64)).shape == (2, 1024)


def test_models_are_shaped_as_their_default_weights_need():
    with torch.device("meta"):
        vit_h = provider.build_model("vit_h_14", pretrained=True)
        inception = provider.build_model("inception_v3", pretrained=True)
    assert vit_h.image_size == 518  # its DEFAULT (SWAG) weights are for 518 px
    assert inception.transform_input is True and inception.AuxLogits is not None
    assert provider.preprocessing_of(torchvision.models.ViT_H_14_Weights.DEFAULT).crop == 518
