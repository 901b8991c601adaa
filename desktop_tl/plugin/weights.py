"""Pretrained weights, found and read by the host, offline first.

A backbone provider only *declares* where its weights may be (a
:class:`~desktop_tl.plugin.descriptors.WeightsSource`: usual file names, files at known
places such as inside a package, an optional URL and its sha256). The host finds them,
checks them and reads them safely, and hands the provider's ``build`` a
:class:`PretrainedWeights` to load into its network; loading checks every key and shape.
So no plugin reads a weights file itself, and every provider gets the same integrity rules.

Where the host looks, in order, each step recorded as
:class:`~desktop_tl.plugin.descriptors.WeightsProvenance`:

1. a file the user chose (``.safetensors``, or ``.pth``/``.pt`` read with
   ``torch.load(weights_only=True)``; a file that needs unrestricted unpickling is refused
   and nothing in it runs). A chosen file that fails an integrity check still loads,
   recorded as *unverified*: the user asked for it by name;
2. the files the source names at known places (``WeightsSource.locations``: a package, a
   model hub's cache);
3. the torch hub cache, ``torch.hub.get_dir()/checkpoints/<file name>``;
4. the local weights folder (``DTL_WEIGHTS_DIR``, else the user data folder), where a lab
   drops files under their usual names or ``desktop-tl weights import`` copies them;
5. a download of ``WeightsSource.url``, only when ``DTL_ALLOW_DOWNLOAD=1``;
6. otherwise :class:`WeightsUnavailableError` saying the way out. A random initialisation
   happens only when asked for (``weights="none"``) and is labelled as such.

Integrity: a ``.pth``/``.pt`` file named ``name-<sha256 prefix>.ext`` (torch hub's
convention) must hash to that prefix, and a file the source declares a ``sha256`` for must
hash to it; otherwise it is refused with both values in the message.

For plugin authors the names that matter are :class:`PretrainedWeights` (what ``build``
receives), :func:`file_name_from_url` and :func:`weights_dir`; the rest is the host's.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from .descriptors import (
    WeightsFileError,
    WeightsProvenance,
    WeightsSource,
    WeightsStatus,
    WeightsUnavailableError,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from torch import Tensor, nn

WEIGHTS_DIR_ENV = "DTL_WEIGHTS_DIR"
ALLOW_DOWNLOAD_ENV = "DTL_ALLOW_DOWNLOAD"
SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pth", ".pt")
WEIGHTS_SUFFIXES = SAFETENSORS_SUFFIXES + TORCH_SUFFIXES
#: Keys under which training scripts commonly nest the state dict in a checkpoint.
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
#: torchvision / torch hub file names end in ``-<first hex digits of the sha256>.<ext>``.
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.[A-Za-z0-9]+$")
#: How torch's weights-only unpickler names the object it would not build.
_UNSAFE_GLOBAL = re.compile(r"Unsupported (?:global|class): (?:GLOBAL )?([\w.]+)")


# --------------------------------------------------------------------------- places


def weights_dir() -> Path:
    """The local weights folder: ``DTL_WEIGHTS_DIR``, else ``<user data dir>/weights``."""
    configured = os.environ.get(WEIGHTS_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("desktop_tl", appauthor=False)) / "weights"


def hub_checkpoint_dir() -> Path:
    """Where torch hub (and so torchvision) keeps downloaded checkpoints."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def downloads_allowed() -> bool:
    """Whether step 4 may download weights (``DTL_ALLOW_DOWNLOAD=1``). Off by default:
    an offline lab machine must not hang on a network timeout."""
    from ..env import env_flag

    return env_flag(ALLOW_DOWNLOAD_ENV)


def file_name_from_url(url: str) -> str:
    """The file name torch hub stores a download under (the last path component)."""
    from urllib.parse import urlparse

    return os.path.basename(urlparse(url).path)


def local_file_names(file_name: str) -> list[str]:
    """The names a weights file may have locally: the usual one, and the same stem as
    ``.safetensors`` (what ``weights import`` writes for a safetensors file)."""
    stem, suffix = os.path.splitext(file_name)
    names = [file_name]
    if suffix != ".safetensors":
        names.append(stem + ".safetensors")
    return names


def find_local_weights(file_names: Sequence[str]) -> tuple[str, Path] | None:
    """The first existing file among ``file_names`` in the hub cache, then in the local
    weights folder, as ``(source, path)`` with source ``"hub-cache"`` or ``"weights-dir"``.
    Only checks that files exist: fast enough for listing every model."""
    for source, folder in (("hub-cache", hub_checkpoint_dir()), ("weights-dir", weights_dir())):
        for file_name in file_names:
            for name in local_file_names(file_name):
                path = folder / name
                if path.is_file():
                    return source, path
    return None


# --------------------------------------------------------------------------- reading


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_state_dict_file(path: str | Path) -> dict[str, "Tensor"]:
    """Read a state dict safely: ``.safetensors``, or ``.pth``/``.pt`` with
    ``torch.load(weights_only=True)``, never unrestricted unpickling.

    Checkpoints that nest the state dict under ``state_dict``, ``model`` or
    ``model_state_dict`` are unwrapped. Raises :class:`WeightsFileError` for a missing,
    unreadable or unsafe file, or one that holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"weights file {path} does not exist (give a .safetensors, .pth or .pt file)")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            loaded: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsFileError(
                f"cannot read weights file {path} as safetensors: {_first_line(exc)}"
            ) from None
    elif suffix in TORCH_SUFFIXES:
        loaded = _torch_load_weights_only(path)
    else:
        raise WeightsFileError(
            f"weights file {path} has the extension {path.suffix or '(none)'!r}; "
            "use a .safetensors, .pth or .pt file"
        )
    return _as_state_dict(loaded, path)


def _torch_load_weights_only(path: Path) -> Any:
    import pickle

    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses anything beyond tensors and plain containers *before*
        # constructing it, so nothing in the file has run.
        refused = _UNSAFE_GLOBAL.search(str(exc))
        if refused is None:
            detail = str(exc).partition("WeightsUnpickler error:")[2].strip()
            reason = detail.splitlines()[0] if detail else _torch_reason(exc)
            raise WeightsFileError(
                f"cannot read weights file {path} with torch.load(weights_only=True): it is "
                f"damaged or holds more than tensors ({reason}); nothing in it was run"
            ) from None
        raise WeightsFileError(
            f"refused weights file {path}: it needs unrestricted unpickling (it refers to "
            f"{refused.group(1)}), which could run code hidden in the file, so it was not "
            "loaded. Save only the tensors instead, e.g. "
            "torch.save(model.state_dict(), 'weights.pth'), or use a .safetensors file"
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as exc:
        if "TorchScript" in str(exc):
            raise WeightsFileError(
                f"weights file {path} is a TorchScript archive (torch.jit.save), not a state "
                "dict; save the weights with torch.save(model.state_dict(), 'weights.pth') "
                "or use a .safetensors file"
            ) from None
        # torch raises these for truncated or foreign files (not a zip, a bad record...)
        raise WeightsFileError(
            f"cannot read weights file {path}: it is damaged or not a PyTorch weights file "
            f"({_torch_reason(exc)})"
        ) from None


def _as_state_dict(loaded: Any, path: Path) -> dict[str, "Tensor"]:
    import torch

    for key in WRAPPER_KEYS:
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
            break
    if not isinstance(loaded, Mapping):
        raise WeightsFileError(
            f"weights file {path} holds a {type(loaded).__name__}, not a state dict "
            "(a mapping of parameter names to tensors)"
        )
    tensors = {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        keys = ", ".join(repr(k) for k in list(loaded)[:5])
        raise WeightsFileError(
            f"weights file {path} holds no tensors (keys: {keys or 'none'}); "
            "expected a state dict such as torch.save(model.state_dict(), ...) writes"
        )
    # A model saved from nn.DataParallel / DistributedDataParallel prefixes every key.
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    state_dict: dict[str, Tensor] = OrderedDict(tensors)
    metadata = getattr(loaded, "_metadata", None)  # module versions some models read
    if metadata is not None:
        state_dict._metadata = metadata  # type: ignore[attr-defined]
    return state_dict


def load_into_model(
    model: "nn.Module",
    state_dict: Mapping[str, "Tensor"],
    source: str | None,
    *,
    optional_prefixes: Sequence[str] = (),
) -> list[str]:
    """Load ``state_dict`` into ``model``, every key accounted for, turning a mismatch
    into a :class:`WeightsFileError` that names a few offending keys.

    ``source`` says where the weights came from (a path), for the message. Keys under
    ``optional_prefixes`` (e.g. the classifier that the backbone drops anyway) may be
    missing from the file or have other shapes there; those are then not loaded and their
    names are returned. A missing BatchNorm ``num_batches_tracked`` counter is allowed.
    """
    expected = model.state_dict()
    skipped = [
        key
        for key in expected
        if key.startswith(tuple(optional_prefixes))
        and (key not in state_dict or tuple(state_dict[key].shape) != tuple(expected[key].shape))
    ]
    if skipped:
        kept = OrderedDict(
            (k, v) for k, v in state_dict.items() if not k.startswith(tuple(optional_prefixes))
        )
        metadata = getattr(state_dict, "_metadata", None)
        if metadata is not None:
            kept._metadata = metadata  # type: ignore[attr-defined]
        state_dict = kept
        expected = OrderedDict(
            (k, v) for k, v in expected.items() if not k.startswith(tuple(optional_prefixes))
        )
    where = source or "the weights file"
    _check_values(expected, state_dict, where)
    problems = _mismatch(expected, state_dict)
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # size mismatches raise even when not strict
        raise WeightsFileError(
            f"the weights in {where} do not fit this model: "
            + (problems or _first_line(exc))
            + ". Is the file for a different model?"
        ) from None
    # BatchNorm's batch counter is absent from checkpoints older than PyTorch 0.4.1 (and
    # from some conversions); it only matters for momentum=None, so the model's is kept.
    missing = [k for k in result.missing_keys if k not in skipped and not k.endswith(".num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise WeightsFileError(
            f"the weights in {where} do not fit this model: "
            + (problems or _describe_keys(missing, result.unexpected_keys))
            + ". Is the file for a different model?"
        )
    return skipped


def _check_values(expected: Mapping[str, "Tensor"], given: Mapping[str, "Tensor"], where: str) -> None:
    """Refuse values that would load without complaint and then ruin training: integer
    tensors where the model has floating ones (load_state_dict silently converts them),
    and NaN or infinite values (they surface later as a loss of NaN, which looks like a
    learning-rate problem)."""
    import torch

    not_float: list[str] = []
    not_finite: list[str] = []
    for key, target in expected.items():
        value = given.get(key)
        if not isinstance(value, torch.Tensor) or not target.is_floating_point():
            continue
        if not value.is_floating_point():
            not_float.append(f"{key} is {str(value.dtype).replace('torch.', '')}")
        elif value.numel() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            not_finite.append(f"{key}: {bad} of {value.numel()}")
    if not_float:
        raise WeightsFileError(
            f"the weights in {where} are not floating-point numbers where the model has "
            f"them ({len(not_float)} tensor(s): {_few(not_float)}); they would train from "
            "meaningless values. Is the file quantised or damaged? Use the float weights"
        )
    if not_finite:
        raise WeightsFileError(
            f"the weights in {where} hold values that are not finite (NaN or infinite) in "
            f"{len(not_finite)} tensor(s) ({_few(not_finite)}); training from them gives a "
            "loss of NaN. The file is damaged or came from a diverged run: use another one"
        )


def _mismatch(expected: Mapping[str, "Tensor"], given: Mapping[str, "Tensor"]) -> str:
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k} {tuple(given[k].shape)} vs {tuple(expected[k].shape)} expected"
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es) ({_few(shapes)})")
    if missing or unexpected:
        parts.append(_describe_keys(missing, unexpected))
    return "; ".join(parts)


def _describe_keys(missing: Sequence[str], unexpected: Sequence[str]) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) ({_few(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) ({_few(unexpected)})")
    return "; ".join(parts)


def _few(items: Sequence[str], count: int = 3) -> str:
    shown = ", ".join(items[:count])
    return shown + (", ..." if len(items) > count else "")


def _torch_reason(exc: BaseException) -> str:
    """The first line of torch's message without its advice to re-run with
    ``weights_only=False``: that unpickles without restriction, which this app never does
    and must not suggest."""
    text = str(exc)
    try:
        from torch.serialization import UNSAFE_MESSAGE

        text = text.replace(UNSAFE_MESSAGE, "")
    except ImportError:  # pragma: no cover - older torch without the constant
        pass
    text = text.replace("Weights only load failed.", "")
    for line in text.splitlines():
        line = line.strip()
        if line and "weights_only" not in line:
            return line
    return type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- resolving


def no_weights_message(model_name: str, file_names: Sequence[str]) -> str:
    """What to do when a model has no pretrained weights on this machine."""
    put = (
        f"put {file_names[0]} in {weights_dir()}"
        if file_names
        else f"put its weights file in {weights_dir()}"
    )
    return (
        f"No pretrained weights for {model_name} on this machine. Import a weights file "
        f"(desktop-tl weights import FILE --model {model_name}), {put}, or choose random "
        f"initialisation (--weights none)"
    )


def random_provenance(detail: str = "") -> WeightsProvenance:
    return WeightsProvenance(
        source="random",
        pretrained=False,
        detail=detail or "random initialisation, chosen explicitly (weights = none)",
    )


def local_weights_status(
    model_name: str, file_names: Sequence[str], download_url: str | None = None
) -> WeightsStatus:
    """Where :func:`resolve_weights` would find weights for ``weights="auto"``, without
    reading them (only file existence is checked)."""
    found = find_local_weights(file_names)
    if found is not None:
        source, path = found
        where = "the torch hub cache" if source == "hub-cache" else "the local weights folder"
        return WeightsStatus(True, source, str(path), f"pretrained weights in {where}")
    if download_url and downloads_allowed():
        return WeightsStatus(
            True,
            "download",
            None,
            f"not on this machine; downloaded from {download_url} on first use ({ALLOW_DOWNLOAD_ENV}=1)",
        )
    return WeightsStatus(False, "missing", None, no_weights_message(model_name, file_names))


def resolve_weights(
    model_name: str,
    weights: str,
    file_names: Sequence[str],
    *,
    download_url: str | None = None,
    label: str = "",
) -> tuple[dict[str, "Tensor"] | None, WeightsProvenance]:
    """Find and read the weights for one model.

    ``weights`` is ``"auto"`` (offline-first resolution, see the module docstring),
    ``"none"`` (explicit random initialisation: returns ``None`` and a ``"random"``
    provenance) or a path. ``file_names`` are the usual file names of the pretrained
    weights; ``download_url`` is used only when downloads are allowed; ``label`` names the
    weights in the provenance detail (e.g. ``"ResNet18_Weights.IMAGENET1K_V1"``).
    Raises :class:`WeightsUnavailableError` or :class:`WeightsFileError`.
    """
    choice = (weights or "auto").strip()
    if choice.lower() == "none":
        return None, random_provenance()
    suffix = f" ({label})" if label else ""
    if choice.lower() != "auto":
        path = Path(choice).expanduser()
        if not path.is_file():
            raise WeightsFileError(
                f"weights file {path} does not exist; give an existing .safetensors, .pth "
                "or .pt file, 'auto' (pretrained weights found on this machine) or 'none' "
                "(random initialisation)"
            )
        provenance = file_provenance("file", path, f"file chosen by the user{suffix}", chosen=True)
        return load_state_dict_file(path), provenance

    found = find_local_weights(file_names)
    if found is not None:
        source, path = found
        where = "torch hub cache" if source == "hub-cache" else "local weights folder"
        provenance = file_provenance(source, path, f"{where}{suffix}")  # refuses a fake
        return load_state_dict_file(path), provenance

    if download_url and downloads_allowed():
        path = download_weights(download_url, model_name, file_names)
        return load_state_dict_file(path), file_provenance(
            "download", path, f"downloaded from {download_url}{suffix}"
        )
    raise WeightsUnavailableError(no_weights_message(model_name, file_names))


def published_hash_prefix(path: str | Path) -> str | None:
    """The sha256 prefix a ``.pth``/``.pt`` file name promises (``resnet18-f37072fd.pth``
    -> ``f37072fd``), or None. A ``.safetensors`` file under such a stem is a copy in
    another format, so the prefix (of the original file) says nothing about it."""
    path = Path(path)
    if path.suffix.lower() not in TORCH_SUFFIXES:
        return None
    match = _HASH_IN_NAME.search(path.name)
    return match.group(1) if match else None


def not_published_message(path: str | Path, digest: str, prefix: str) -> str:
    return (
        f"{path} is not the published weights file its name claims: its sha256 is {digest}, "
        f"but the name promises one starting with {prefix} (a damaged download, or other "
        "weights under that name)"
    )


def file_provenance(
    source: str, path: str | Path, detail: str, *, chosen: bool = False, expected_sha256: str | None = None
) -> WeightsProvenance:
    """Provenance of pretrained weights read from ``path`` (hashes the file).

    A ``.pth``/``.pt`` whose name carries a sha256 prefix (as torchvision's do) must
    match it, and the file must hash to ``expected_sha256`` when one is declared:
    otherwise other weights would be shown as the published ones, so the file is refused
    with :class:`WeightsFileError` naming both values, unless the user ``chosen`` it
    explicitly, in which case it is loaded and recorded as unverified."""
    path = Path(path)
    digest = sha256_file(path)
    prefix = published_hash_prefix(path)
    problem = None
    if prefix and not digest.startswith(prefix):
        problem = not_published_message(path, digest, prefix)
    elif expected_sha256 and digest != expected_sha256.strip().lower():
        problem = (
            f"{path} is not the file its backbone provider declares: its sha256 is "
            f"{digest}, but {expected_sha256.strip().lower()} is expected (a damaged "
            "download, or other weights under that name)"
        )
    # True: checked and matched; False: a check failed or cannot be made; None: nothing
    # to check against (a file under a name of its own, no declared sha256).
    verified: bool | None = True if (prefix or expected_sha256) else None
    if problem is not None:
        if not chosen:
            raise WeightsFileError(
                f"refused {problem}. Delete or replace it; to train from it anyway, choose "
                f"it explicitly with --weights {path} (recorded as unverified)"
            )
        verified = False
        detail += f"; unverified: {problem}"
    elif _HASH_IN_NAME.search(path.name) and path.suffix.lower() in SAFETENSORS_SUFFIXES:
        verified = False
        detail += (
            "; unverified: a .safetensors copy, which cannot be checked against the published file's sha256"
        )
    return WeightsProvenance(
        source=source,
        pretrained=True,
        path=str(path.resolve()),
        sha256=digest,
        detail=detail,
        verified=verified,
    )


def download_weights(url: str, model_name: str, file_names: Sequence[str], sha256: str | None = None) -> Path:
    """Download ``url`` into the torch hub cache under the model's usual file name (or
    the URL's), checking ``sha256`` or the hash prefix in the name while it downloads."""
    import torch.hub

    target = hub_checkpoint_dir() / (file_names[0] if file_names else file_name_from_url(url))
    target.parent.mkdir(parents=True, exist_ok=True)
    match = _HASH_IN_NAME.search(target.name)
    expected = sha256 or (match.group(1) if match else None)
    try:
        torch.hub.download_url_to_file(url, str(target), hash_prefix=expected, progress=True)
    except Exception as exc:  # URLError, timeouts, hash mismatch
        raise WeightsUnavailableError(
            f"downloading the weights for {model_name} from {url} failed "
            f"({_first_line(exc)}). {no_weights_message(model_name, file_names)}"
        ) from None
    return target


# --------------------------------------------------------------------------- host-managed


@dataclass
class PretrainedWeights:
    """Weights the host found, checked and read for one model; what a provider's
    ``build(model_name, weights)`` receives (``None`` means random initialisation).

    ``state_dict`` holds the tensors (read safely, never unpickled without restriction);
    ``provenance`` says where they came from. Load them with :meth:`load_into`, which
    refuses a state dict whose keys or shapes do not fit, naming the first mismatches.
    The host refuses a backbone built without calling it.
    """

    state_dict: Mapping[str, "Tensor"]
    provenance: WeightsProvenance
    optional_prefixes: tuple[str, ...] = ()
    loaded: bool = field(default=False, init=False)
    skipped: list[str] = field(default_factory=list, init=False)

    def load_into(
        self,
        model: "nn.Module",
        *,
        optional_prefixes: Sequence[str] = (),
        transform: Callable[[Mapping[str, "Tensor"]], Mapping[str, "Tensor"]] | None = None,
    ) -> list[str]:
        """Load the weights into ``model`` with every key accounted for.

        Keys under ``optional_prefixes`` (plus the source's own; e.g. the classifier the
        backbone drops anyway) may be missing or shaped differently; those are not loaded
        and their names are returned (and kept in :attr:`skipped`). ``transform`` adapts
        the state dict first (old key names, version tags). Raises
        :class:`WeightsFileError` when the weights do not fit ``model``.
        """
        state_dict = self.state_dict if transform is None else transform(self.state_dict)
        prefixes = tuple(self.optional_prefixes) + tuple(optional_prefixes)
        self.skipped = load_into_model(model, state_dict, self.provenance.path, optional_prefixes=prefixes)
        self.loaded = True
        return list(self.skipped)


def source_status(model_name: str, source: WeightsSource) -> WeightsStatus:
    """Where :func:`resolve_pretrained` would find weights for ``weights="auto"``,
    without reading them (only file existence is checked: fast enough for every model)."""
    for location in source.locations:
        if Path(location.path).is_file():
            return WeightsStatus(
                True,
                location.source,
                str(location.path),
                location.detail or f"pretrained weights in {location.path}",
            )
    status = local_weights_status(model_name, source.file_names, download_url=source.url)
    if status.available or not source.hint:
        return status
    return WeightsStatus(False, "missing", None, f"{status.detail}. {source.hint}")


def resolve_pretrained(model_name: str, weights: str, source: WeightsSource) -> PretrainedWeights | None:
    """Find, check and read the weights for one model (see the module docstring).

    ``weights`` is ``"auto"``, ``"none"`` (returns ``None``) or a path. Raises
    :class:`WeightsUnavailableError` or :class:`WeightsFileError`.
    """
    choice = (weights or "auto").strip()
    if choice.lower() == "none":
        return None
    label = f" ({source.label})" if source.label else ""
    prefixes = tuple(source.optional_prefixes)
    if choice.lower() != "auto":
        path = Path(choice).expanduser()
        if not path.is_file():
            raise WeightsFileError(
                f"weights file {path} does not exist; give an existing .safetensors, .pth "
                "or .pt file, 'auto' (pretrained weights found on this machine) or 'none' "
                "(random initialisation)"
            )
        provenance = file_provenance(
            "file",
            path,
            f"file chosen by the user{label}",
            chosen=True,
            expected_sha256=_declared_for(path, source),
        )
        return PretrainedWeights(load_state_dict_file(path), provenance, prefixes)

    for location in source.locations:
        path = Path(location.path)
        if path.is_file():
            detail = (location.detail or f"{location.source} file") + label
            provenance = file_provenance(
                location.source, path, detail, expected_sha256=location.sha256 or None
            )
            return PretrainedWeights(load_state_dict_file(path), provenance, prefixes)

    found = find_local_weights(source.file_names)
    if found is not None:
        where, path = found
        detail = ("torch hub cache" if where == "hub-cache" else "local weights folder") + label
        provenance = file_provenance(where, path, detail, expected_sha256=_declared_for(path, source))
        return PretrainedWeights(load_state_dict_file(path), provenance, prefixes)

    if source.url and downloads_allowed():
        path = download_weights(source.url, model_name, source.file_names, source.sha256)
        provenance = file_provenance(
            "download", path, f"downloaded from {source.url}{label}", expected_sha256=source.sha256 or None
        )
        return PretrainedWeights(load_state_dict_file(path), provenance, prefixes)
    message = no_weights_message(model_name, source.file_names)
    raise WeightsUnavailableError(f"{message}. {source.hint}" if source.hint else message)


def _declared_for(path: Path, source: WeightsSource) -> str | None:
    """The declared sha256 applies to the published file under one of its usual names,
    not to a ``.safetensors`` copy of it."""
    if not source.sha256:
        return None
    url_name = file_name_from_url(source.url) if source.url else None
    return source.sha256 if path.name in (*source.file_names, url_name) else None
