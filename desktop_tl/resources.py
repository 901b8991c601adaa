"""Where the bundled resources (sample dataset, icons) are."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import UserError

DEMO_BACKBONE = "efficientnet_lite:efficientnet_lite0"


def resources_dir() -> Path:
    """``resources/`` beside the package (a source checkout or editable install), or
    ``DTL_RESOURCES`` where an installer put it elsewhere, or ``share/desktop-tl/resources``
    under the environment's prefix, where the wheel's data files go."""
    override = os.environ.get("DTL_RESOURCES")
    if override:
        return Path(override)
    checkout = Path(__file__).resolve().parents[1] / "resources"
    if (checkout.parent / "pyproject.toml").is_file():  # a source checkout
        return checkout
    return Path(sys.prefix) / "share" / "desktop-tl" / "resources"


def sample_dataset_dir() -> Path:
    path = resources_dir() / "sample_dataset"
    if not path.is_dir():
        raise UserError(
            f"the sample dataset is not at {path}; run from a source checkout "
            "or set DTL_RESOURCES to the folder that holds sample_dataset/"
        )
    return path


def demo_config():
    """The demo run: the bundled sample dataset with the demo backbone (EfficientNet-Lite0)
    and its packaged weights, the head only, five epochs in batches of 16. The window's
    demo and ``desktop-tl train --demo`` both start from it."""
    from .core.config import RunConfig

    config = RunConfig()
    # resources_dir(), not sample_dataset_dir(): a missing dataset is explained when used.
    config.data.path = str(resources_dir() / "sample_dataset")
    config.model.backbone = DEMO_BACKBONE
    config.model.weights = "auto"
    config.freeze.preset = "head-only"
    config.train.epochs = 5
    config.train.batch_size = 16
    return config
