"""The linear and MLP heads: options, layer names, bad options, and that they learn."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import dtl_heads
from desktop_tl.errors import UserError
from desktop_tl.plugin.descriptors import HeadType


@pytest.fixture(scope="module")
def heads() -> dict[str, HeadType]:
    return {head.id: head for head in dtl_heads.dtl_head_types()}


def test_the_hook_offers_linear_and_mlp_with_typed_options(heads):
    assert dtl_heads.DTL_API_VERSION == "1.0"
    assert set(heads) == {"linear", "mlp"}
    assert heads["linear"].defaults() == {"dropout": 0.0}
    assert heads["mlp"].defaults() == {"hidden_sizes": [256], "dropout": 0.2, "activation": "relu"}
    kinds = {opt.name: opt.kind for opt in heads["mlp"].options}
    assert kinds == {"hidden_sizes": "int_list", "dropout": "float", "activation": "choice"}
    (activation,) = [opt for opt in heads["mlp"].options if opt.name == "activation"]
    assert activation.choices == ("relu", "gelu", "silu")


def test_linear_head_layers(heads):
    head = heads["linear"].build(1280, 5)
    assert [n for n, _ in head.named_children()] == ["dropout", "fc"]
    assert head.dropout.p == 0.0 and (head.fc.in_features, head.fc.out_features) == (1280, 5)
    assert heads["linear"].build(8, 3, dropout=0.5).dropout.p == 0.5
    assert head(torch.randn(4, 1280)).shape == (4, 5)


def test_mlp_head_layers(heads):
    default = heads["mlp"].build(512, 3)
    assert [n for n, _ in default.named_children()] == ["fc1", "act1", "dropout1", "out"]
    assert isinstance(default.act1, nn.ReLU) and default.dropout1.p == 0.2
    assert default.fc1.out_features == 256 and default.out.in_features == 256

    custom = heads["mlp"].build(64, 10, hidden_sizes=[32, 16], dropout=0.1, activation="gelu")
    assert [n for n, _ in custom.named_children()] == [
        "fc1",
        "act1",
        "dropout1",
        "fc2",
        "act2",
        "dropout2",
        "out",
    ]
    assert isinstance(custom.act2, nn.GELU)
    widths = [custom.fc1.out_features, custom.fc2.out_features, custom.out.out_features]
    assert widths == [32, 16, 10]
    assert isinstance(heads["mlp"].build(4, 2, activation="silu").act1, nn.SiLU)
    # text from a command line or a text field
    assert heads["mlp"].build(64, 2, hidden_sizes="48, 24").fc2.out_features == 24


@pytest.mark.parametrize(
    "head_id, options, message",
    [
        (
            "linear",
            {"hidden_sizes": [8]},
            "head 'linear' has no option 'hidden_sizes'; its options are: dropout",
        ),
        ("mlp", {"dropuot": 0.1}, "has no option 'dropuot'"),
        ("mlp", {"hidden_sizes": [64, -8]}, "at least 1, got -8"),
        ("mlp", {"hidden_sizes": [0]}, "at least 1, got 0"),
        ("mlp", {"hidden_sizes": []}, "non-empty list"),
        ("mlp", {"hidden_sizes": [12.5]}, "whole numbers"),
        ("mlp", {"hidden_sizes": "wide"}, "whole numbers"),
        ("mlp", {"dropout": 1.0}, "dropout must be from 0 up to"),
        ("mlp", {"dropout": -0.1}, "dropout must be from 0 up to"),
        ("linear", {"dropout": "lots"}, "dropout must be a number"),
        ("mlp", {"activation": "tanh"}, "activation must be one of relu, gelu, silu"),
    ],
)
def test_bad_options_are_clear_user_errors(heads, head_id, options, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[")):
        heads[head_id].build(32, 4, **options)


def test_bad_sizes_are_refused(heads):
    with pytest.raises(UserError, match="num_classes must be a positive whole number"):
        heads["linear"].build(32, 0)


@pytest.mark.parametrize("head_id, options", [("linear", {}), ("mlp", {"hidden_sizes": [32]})])
def test_heads_learn_to_classify_digits(heads, head_id, options):
    """Trained on scikit-learn's 8x8 digits (64 pixel features), each head classifies
    held-out digits well: they are real, trainable classifiers."""
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    train, test = slice(0, 1400), slice(1400, None)
    torch.manual_seed(0)
    head = heads[head_id].build(64, 10, **options)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    head.train()
    for _ in range(150):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(head(x[train]), y[train])
        loss.backward()
        optimizer.step()
    head.eval()
    with torch.no_grad():
        accuracy = (head(x[test]).argmax(1) == y[test]).float().mean().item()
    assert accuracy > 0.85
