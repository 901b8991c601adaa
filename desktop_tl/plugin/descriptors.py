"""Typed descriptors that plugins return from their hooks.

Hooks are collect-style: a plugin hands the host small immutable objects that say what it
offers and how to build it; the host decides when to call them. Nothing here imports
torch at module level, so listing plugins stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..errors import UserError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from torch import nn

#: The plugin API version this host implements. A plugin module declares the version it was
#: written for as ``DTL_API_VERSION``; a different major version is refused at load time.
API_VERSION = "1.0"


# --------------------------------------------------------------------------- backbones


@dataclass(frozen=True)
class Preprocessing:
    """How images must be prepared for a backbone's weights (eval-time transform)."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"  # "bilinear" | "bicubic" | "nearest"

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
    ``"random"`` (explicit random initialisation, never silent).
    """

    source: str
    pretrained: bool
    path: str | None = None
    sha256: str | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "pretrained": self.pretrained,
            "path": self.path,
            "sha256": self.sha256,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WeightsProvenance":
        return cls(
            source=str(data["source"]),
            pretrained=bool(data["pretrained"]),
            path=data.get("path"),
            sha256=data.get("sha256"),
            detail=str(data.get("detail", "")),
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
    first trainable stage runs once and its output can be cached.
    """

    module: "nn.Sequential"
    feature_dim: int
    preprocessing: Preprocessing
    provenance: WeightsProvenance
    categories: Sequence[str] | None = None  # the classes the weights were trained on


@dataclass(frozen=True)
class BackboneProvider:
    """A family of backbones.

    ``create(model_name, weights)`` builds one. ``weights`` is ``"auto"`` (resolve
    pretrained weights offline-first; raise :class:`WeightsUnavailableError` when there are
    none on this machine), ``"none"`` (explicit random initialisation) or a path to a
    ``.safetensors``/``.pth``/``.pt`` file.
    """

    id: str
    display_name: str
    list_models: Callable[[], Sequence[str]]
    create: Callable[[str, str], Backbone]
    weights_status: Callable[[str], WeightsStatus]
    #: File names a lab would drop into the local weights folder for a model (used by
    #: ``desktop-tl weights import`` to place and recognise files).
    weight_file_names: Callable[[str], Sequence[str]] = lambda model_name: ()
    description: str = ""


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


# --------------------------------------------------------------------------- heads


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


@dataclass(frozen=True)
class HeadType:
    """A classifier head: ``build(in_features, num_classes, **options) -> nn.Module``."""

    id: str
    display_name: str
    build: Callable[..., "nn.Module"]
    options: tuple[HeadOption, ...] = ()
    description: str = ""

    def defaults(self) -> dict[str, Any]:
        return {opt.name: opt.default for opt in self.options}
