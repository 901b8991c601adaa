"""Turn a torchvision classification network into a backbone of named stages.

The engine splits a backbone at stage boundaries: everything before the first trainable
stage runs once and its output can be cached. So a classifier such as torchvision's
ResNet becomes ``nn.Sequential(conv1, bn1, relu, maxpool, layer1, ..., layer4, avgpool,
flatten)``: the very module objects of the original, under their original names (the
backbone's ``layer4.1.conv2`` is the model's ``layer4.1.conv2``), with the final
classifier ``nn.Linear`` left out. Its output is what that Linear received.

A network whose forward is a plain chain of its children is staged explicitly, family by
family. Anything else (a forward with tensor reshuffles between children, such as the
vision transformer's class token) becomes one stage, ``body``: the whole network with its
classifier replaced by ``nn.Identity``. It still trains and freezes layer by layer; only
the partial feature cache is unavailable for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from desktop_tl.plugin.staging import drop_aux_classifiers, final_linear, sequential

if TYPE_CHECKING:  # pragma: no cover - typing only
    from torch import nn


@dataclass
class StagedBackbone:
    """A classification network split into stages, its classifier set aside.

    ``module`` maps ``(N, 3, H, W)`` to ``(N, feature_dim)``. ``classifier`` is the layer
    that was removed (the final ``nn.Linear``; for SqueezeNet its convolutional classifier
    block), so that ``classifier(module(x))`` gives the original logits wherever the
    classifier is a Linear. ``family`` names the staging rule used; ``"fallback"`` means
    one ``body`` stage.
    """

    module: "nn.Sequential"
    feature_dim: int
    classifier: "nn.Module"
    family: str

    @property
    def stage_names(self) -> list[str]:
        return [name for name, _ in self.module.named_children()]

    @property
    def multi_stage(self) -> bool:
        return self.family != "fallback"


def to_staged_backbone(model: "nn.Module") -> StagedBackbone:
    """Stage ``model`` (see the module docstring).

    The backbone shares its modules with ``model``. Auxiliary training classifiers are
    dropped from ``model``; the fallback also replaces the classifier in ``model`` with
    ``nn.Identity``, so ``model`` should not be used as a classifier afterwards.
    """
    drop_aux_classifiers(model)
    for family, matches, build in _families():
        if matches(model):
            module, classifier = build(model)
            return StagedBackbone(module, _in_features(classifier), classifier, family)
    return _fallback(model)


# --------------------------------------------------------------------------- families


def _families() -> list[tuple[str, Callable[["nn.Module"], bool], Callable]]:
    from torchvision import models as tvm

    def isa(*classes: type) -> Callable[["nn.Module"], bool]:
        return lambda model: isinstance(model, classes)

    return [
        ("resnet", isa(tvm.ResNet), _resnet),
        ("regnet", isa(tvm.RegNet), _regnet),
        (
            "features-avgpool-classifier",
            isa(tvm.VGG, tvm.AlexNet, tvm.MobileNetV3, tvm.EfficientNet),
            _features_avgpool,
        ),
        ("mobilenet_v2", isa(tvm.MobileNetV2), _mobilenet_v2),
        ("convnext", isa(tvm.ConvNeXt), _convnext),
        ("mnasnet", isa(tvm.MNASNet), _mnasnet),
        ("densenet", isa(tvm.DenseNet), _densenet),
        ("squeezenet", isa(tvm.SqueezeNet), _squeezenet),
        ("shufflenet_v2", isa(tvm.ShuffleNetV2), _shufflenet),
        ("swin", isa(tvm.SwinTransformer), _swin),
        ("maxvit", isa(tvm.MaxVit), _maxvit),
    ]


def _resnet(model: "nn.Module"):
    from torch import nn

    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")
    stages = [(name, getattr(model, name)) for name in names] + [("flatten", nn.Flatten(1))]
    return sequential(stages), model.fc


def _regnet(model: "nn.Module"):
    from torch import nn

    stages = [(name, getattr(model, name)) for name in ("stem", "trunk_output", "avgpool")]
    return sequential(stages + [("flatten", nn.Flatten(1))]), model.fc


def _features_avgpool(model: "nn.Module"):
    """VGG, AlexNet, MobileNetV3, EfficientNet (v1 and v2): features, avgpool, flatten,
    classifier. Hidden layers of the classifier (VGG's two 4096-wide Linears) stay as a
    stage; only the last Linear goes."""
    from torch import nn

    stages = [("features", model.features), ("avgpool", model.avgpool), ("flatten", nn.Flatten(1))]
    return _with_classifier_prefix(stages, model.classifier)


def _mobilenet_v2(model: "nn.Module"):
    from torch import nn

    stages = [
        ("features", model.features),
        ("avgpool", nn.AdaptiveAvgPool2d((1, 1))),  # functional in the original forward
        ("flatten", nn.Flatten(1)),
    ]
    return _with_classifier_prefix(stages, model.classifier)


def _convnext(model: "nn.Module"):
    # the classifier is LayerNorm2d, Flatten, Linear: the first two stay as a stage
    stages = [("features", model.features), ("avgpool", model.avgpool)]
    return _with_classifier_prefix(stages, model.classifier)


def _mnasnet(model: "nn.Module"):
    from torch import nn

    stages = [
        ("layers", model.layers),
        ("avgpool", nn.AdaptiveAvgPool2d((1, 1))),  # x.mean([2, 3]) in the original
        ("flatten", nn.Flatten(1)),
    ]
    return _with_classifier_prefix(stages, model.classifier)


def _densenet(model: "nn.Module"):
    from torch import nn

    stages = [
        ("features", model.features),
        # functional (and in place) in the original; not in place here so that a cached
        # output of ``features`` is never modified
        ("relu", nn.ReLU()),
        ("avgpool", nn.AdaptiveAvgPool2d((1, 1))),
        ("flatten", nn.Flatten(1)),
    ]
    return sequential(stages), model.classifier


def _squeezenet(model: "nn.Module"):
    """SqueezeNet classifies with a 1x1 convolution over the feature map; the backbone
    gives the pooled feature map instead (512 features), the usual way to transfer it."""
    from torch import nn

    stages = [
        ("features", model.features),
        ("avgpool", nn.AdaptiveAvgPool2d((1, 1))),
        ("flatten", nn.Flatten(1)),
    ]
    return sequential(stages), model.classifier


def _shufflenet(model: "nn.Module"):
    from torch import nn

    names = ("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5")
    stages = [(name, getattr(model, name)) for name in names] + [
        ("avgpool", nn.AdaptiveAvgPool2d((1, 1))),  # x.mean([2, 3]) in the original
        ("flatten", nn.Flatten(1)),
    ]
    return sequential(stages), model.fc


def _swin(model: "nn.Module"):
    names = ("features", "norm", "permute", "avgpool", "flatten")
    return sequential((name, getattr(model, name)) for name in names), model.head


def _maxvit(model: "nn.Module"):
    blocks = sequential((str(i), block) for i, block in enumerate(model.blocks))
    stages = [("stem", model.stem), ("blocks", blocks)]
    return _with_classifier_prefix(stages, model.classifier)


def _with_classifier_prefix(stages: list, classifier: "nn.Module"):
    """Append the classifier block minus its last Linear as a stage named
    ``classifier`` (original child names kept), unless that prefix is only dropout."""
    from torch import nn

    children = list(classifier.named_children())
    last_name, last = children[-1]
    if not isinstance(last, nn.Linear):
        raise ValueError(f"expected the classifier to end with nn.Linear, found {last!r}")
    prefix = children[:-1]
    if any(not isinstance(m, nn.Dropout) for _, m in prefix):
        stages = stages + [("classifier", sequential(prefix))]
    return sequential(stages), last


def _fallback(model: "nn.Module") -> StagedBackbone:
    from torch import nn

    name, linear = final_linear(model)
    parent_name, _, attribute = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if parent is model and not attribute:
        raise ValueError(f"{type(model).__name__} is itself a Linear layer, not a network")
    setattr(parent, attribute, nn.Identity())
    return StagedBackbone(sequential([("body", model)]), linear.in_features, linear, "fallback")


def _in_features(classifier: "nn.Module") -> int:
    from torch import nn

    if isinstance(classifier, nn.Linear):
        return classifier.in_features
    convs = [m for m in classifier.modules() if isinstance(m, nn.Conv2d)]
    if convs:
        return convs[0].in_channels
    raise ValueError(f"cannot tell the feature size from the classifier {classifier!r}")
