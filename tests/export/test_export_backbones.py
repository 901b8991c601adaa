"""Every shipped backbone family exports to ONNX and passes parity, with both heads.

torchvision backbones start from random weights (none can be downloaded here); what is
checked is the export, which does not depend on the weights' values."""

from __future__ import annotations

import json
import os

import pytest

from desktop_tl.core.export import export
from desktop_tl.core.training import Trainer

from helpers_training import lite0_config, sample_subset

#: The larger backbones take minutes on a small CPU; they run with DTL_SLOW_TESTS=1.
SLOW = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("DTL_SLOW_TESTS"), reason="set DTL_SLOW_TESTS=1 to export every backbone"
    ),
]

CASES = [
    ("efficientnet_lite0", "mlp", SLOW),  # linear: test_export.py
    ("torchvision:mobilenet_v3_small", "linear", []),
    ("torchvision:resnet18", "mlp", SLOW),
    ("torchvision:efficientnet_b0", "linear", SLOW),
    ("torchvision:regnet_y_400mf", "mlp", SLOW),
    ("torchvision:convnext_tiny", "linear", SLOW),
    ("torchvision:vit_b_16", "mlp", SLOW),
]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return sample_subset(tmp_path_factory.mktemp("photos"), n_train=2, n_val=2)


@pytest.mark.parametrize("backbone, head", [pytest.param(b, h, marks=m, id=f"{b}-{h}") for b, h, m in CASES])
def test_backbone_exports_to_onnx_with_parity(backbone, head, photos, tmp_path):
    config = lite0_config(photos, tmp_path / "run", epochs=1, batch_size=4, device="cpu")
    config.model.backbone = backbone
    config.model.head = head
    if backbone.startswith("torchvision:"):
        config.model.weights = "none"
    finished = Trainer(config).run()
    assert finished.status == "completed", finished.reason

    result = export(tmp_path / "run", "onnx", out=tmp_path / "bundle", max_parity_images=4)
    check = result.parity[0]
    assert check.passed and check.images == 4 and check.top1_agreement == 1.0
    assert check.max_abs_logit_diff <= check.tolerance
    print(f"{backbone}+{head}: max |logit diff| {check.max_abs_logit_diff:.3g}")
    assert json.loads((tmp_path / "bundle" / "labels.json").read_text()) == ["brick", "grass"]
