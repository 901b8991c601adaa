"""Typed descriptors that plugins return from their hooks.

Hooks are collect-style: a plugin hands the host small immutable objects that say what it
offers and how to build it; the host decides when to call them. Nothing here imports
torch at module level, so listing plugins stays fast.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..errors import UserError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from torch import nn

#: The plugin API version this host implements. A plugin module declares the version it was
#: written for as ``DTL_API_VERSION``; a different major version is refused at load time.
API_VERSION = "1.1"

#: Interpolations the engine can resize with (torchvision's names).
INTERPOLATIONS = ("nearest", "nearest-exact", "bilinear", "bicubic")


class DescriptorError(UserError, ValueError):
    """A descriptor was built with a value the host cannot use; raised where it is built,
    naming the plugin module that built it."""


def _builder() -> str:
    """The top-level package of the code that built a descriptor (skipping this module
    and the dataclass machinery), for messages."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name != __name__ and not frame.f_code.co_filename.startswith("<"):
            return name.partition(".")[0] or "?"
        frame = frame.f_back
    return "?"


def _refuse(what: str, problem: str) -> None:
    builder = _builder()
    who = "" if builder in ("desktop_tl", "?") else f"plugin {builder!r}: "  # e.g. a run file
    raise DescriptorError(f"{who}{what}: {problem}")


def _check_id(kind: str, value: Any, *, provider: bool = False) -> None:
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        _refuse(f"{kind} {value!r}", "id must be a non-empty string without surrounding spaces")
    if provider and (":" in value or any(c.isspace() for c in value)):
        _refuse(
            f"{kind} {value!r}",
            "a backbone provider id cannot contain ':' or spaces (users write provider:model)",
        )


def _check_callable(what: str, name: str, value: Any) -> None:
    if not callable(value):
        _refuse(what, f"{name} must be callable, got {type(value).__name__}")


# --------------------------------------------------------------------------- backbones


@dataclass(frozen=True)
class Preprocessing:
    """How images must be prepared for a backbone's weights (eval-time transform)."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"  # one of INTERPOLATIONS

    def __post_init__(self) -> None:
        import numbers

        what = "Preprocessing"
        for name in ("resize", "crop"):  # numpy integers are fine; stored as int
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                _refuse(what, f"{name} must be a positive whole number of pixels, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("mean", "std"):
            value = getattr(self, name)
            if (
                isinstance(value, (str, bytes))
                or len(value) != 3
                or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
            ):
                _refuse(what, f"{name} must be three numbers (R, G, B), got {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if any(v <= 0 for v in self.std):
            _refuse(what, f"std values must be positive, got {self.std!r}")
        if self.interpolation not in INTERPOLATIONS:
            _refuse(what, f"interpolation {self.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "resize": self.resize,
            "crop": self.crop,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessing":
        return cls(
            resize=int(data["resize"]),
            crop=int(data["crop"]),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            interpolation=str(data.get("interpolation", "bilinear")),
        )


@dataclass(frozen=True)
class WeightsProvenance:
    """Where a backbone's initial weights came from, recorded in every run and checkpoint.

    ``source`` is one of: ``"file"`` (chosen by the user), ``"hub-cache"``,
    ``"weights-dir"``, ``"download"``, ``"package"`` (shipped inside a Python package),
    ``"random"`` (explicit random initialisation, never silent); a provider's own
    locations may name others (e.g. ``"hf-cache"``).

    ``verified`` is True when the file was checked against the sha256 its name or its
    provider promises, False when that check failed (a file the user chose explicitly
    still loads) or cannot be made, None when there was nothing to check against. Show
    :attr:`label` wherever provenance is shown.
    """

    source: str
    pretrained: bool
    path: str | None = None
    sha256: str | None = None
    detail: str = ""
    verified: bool | None = None

    @property
    def label(self) -> str:
        """``"pretrained"``, ``"pretrained (unverified)"`` or ``"random initialisation"``."""
        if not self.pretrained:
            return "random initialisation"
        return "pretrained (unverified)" if self.verified is False else "pretrained"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "pretrained": self.pretrained,
            "path": self.path,
            "sha256": self.sha256,
            "detail": self.detail,
            "verified": self.verified,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WeightsProvenance":
        return cls(
            source=str(data["source"]),
            pretrained=bool(data["pretrained"]),
            path=data.get("path"),
            sha256=data.get("sha256"),
            detail=str(data.get("detail", "")),
            verified=data.get("verified"),
        )


@dataclass(frozen=True)
class WeightsStatus:
    """Whether pretrained weights for a model are on this machine, without loading them.

    ``source`` names the place they would come from (see :class:`WeightsProvenance`), or
    ``"missing"``; ``detail`` is a sentence a person can act on.
    """

    available: bool
    source: str
    path: str | None = None
    detail: str = ""


@dataclass
class Backbone:
    """A created backbone, ready to be joined to a head.

    ``module`` maps an image batch ``(N, 3, H, W)`` to features ``(N, feature_dim)``. It is
    an ``nn.Sequential`` of named stages so that the engine can split it at any stage
    boundary (nested ``nn.Sequential`` children may be split too): everything before the
    first trainable stage runs once and its output can be cached. A provider with a
    ``build`` leaves ``provenance`` out: the host fills in where the weights came from.
    """

    module: "nn.Sequential"
    feature_dim: int
    preprocessing: Preprocessing
    provenance: WeightsProvenance | None = None
    categories: Sequence[str] | None = None  # the classes the weights were trained on

    def __post_init__(self) -> None:
        import numbers

        if (
            isinstance(self.feature_dim, bool)
            or not isinstance(self.feature_dim, numbers.Integral)
            or self.feature_dim < 1
        ):
            _refuse("Backbone", f"feature_dim must be a positive int, got {self.feature_dim!r}")
        self.feature_dim = int(self.feature_dim)
        if not isinstance(self.preprocessing, Preprocessing):
            _refuse(
                "Backbone", f"preprocessing must be a Preprocessing, got {type(self.preprocessing).__name__}"
            )
        if not callable(self.module):
            _refuse("Backbone", f"module must be a torch module, got {type(self.module).__name__}")


@dataclass(frozen=True)
class WeightsLocation:
    """A place where a weights file may already be on this machine: inside an installed
    package, in a model hub's cache. ``source`` names it in the provenance."""

    path: str
    source: str = "package"
    detail: str = ""
    sha256: str | None = None


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's pretrained weights may be; the host looks, checks and reads.

    ``file_names``: the usual file names, looked for in the torch hub cache and the local
    weights folder (and what ``desktop-tl weights import`` stores a file under).
    ``locations``: files at known places, tried first. ``url``: downloaded only when
    downloads are allowed; ``sha256`` is what the published file hashes to (checked for a
    download and for a file under one of ``file_names``). ``label`` names the weights in
    the provenance; ``optional_prefixes`` are state-dict keys the file may lack or shape
    differently (a classifier the backbone drops); ``hint`` is appended to the "no
    weights" message (e.g. which package ships them).
    """

    file_names: tuple[str, ...] = ()
    locations: tuple[WeightsLocation, ...] = ()
    url: str | None = None
    sha256: str | None = None
    label: str = ""
    optional_prefixes: tuple[str, ...] = ()
    hint: str = ""

    def __post_init__(self) -> None:
        for name in ("file_names", "locations", "optional_prefixes"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)):
                _refuse("WeightsSource", f"{name} must be a tuple, not the string {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not all(isinstance(v, WeightsLocation) for v in self.locations):
            _refuse("WeightsSource", "locations must be WeightsLocation objects")
        if self.sha256 is not None and (
            len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256.lower())
        ):
            _refuse("WeightsSource", f"sha256 must be 64 hex digits, got {self.sha256!r}")


@dataclass(frozen=True)
class BackboneProvider:
    """A family of backbones.

    Give ``build`` and ``weights_source`` (plugin API 1.1): ``weights_source(model_name)``
    says where pretrained weights may be (a :class:`WeightsSource`), and
    ``build(model_name, weights)`` builds the network, where ``weights`` is ``None``
    (random initialisation) or a :class:`~desktop_tl.plugin.weights.PretrainedWeights`
    the host has found, checked and read; ``build`` calls ``weights.load_into(network)``.
    The host then offers ``create(model_name, weights)`` with ``weights`` ``"auto"``,
    ``"none"`` or a file path, and ``weights_status`` / ``weight_file_names`` derived from
    the source.

    A provider whose networks are never pretrained may instead give ``create`` and
    ``weights_status`` itself (plugin API 1.0).

    ``list_models`` is a callable (called lazily, off the GUI thread) or a list of names.
    """

    id: str
    display_name: str
    list_models: Callable[[], Sequence[str]] | Sequence[str]
    create: Callable[[str, str], Backbone] | None = field(default=None, compare=False)
    weights_status: Callable[[str], WeightsStatus] | None = field(default=None, compare=False)
    #: File names a lab would drop into the local weights folder for a model (used by
    #: ``desktop-tl weights import`` to place and recognise files).
    weight_file_names: Callable[[str], Sequence[str]] | None = field(default=None, compare=False)
    description: str = ""
    build: Callable[[str, Any], Backbone] | None = field(default=None, compare=False)
    weights_source: Callable[[str], WeightsSource] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_id("BackboneProvider", self.id, provider=True)
        what = f"BackboneProvider {self.id!r}"
        models = self.list_models
        if not callable(models):
            if isinstance(models, (str, bytes)) or not all(isinstance(m, str) for m in models):
                _refuse(what, f"list_models must be a callable or a list of str, got {models!r:.80}")
            if not models:
                _refuse(what, "the model list is empty; a provider offers at least one model")
            names = tuple(models)
            object.__setattr__(self, "list_models", lambda: names)
        if self.build is not None:
            if self.create is not None:
                _refuse(what, "give build and weights_source, or create, not both")
            _check_callable(what, "build", self.build)
            source = self.weights_source or (lambda model_name: WeightsSource())
            _check_callable(what, "weights_source", source)
            object.__setattr__(self, "weights_source", source)
            object.__setattr__(self, "create", _HostCreate(self))
            if self.weights_status is None:
                object.__setattr__(self, "weights_status", _HostStatus(source))
            if self.weight_file_names is None:
                object.__setattr__(
                    self, "weight_file_names", lambda model_name: list(source(model_name).file_names)
                )
        elif self.create is None:
            _refuse(what, "give build (and weights_source), or create")
        if self.weights_status is None:
            object.__setattr__(self, "weights_status", _never_pretrained)
        if self.weight_file_names is None:
            object.__setattr__(self, "weight_file_names", lambda model_name: ())
        for name in ("create", "weights_status", "weight_file_names"):
            _check_callable(what, name, getattr(self, name))

    @property
    def host_loads_weights(self) -> bool:
        """Whether the host finds and checks this provider's weights (it has ``build``)."""
        return self.build is not None


def _never_pretrained(model_name: str) -> WeightsStatus:
    return WeightsStatus(False, "missing", None, f"{model_name} has no pretrained weights")


class _HostCreate:
    """``create(model_name, weights)`` for a provider with ``build``: the host resolves
    and reads the weights, the provider builds and loads them, the host checks it did."""

    def __init__(self, provider: BackboneProvider) -> None:
        self.provider = provider

    def __call__(self, model_name: str, weights: str = "auto") -> Backbone:
        from .weights import random_provenance, resolve_pretrained

        provider = self.provider
        assert provider.build is not None and provider.weights_source is not None
        pretrained = resolve_pretrained(model_name, weights, provider.weights_source(model_name))
        backbone = provider.build(model_name, pretrained)
        if not isinstance(backbone, Backbone):
            return backbone  # the host names the plugin and the wrong type
        if pretrained is not None and not pretrained.loaded:
            raise WeightsFileError(
                f"backbone provider {provider.id!r} was given pretrained weights for "
                f"{model_name} but did not load them (its build must call "
                "weights.load_into(network)); report this to the plugin's author"
            )
        backbone.provenance = pretrained.provenance if pretrained is not None else random_provenance()
        return backbone

    def __repr__(self) -> str:
        return f"<host create of {self.provider.id!r}>"


class _HostStatus:
    def __init__(self, source: Callable[[str], WeightsSource]) -> None:
        self.source = source

    def __call__(self, model_name: str) -> WeightsStatus:
        from .weights import source_status

        return source_status(model_name, self.source(model_name))


class WeightsUnavailableError(UserError, LookupError):
    """No pretrained weights for a model on this machine; the message says the way out."""


class WeightsFileError(UserError, ValueError):
    """A weights file was refused (unreadable, unsafe to unpickle, wrong shapes)."""


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Sample:
    """One labelled image. ``subset`` is ``"train"``, ``"val"`` or ``"test"`` when the
    dataset predefines its split, else ``None``."""

    path: str
    label: str
    subset: str | None = None


@dataclass
class LoadedDataset:
    """What a dataset loader found. ``ignored`` lists (path, reason) for files it skipped
    on purpose (stray files, unknown extensions) so that they can be shown. ``warnings``
    are sentences a person should read before training (a link loop not followed, rows
    skipped), shown in the window, the command line and the run's log."""

    samples: list[Sample]
    class_names: list[str]
    root: str
    ignored: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def has_predefined_split(self) -> bool:
        return any(s.subset is not None for s in self.samples)


class DatasetError(UserError, ValueError):
    """The data cannot be used as given; the message says what to fix."""


@dataclass(frozen=True)
class DatasetLoader:
    """A way to read a labelled image collection from a path (folder or file)."""

    id: str
    display_name: str
    can_load: Callable[[str], bool]
    load: Callable[[str, dict[str, Any]], LoadedDataset]
    description: str = ""
    #: "folder", "file" or "either": what a file picker should ask for.
    path_kind: str = "folder"
    #: Glob patterns of the file names it reads (``"*.csv"``), for pickers and drops;
    #: a file not matching any is never offered to ``can_load``. Empty: any file.
    file_patterns: tuple[str, ...] = ()
    #: Loaders that accept a path are tried highest priority first, then in plugin order.
    priority: int = 0

    def __post_init__(self) -> None:
        _check_id("DatasetLoader", self.id)
        what = f"DatasetLoader {self.id!r}"
        _check_callable(what, "can_load", self.can_load)
        _check_callable(what, "load", self.load)
        if self.path_kind not in ("folder", "file", "either"):
            _refuse(what, f"path_kind {self.path_kind!r} is not folder, file or either")
        if isinstance(self.file_patterns, str):
            _refuse(what, f"file_patterns must be a tuple, not the string {self.file_patterns!r}")
        object.__setattr__(self, "file_patterns", tuple(self.file_patterns))
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            _refuse(what, f"priority must be an int, got {self.priority!r}")

    def matches_name(self, path: str) -> bool:
        """Whether ``path`` could be for this loader by its kind and file name alone."""
        import fnmatch
        import os

        if os.path.isdir(path):
            return self.path_kind in ("folder", "either")
        if self.path_kind == "folder":
            return False
        name = os.path.basename(path).lower()
        return not self.file_patterns or any(
            fnmatch.fnmatch(name, pattern.lower()) for pattern in self.file_patterns
        )


# --------------------------------------------------------------------------- heads


HEAD_OPTION_KINDS = ("int", "float", "bool", "choice", "int_list")


@dataclass(frozen=True)
class HeadOption:
    """A typed option of a head type. ``kind`` is ``"int"``, ``"float"``, ``"bool"``,
    ``"choice"`` or ``"int_list"``; the GUI builds a matching widget."""

    name: str
    kind: str
    default: Any
    label: str = ""
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        what = f"HeadOption {self.name!r}"
        if self.kind not in HEAD_OPTION_KINDS:
            _refuse(what, f"kind {self.kind!r} is not one of {', '.join(HEAD_OPTION_KINDS)}")
        if self.kind == "choice" and self.default not in self.choices:
            _refuse(what, f"the default {self.default!r} is not among its choices {self.choices}")


@dataclass(frozen=True)
class HeadType:
    """A classifier head: ``build(in_features, num_classes, **options) -> nn.Module``."""

    id: str
    display_name: str
    build: Callable[..., "nn.Module"]
    options: tuple[HeadOption, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        _check_id("HeadType", self.id)
        if not all(isinstance(option, HeadOption) for option in self.options):
            _refuse(f"HeadType {self.id!r}", "options must be HeadOption objects")
        object.__setattr__(self, "options", tuple(self.options))

    def defaults(self) -> dict[str, Any]:
        return {opt.name: opt.default for opt in self.options}
