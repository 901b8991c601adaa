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
