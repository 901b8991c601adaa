"""Importing weights files into the local weights folder (``desktop-tl weights import``).

Finding, checking and reading weights is the plugin host's (:mod:`desktop_tl.plugin.weights`,
re-exported here for the engine): providers declare where weights may be, the host reads
them safely. This module adds what only the application does: verifying a file the user
hands over against the model it is for and copying it under its usual name.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..plugin.descriptors import WeightsFileError
from ..plugin.weights import (  # noqa: F401  (the engine's names for the host's helpers)
    ALLOW_DOWNLOAD_ENV,
    SAFETENSORS_SUFFIXES,
    TORCH_SUFFIXES,
    WEIGHTS_DIR_ENV,
    WEIGHTS_SUFFIXES,
    PretrainedWeights,
    downloads_allowed,
    file_name_from_url,
    file_provenance,
    find_local_weights,
    hub_checkpoint_dir,
    load_into_model,
    load_state_dict_file,
    local_file_names,
    local_weights_status,
    no_weights_message,
    not_published_message,
    published_hash_prefix,
    random_provenance,
    resolve_pretrained,
    resolve_weights,
    sha256_file,
    source_status,
    weights_dir,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..plugin.manager import PluginHost


# --------------------------------------------------------------------------- importing


@dataclass
class ImportReport:
    """Where :func:`import_weights_report` put a file, and what the user should know:
    an earlier import it replaced, other weights that ``weights = auto`` uses instead."""

    target: Path
    sha256: str
    notes: list[str] = field(default_factory=list)


def import_weights(path: str | Path, model_name: str | None = None, host: "PluginHost | None" = None) -> Path:
    """:func:`import_weights_report`, returning only the path of the copy."""
    return import_weights_report(path, model_name, host).target


def import_weights_report(
    path: str | Path, model_name: str | None = None, host: "PluginHost | None" = None
) -> ImportReport:
    """Verify a weights file and copy it into :func:`weights_dir` under its usual name.

    The file is read safely (see :func:`load_state_dict_file`) and then loaded into the
    model by its backbone provider, so a file for another model, or one holding NaN,
    infinite or integer values, is refused. A ``.pth`` is stored under a name that
    promises the published file's sha256 only when it is that file. Without
    ``model_name`` the model is recognised from the file name (e.g.
    ``resnet18-f37072fd.pth``).
    """
    source = Path(path).expanduser()
    load_state_dict_file(source)  # fail fast, before building any model
    digest = sha256_file(source)
    prefix = published_hash_prefix(source)
    if prefix and not digest.startswith(prefix):
        raise WeightsFileError(
            f"refused {not_published_message(source, digest, prefix)}. Get the published "
            "file again; or, for other weights, give the file a name of its own and train "
            f"with --weights FILE (recorded as unverified)"
        )
    if host is None:
        from ..plugin.manager import get_host

        host = get_host()
    if model_name:
        provider, model = host.resolve_backbone(model_name)
    else:
        provider, model = host.backbone_for_weights_file(source.name)
    declared = _declared_sha256(provider, model, source.name)
    if declared and digest != declared:
        raise WeightsFileError(
            f"refused {source}: its backbone provider declares the published {source.name} "
            f"to have sha256 {declared}, but this file's is {digest}. Get the published "
            "file again; or, for other weights, give the file a name of its own and train "
            "with --weights FILE (recorded as unverified)"
        )
    provider.create(model, str(source))  # raises WeightsFileError when it does not fit

    usual = list(provider.weight_file_names(model))
    target_name = usual[0] if usual else source.name
    if source.suffix.lower() in SAFETENSORS_SUFFIXES:
        target_name = os.path.splitext(target_name)[0] + ".safetensors"
    elif os.path.splitext(target_name)[1].lower() not in TORCH_SUFFIXES:
        target_name = os.path.splitext(target_name)[0] + source.suffix.lower()
    target = weights_dir() / target_name
    promised = published_hash_prefix(target)
    if promised and not digest.startswith(promised):
        raise WeightsFileError(
            f"refused to store {source} as {target_name}: that name is the published "
            f"weights file's, whose sha256 starts with {promised}, but this file's is "
            f"{digest}, so it would be taken for the published weights. Train from it "
            f"with --weights {source} (recorded as unverified), or import a .safetensors "
            "copy of it (recorded as a copy)"
        )
    report = ImportReport(target, digest)
    if target.exists() and target.resolve() == source.resolve():
        return report
    if target.is_file():
        earlier = sha256_file(target)
        if earlier != digest:
            report.notes.append(f"replaced an earlier import, {target} (sha256 {earlier}), with this file")
    from .atomic import atomic_write

    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
    report.notes.extend(_what_auto_uses(provider, model, target))
    return report


def _declared_sha256(provider: Any, model: str, file_name: str) -> str | None:
    """The sha256 the provider declares for a file of this name, if any."""
    source = getattr(provider, "weights_source", None)
    if source is None:
        return None
    declared = source(model)
    if declared.sha256 and file_name in declared.file_names:
        return declared.sha256.lower()
    return None


def _what_auto_uses(provider: Any, model: str, target: Path) -> list[str]:
    """A note when ``weights = auto`` for ``model`` picks other weights than ``target``
    (the torch hub cache, weights shipped in a package...)."""
    try:
        status = provider.weights_status(model)
    except Exception:  # a provider's status problem must not undo a finished import
        return []
    if not status.path or Path(status.path).resolve() == target.resolve():
        return []
    if status.source == "hub-cache":
        return [
            f"{status.path} in the torch hub cache is found first and will be used "
            "instead; remove it to use the imported file"
        ]
    return [
        f"with weights = auto, {model} uses {status.path} ({status.detail}), not this "
        f"import; to train from the import, pass --weights {target}"
    ]
