"""Staging a classification network: the stages reproduce the original features path.

Every torchvision classification model is checked. Its feature size and output shapes are
checked without arithmetic worth the name (the meta device, or for RegNets, whose builder
needs real tensors, uninitialised weights), and the numbers on CPU: one or two models per
family by default, every model with DTL_SLOW_TESTS=1, vision transformers at a small image
size (their staging does not depend on it).
"""

from __future__ import annotations

import contextlib
import os

import pytest
import torch
import torchvision
from torch import nn

from desktop_tl.plugin.staging import final_linear
from dtl_torchvision.staging import StagedBackbone, to_staged_backbone

ALL_MODELS = torchvision.models.list_models(module=torchvision.models)

#: One or two per family, small enough for the default run.
REPRESENTATIVE = {
    "resnet18",
    "regnet_y_400mf",
    "alexnet",
    "vgg11_bn",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "convnext_tiny",
    "mnasnet0_5",
    "densenet121",
    "squeezenet1_1",
    "shufflenet_v2_x0_5",
    "swin_t",
    "maxvit_t",
    "vit_b_32",
    "googlenet",
}
#: Models whose forward is not a chain of their children: one "body" stage.
FALLBACK = {"googlenet", "inception_v3"} | {m for m in ALL_MODELS if m.startswith("vit_")}


def num_params(name: str) -> int:
    return torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"]


def build(name: str, **kwargs) -> nn.Module:
    if name in ("googlenet", "inception_v3"):
        kwargs["init_weights"] = True
    return torchvision.models.get_model(name, weights=None, **kwargs).eval()


#: A vision transformer of four patches: the same stages as at 224 px, far less arithmetic.
def small_vit_size(name: str) -> int:
    return 2 * int(name.split("_")[-1])


@contextlib.contextmanager
def initialisers_skipped():
    """Build without running the weight initialisers, for checks that read shapes only:
    initialising RegNet-128GF's 645M parameters costs more than the whole check."""
    names = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(torch.nn.init, n) for n in names}
    for n in names:
        setattr(torch.nn.init, n, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for n, fn in saved.items():
            setattr(torch.nn.init, n, fn)


def input_size(model: nn.Module, name: str) -> int:
    if hasattr(model, "image_size"):  # vision transformers take one size only
        return model.image_size
    if name.startswith("maxvit"):
        return 224
    if name == "inception_v3":
        return 75  # its smallest input
    return 64


#: The numbers of every other model (the same staging rule as its family's representative,
#: up to 645M parameters each, about a minute in all on a small CPU) with DTL_SLOW_TESTS=1.
ALL_NUMBERS = bool(os.environ.get("DTL_SLOW_TESTS"))


def numeric_case(name: str):
    if name in REPRESENTATIVE:
        return name
    skip = pytest.mark.skipif(not ALL_NUMBERS, reason="set DTL_SLOW_TESTS=1 to compute every model")
    return pytest.param(name, marks=[pytest.mark.slow, skip])


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_stages_to_its_feature_size(name):
    # RegNet's builder computes its widths with tensors, which the meta device cannot read
    # back, so RegNets are built on CPU with their (shape-irrelevant) initialisers skipped.
    on_meta = initialisers_skipped() if name.startswith("regnet") else torch.device("meta")
    with on_meta, torch.no_grad():
        model = build(name)
        x = torch.empty(2, 3, input_size(model, name), input_size(model, name))
        staged = to_staged_backbone(model)
        features = staged.module(x)
    assert isinstance(staged.module, nn.Sequential)
    assert features.shape == (2, staged.feature_dim)
    assert staged.multi_stage == (name not in FALLBACK)
    if name.startswith("squeezenet"):
        assert staged.feature_dim == 512
    else:
        assert isinstance(staged.classifier, nn.Linear)
        assert staged.classifier.in_features == staged.feature_dim
        assert staged.classifier.out_features == 1000
    # no stage of the backbone is the classifier that was removed
    assert all(m is not staged.classifier for m in staged.module.modules())


@pytest.mark.parametrize("name", [numeric_case(n) for n in ALL_MODELS])
def test_staged_backbone_computes_what_the_model_computed(name):
    torch.manual_seed(0)
    model = build(name, image_size=small_vit_size(name)) if name.startswith("vit_") else build(name)
    size = input_size(model, name)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        logits = model(x)
        pooled = model.features(x).mean((2, 3)) if name.startswith("squeezenet") else None
        staged = to_staged_backbone(model)
        features = staged.module(x)
    if pooled is not None:  # SqueezeNet classifies with a convolution: compare features
        torch.testing.assert_close(features, pooled, rtol=1e-4, atol=1e-5)
    else:
        torch.testing.assert_close(staged.classifier(features), logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "name, stages, feature_dim",
    [
        (
            "resnet18",
            ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "flatten"],
            512,
        ),
        ("regnet_y_400mf", ["stem", "trunk_output", "avgpool", "flatten"], 440),
        ("vgg11_bn", ["features", "avgpool", "flatten", "classifier"], 4096),
        ("efficientnet_b0", ["features", "avgpool", "flatten"], 1280),
        ("mobilenet_v3_small", ["features", "avgpool", "flatten", "classifier"], 1024),
        ("convnext_tiny", ["features", "avgpool", "classifier"], 768),
        ("densenet121", ["features", "relu", "avgpool", "flatten"], 1024),
        ("maxvit_t", ["stem", "blocks", "classifier"], 512),
        ("vit_b_16", ["body"], 768),
    ],
)
def test_stage_names_and_parameter_names_are_the_originals(name, stages, feature_dim):
    with contextlib.nullcontext() if name.startswith("regnet") else torch.device("meta"):
        model = build(name)
    original = set(model.state_dict())
    classifier_name, _ = final_linear(model)
    staged = to_staged_backbone(model)
    assert staged.stage_names == stages
    assert staged.feature_dim == feature_dim
    kept = set(staged.module.state_dict())
    if stages == ["body"]:
        assert kept == {f"body.{k}" for k in original if not k.startswith(classifier_name + ".")}
    else:  # the backbone's layer4.1.conv2 is the model's layer4.1.conv2
        assert kept == {k for k in original if not k.startswith(classifier_name + ".")}


def test_stages_are_the_model_s_own_modules():
    model = build("resnet18")
    staged = to_staged_backbone(model)
    assert staged.module.layer4 is model.layer4
    assert staged.classifier is model.fc
    assert staged.module.get_submodule("layer4.1.conv2") is model.layer4[1].conv2


@pytest.mark.parametrize("name, size", [("googlenet", 64), ("inception_v3", 75)])
def test_auxiliary_classifiers_are_dropped_so_training_gives_one_tensor(name, size):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, aux_logits=True, init_weights=True)
    staged = to_staged_backbone(model)
    staged.module.train()
    out = staged.module(torch.randn(2, 3, size, size))
    assert isinstance(out, torch.Tensor) and out.shape == (2, staged.feature_dim)
    assert not any(type(m).__name__ in ("InceptionAux",) for m in staged.module.modules())


class PlainNet(nn.Module):
    """A network no staging rule knows."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.conv(x).amax(dim=(2, 3)))


def test_an_unknown_network_becomes_one_body_stage():
    torch.manual_seed(0)
    model = PlainNet()
    x = torch.randn(3, 3, 16, 16)
    expected = model.conv(x).amax(dim=(2, 3))
    fc = model.fc
    staged = to_staged_backbone(model)
    assert isinstance(staged, StagedBackbone) and staged.family == "fallback"
    assert staged.stage_names == ["body"] and staged.feature_dim == 6
    assert staged.classifier is fc and isinstance(model.fc, nn.Identity)
    torch.testing.assert_close(staged.module(x), expected)


def test_a_network_without_a_linear_classifier_is_refused():
    with pytest.raises(ValueError, match="no nn.Linear"):
        to_staged_backbone(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()))
