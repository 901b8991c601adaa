"""Where a timm model's pretrained weights may be on this machine.

The host finds, checks and reads the file; this module only declares the places, in the
order the host tries them after a file the user chose:

1. the Hugging Face cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
   ``~/.cache/huggingface/hub``), where ``timm.create_model(name, pretrained=True)`` and
   ``hf download timm/<name>`` put ``model.safetensors``; the cache names the file's
   content by its sha256, which is declared so that the host checks it;
2. ``<name>.safetensors`` (what ``desktop-tl weights import`` stores) in the torch hub
   cache and the local weights folder, and timm's older release file under its own name
   (``resnet10t_176_c3-f3215ab1.pth``), which is where timm itself keeps it;
3. a download of the Hugging Face file, only when the host allows downloads and
   ``HF_HUB_OFFLINE`` is not set.
"""

from __future__ import annotations

import os
from pathlib import Path

from desktop_tl.plugin import WeightsLocation, WeightsSource, file_name_from_url

from .provider import pretrained_cfg

#: The file timm publishes for every model under ``timm/`` on the Hugging Face hub.
HF_FILE_NAME = "model.safetensors"
#: Release files the host can read safely (timm's .npz and .bin files it cannot).
READABLE_SUFFIXES = (".safetensors", ".pth", ".pt")
_TRUE = {"1", "ON", "YES", "TRUE"}  # how huggingface_hub reads its switches
_HEX = frozenset("0123456789abcdef")


def weights_source(model_name: str) -> WeightsSource:
    """The places above for ``model_name`` (a timm name with its pretrained tag)."""
    cfg = pretrained_cfg(model_name)
    repo, revision = hf_repo(cfg)
    locations: tuple[WeightsLocation, ...] = ()
    cached = hf_cached_file(repo, revision) if repo else None
    if cached is not None:
        locations = (
            WeightsLocation(
                str(cached), "hf-cache", f"Hugging Face cache ({repo})", sha256=hf_blob_sha256(cached)
            ),
        )
    file_names = [f"{model_name}.safetensors"]
    release = release_file_name(cfg)
    if release:
        file_names.append(release)
    return WeightsSource(
        file_names=tuple(file_names),
        locations=locations,
        url=download_url(cfg, repo, revision),
        label=f"timm {model_name}",
        optional_prefixes=classifier_prefixes(cfg),
        hint=way_out(model_name, repo),
    )


def hf_repo(cfg) -> tuple[str | None, str | None]:
    """``("timm/resnet18.a1_in1k", None)``; timm writes a revision as ``repo@rev``."""
    hub_id = getattr(cfg, "hf_hub_id", None)
    if not hub_id:
        return None, None
    repo, _, revision = hub_id.partition("@")
    return repo, revision or None


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at each call (as
    ``huggingface_hub`` resolves it at import) so that a changed setting applies."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        value = os.environ.get(name, "").strip()
        if value:
            return Path(os.path.expandvars(value)).expanduser()
    home = os.environ.get("HF_HOME", "").strip() or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "").strip() or "~/.cache", "huggingface"
    )
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def hf_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) forbids the hub."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in _TRUE


def hf_cached_file(repo: str, revision: str | None) -> Path | None:
    """``model.safetensors`` of ``repo`` in the Hugging Face cache, if it is there (only
    the cache's files are looked at, never the network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, HF_FILE_NAME, cache_dir=hf_cache_dir(), revision=revision)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def hf_blob_sha256(path: Path) -> str | None:
    """The sha256 the Hugging Face cache promises for a file: a large file's snapshot
    entry links to ``blobs/<sha256 of its content>``, so the host can check it. None for
    a copy (caches made without symbolic links) or a small file (named by a git hash)."""
    blob = path.resolve()
    name = blob.name.lower()
    if blob.parent.name == "blobs" and len(name) == 64 and all(c in _HEX for c in name):
        return name
    return None


def download_url(cfg, repo: str | None, revision: str | None) -> str | None:
    """The file the host may download when it allows downloads: the Hugging Face file,
    or timm's release file for the few models not on the hub; none offline."""
    if repo:
        if hf_offline():
            return None
        from huggingface_hub import hf_hub_url

        return hf_hub_url(repo, HF_FILE_NAME, revision=revision)
    return cfg.url if release_file_name(cfg) else None


def release_file_name(cfg) -> str | None:
    """The name of timm's original release file, when the host can read it: timm keeps
    it in the torch hub cache under this name."""
    url = getattr(cfg, "url", None)
    if not url or getattr(cfg, "custom_load", False):
        return None
    name = file_name_from_url(url)
    return name if name.lower().endswith(READABLE_SUFFIXES) else None


def classifier_prefixes(cfg) -> tuple[str, ...]:
    """The classifier's keys may be missing or differ (a file fine-tuned on other
    classes): the backbone drops the classifier anyway."""
    classifier = getattr(cfg, "classifier", None) or ()
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return tuple(f"{name}." for name in names)


def way_out(model_name: str, repo: str | None) -> str:
    """Appended to the host's "no pretrained weights" message."""
    if not repo:
        return ""
    offline = " (HF_HUB_OFFLINE is set, so nothing is downloaded)" if hf_offline() else ""
    return (
        f"Its weights are {HF_FILE_NAME} of the Hugging Face repository {repo}{offline}: "
        f"on a connected machine run `hf download {repo} {HF_FILE_NAME}` and copy that "
        f"machine's Hugging Face cache folder here, or import the file with `desktop-tl weights import "
        f"{HF_FILE_NAME} --model timm:{model_name}`"
    )
