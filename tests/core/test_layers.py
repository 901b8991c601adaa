"""The layer tree and freezing, on a small real convolutional network."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from desktop_tl.core.layers import (
    FreezeError,
    apply_freeze,
    apply_freeze_map,
    backbone_chain,
    backbone_stage_names,
    count_params,
    layer_tree,
    set_train_mode,
    trainable_state,
)
from desktop_tl.core.model import TransferModel


def small_model() -> TransferModel:
    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    backbone = nn.Sequential(
        OrderedDict(
            stem=block(3, 8),
            blocks=nn.Sequential(block(8, 8), block(8, 16), block(16, 16)),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
        )
    )
    return TransferModel(backbone, nn.Sequential(nn.Dropout(0.5), nn.Linear(16, 3)))


def test_tree_lists_every_module_with_counts():
    model = small_model()
    tree = layer_tree(model)
    names = [node.name for node in tree.walk()]
    assert names[0] == "" and "backbone.blocks.2.0" in names and "head.1" in names
    assert tree.total_params == sum(p.numel() for p in model.parameters())
    conv = next(n for n in tree.walk() if n.name == "backbone.stem.0")
    assert conv.type_name == "Conv2d" and conv.total_params == 3 * 8 * 9


def test_chain_expands_plain_sequential_stages_one_level():
    model = small_model()
    names = [name for name, _ in backbone_chain(model)]
    # "blocks" holds blocks and is expanded; "stem" holds single layers and stays whole
    assert "backbone.blocks.0" in names and "backbone.blocks.2" in names
    assert "backbone.stem" in names and "backbone.stem.0" not in names
    assert names[-2:] == ["backbone.pool", "backbone.flatten"]
    x = torch.randn(2, 3, 16, 16)
    model.eval()
    out = x
    for _, module in backbone_chain(model):
        out = module(out)
    assert torch.allclose(out, model.backbone(x))
    assert backbone_stage_names(model)[-1] == "backbone.blocks.2"


def test_presets():
    model = small_model()
    apply_freeze(model, "head-only")
    trainable, total = count_params(model)
    assert trainable == sum(p.numel() for p in model.head.parameters())
    apply_freeze(model, "last:1")
    assert all(p.requires_grad for p in model.backbone.blocks[2].parameters())
    assert not any(p.requires_grad for p in model.backbone.blocks[1].parameters())
    apply_freeze(model, "none")
    assert count_params(model) == (total, total)


def test_deeper_override_wins_and_state_round_trips():
    model = small_model()
    apply_freeze(model, "head-only", {"backbone.blocks": True, "backbone.blocks.1": False})
    assert all(p.requires_grad for p in model.backbone.blocks[0].parameters())
    assert not any(p.requires_grad for p in model.backbone.blocks[1].parameters())
    state = trainable_state(model)
    other = small_model()
    apply_freeze_map(other, state)
    assert [p.requires_grad for p in other.parameters()] == [p.requires_grad for p in model.parameters()]
    assert layer_tree(model).children[0].state == "partial"


def test_unknown_layer_is_refused_with_its_name():
    with pytest.raises(FreezeError, match="backbone.nope"):
        apply_freeze_map(small_model(), {"backbone.nope": True})


def test_frozen_batchnorm_keeps_running_statistics_in_training():
    model = small_model()
    apply_freeze(model, "last:1")
    set_train_mode(model)
    frozen_bn = model.backbone.blocks[0][1]
    trained_bn = model.backbone.blocks[2][1]
    before_frozen = frozen_bn.running_mean.clone()
    before_trained = trained_bn.running_mean.clone()
    model(torch.randn(4, 3, 16, 16) * 3 + 1)
    assert not frozen_bn.training and torch.equal(frozen_bn.running_mean, before_frozen)
    assert trained_bn.training and not torch.equal(trained_bn.running_mean, before_trained)
    assert model.head.training  # the head's dropout still trains
