"""Where the bundled resources (sample dataset, icons) are."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError

DEMO_BACKBONE = "efficientnet_lite:efficientnet_lite0"


def resources_dir() -> Path:
    """``resources/`` beside the package (a source checkout or editable install), or
    ``DTL_RESOURCES`` where an installer put it elsewhere."""
    override = os.environ.get("DTL_RESOURCES")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1] / "resources"


def sample_dataset_dir() -> Path:
    path = resources_dir() / "sample_dataset"
    if not path.is_dir():
        raise UserError(
            f"the sample dataset is not at {path}; run from a source checkout "
            "or set DTL_RESOURCES to the folder that holds sample_dataset/"
        )
    return path
