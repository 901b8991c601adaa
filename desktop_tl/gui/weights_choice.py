"""What a backbone's weights choice means: the line the model panel shows for it, and
whether training can start with it.

The choice is "auto" (the pretrained weights the provider finds on this machine), "none"
(random initialisation, said as a warning) or a file the user chose. Where no weights
are found, the engine's detail is worded for the command line; the line says it with the
panel's buttons (Import weights…, Random initialisation) and keeps the detail, which
names the folder, as its tooltip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError

SOURCE_TEXT = {
    "package": "shipped in an installed Python package",
    "hub-cache": "found in the torch hub cache",
    "weights-dir": "found in the local weights folder",
    "download": "downloaded when training starts",
    "file": "from the chosen file",
}


@dataclass(frozen=True)
class WeightsLine:
    """What the weights line says about one choice."""

    level: str  # a Notice level: "good", "warning" or "error"
    text: str
    can_import: bool  # whether Import weights… is offered
    status: Any = None  # the provider's WeightsStatus, when it was asked
    tooltip: str | None = None  # None: the line keeps the tooltip it has
    plugin_error: str = ""  # a plugin that failed to answer, for the log


def describe_weights(host: Any, backbone: str, choice: str) -> WeightsLine:
    """The line for ``choice`` ("auto", "none" or a file path) of ``backbone``
    ("provider:model"), asking ``host`` (the plugin host) where "auto" finds weights."""
    if choice == "none":
        return WeightsLine(
            "warning",
            "Random initialisation: the backbone starts untrained. "
            "Expect to need many more images and epochs.",
            can_import=False,
        )
    if choice != "auto":
        if Path(choice).is_file():
            return WeightsLine(
                "good",
                f"Pretrained, from the file {choice} (your choice: it loads "
                "even if its sha256 fails a check, recorded as unverified)",
                can_import=True,
            )
        return WeightsLine("error", f"The weights file {choice} does not exist.", can_import=True)
    try:
        provider, model_name = host.resolve_backbone(backbone)
        status = provider.weights_status(model_name)
    except UserError as exc:
        return WeightsLine("error", str(exc), can_import=False)
    except Exception as exc:  # a plugin's bug: say so, keep the window working
        return WeightsLine(
            "error",
            f"The backbone plugin failed to report its weights: {exc}",
            can_import=True,
            plugin_error=f"weights_status({backbone}) raised {exc!r}",
        )
    if status.available:
        text = f"Pretrained ({SOURCE_TEXT.get(status.source, status.source)})"
        if status.detail:
            text += f": {status.detail}"
        return WeightsLine("good", text, can_import=False, status=status, tooltip=status.path or "")
    try:
        usual = list(provider.weight_file_names(model_name))
    except Exception:  # a plugin's listing problem must not hide the message
        usual = []
    example = f" (usually named {usual[0]})" if usual else ""
    return WeightsLine(
        "error",
        f"No pretrained weights for {model_name} on this machine. "
        f"Use Import weights… to add a weights file{example}, or tick Random "
        "initialisation to train from scratch.",
        can_import=True,
        status=status,
        tooltip=status.detail,
    )


def weights_ready(choice: str, status: Any) -> tuple[bool, str]:
    """Whether training can start with ``choice`` (``status``: what the provider said
    for "auto", None while it has not been asked), and why not."""
    if choice == "none":
        return True, ""
    if choice != "auto":
        return Path(choice).is_file(), f"the weights file {choice} does not exist"
    if status is None:
        return False, "the backbone's weights have not been checked yet"
    if status.available:
        return True, ""
    return False, (
        "no pretrained weights for this backbone on this machine: "
        "import weights or tick Random initialisation"
    )
