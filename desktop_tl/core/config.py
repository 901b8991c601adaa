"""The one configuration object that describes a run, saved as TOML.

The GUI's project file, a headless run file and the ``run.toml`` inside a run folder are
all this format, so any session can be re-run with ``desktop-tl train run.toml``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import tomli_w

from ..errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FREEZE_PRESETS = ("head-only", "none", "last:N", "custom")
AUGMENT_PRESETS = ("none", "light", "strong")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "cosine", "step")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
FEATURE_CACHE_MODES = ("auto", "off")
#: Augmented views of one training image kept in the feature cache, at most.
MAX_AUGMENTED_VIEWS = 64
#: Seeds go to torch, numpy and Python's random; numpy takes 32-bit seeds only.
MAX_SEED = 2**32 - 1


class ConfigError(UserError, ValueError):
    """A configuration value is invalid; the message names the key and what is allowed."""


@dataclass
class DataConfig:
    path: str = ""
    loader: str = "auto"  # a dataset loader id, or "auto" (first whose can_load accepts)
    val_fraction: float = 0.2  # used only when the data has no predefined split
    test_fraction: float = 0.0
    split_seed: int = 0
    augment: str = "none"
    num_workers: int = -1  # -1: sized to the machine
    # Images the user left out of training (the files stay where they are): paths relative
    # to the dataset folder with / separators (absolute for images outside it).
    exclude: list[str] = field(default_factory=list)


@dataclass
class ModelConfig:
    backbone: str = "efficientnet_lite:efficientnet_lite0"  # "provider:model" or a bare name
    weights: str = "auto"  # "auto" | "none" | a file path
    head: str = "linear"
    head_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class FreezeConfig:
    """Which parameters train.

    ``preset`` is ``head-only``, ``none`` (everything trains), ``last:N`` (the last N
    backbone stages and the head) or ``custom``. ``overrides`` maps module qualified names
    to trainable (true) or frozen (false), applied after the preset from the shallowest
    name to the deepest, so a deeper entry wins inside its subtree.
    """

    preset: str = "head-only"
    overrides: dict[str, bool] = field(default_factory=dict)
    #: Changes made during the run: ``{epoch = E, changes = {name = bool, ...}}`` tables
    #: (``[[freeze.schedule]]`` in TOML), each applied at the start of epoch E (counted
    #: from 1) as a live change sent then would be; entries of one epoch in their order.
    #: A distributed run takes freeze changes only from here.
    schedule: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    backbone_lr_mult: float = 0.1  # backbone learning rate = lr * this
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD only
    schedule: str = "none"
    step_size: int = 5  # step schedule: epochs between decays
    gamma: float = 0.1  # step schedule: decay factor
    early_stopping_patience: int = 0  # 0: off; else epochs without val-loss improvement
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    feature_cache: str = "auto"
    cache_budget_mb: int = 1024  # features and decoded images kept in memory; beyond it, on disk
    feature_cache_reuse: bool = True  # reuse features cached by an earlier run on the same data
    # With augmentation and a frozen prefix: augmented views per training image extracted
    # once, one drawn per image each epoch; 0 reads (and augments) the images every epoch.
    # 2: on photo sets, 1 to 8 views scored alike and each view costs a pass of the prefix.
    augmented_views: int = 2
    tensorboard: bool = False  # also log scalars and the confusion matrix to <run>/tensorboard


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = ""  # run folder; empty: a new folder under the runs directory

    # ------------------------------------------------------------------ (de)serialise

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        config = cls()
        _merge_into(config, data, "")
        config.validate()
        return config

    def to_toml(self) -> str:
        return tomli_w.dumps(_drop_none(self.to_dict()))

    @classmethod
    def from_toml(cls, text: str, source: str = "configuration") -> "RunConfig":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source} is not valid TOML: {exc}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        from .atomic import atomic_write_text

        atomic_write_text(Path(path), self.to_toml())

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"run file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read run file {path}: {exc}") from None
        config = cls.from_toml(text, source=str(path))
        # A relative data path in a run or project file means: relative to that file.
        if config.data.path and not Path(config.data.path).is_absolute():
            config.data.path = str((path.parent / config.data.path).resolve())
        return config

    # ------------------------------------------------------------------ checks

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid value and what is allowed."""
        _choice("data.augment", self.data.augment, AUGMENT_PRESETS)
        _choice("train.optimizer", self.train.optimizer, OPTIMIZERS)
        _choice("train.schedule", self.train.schedule, SCHEDULES)
        _choice("train.device", self.train.device, DEVICES)
        _choice("train.precision", self.train.precision, PRECISIONS)
        _choice("train.feature_cache", self.train.feature_cache, FEATURE_CACHE_MODES)
        parse_freeze_preset(self.freeze.preset)
        _range("data.val_fraction", self.data.val_fraction, 0.0, 0.9)
        _range("data.test_fraction", self.data.test_fraction, 0.0, 0.9)
        if self.data.val_fraction + self.data.test_fraction >= 0.95:
            raise ConfigError("data.val_fraction + data.test_fraction must leave images to train on")
        _range("train.epochs", self.train.epochs, 1, 100_000)
        _range("train.batch_size", self.train.batch_size, 1, 65_536)
        _range("train.lr", self.train.lr, 1e-12, 10.0, exclusive_low=False)
        _range("train.backbone_lr_mult", self.train.backbone_lr_mult, 0.0, 100.0)
        _range("train.weight_decay", self.train.weight_decay, 0.0, 10.0)
        _range("train.label_smoothing", self.train.label_smoothing, 0.0, 0.99)
        _range("train.early_stopping_patience", self.train.early_stopping_patience, 0, 100_000)
        _range("train.step_size", self.train.step_size, 1, 100_000)
        _range("train.gamma", self.train.gamma, 0.0, 1.0)
        _range("train.momentum", self.train.momentum, 0.0, 1.0)
        for name, trainable in self.freeze.overrides.items():
            if not isinstance(trainable, bool):
                raise ConfigError(
                    f"freeze.overrides[{name!r}] = {trainable!r} must be true (trainable) or false (frozen)"
                )
        check_freeze_schedule(self.freeze.schedule, self.train.epochs)
        _range("train.cache_budget_mb", self.train.cache_budget_mb, 0, 1_000_000)
        _range("train.augmented_views", self.train.augmented_views, 0, MAX_AUGMENTED_VIEWS)
        if not isinstance(self.train.augmented_views, int):
            raise ConfigError(
                f"train.augmented_views = {self.train.augmented_views!r} must be a whole number "
                f"of views per image (0 to {MAX_AUGMENTED_VIEWS}; 0 reads the images every epoch)"
            )
        _range("train.seed", self.train.seed, 0, MAX_SEED)
        _range("data.split_seed", self.data.split_seed, 0, MAX_SEED)
        _range("data.num_workers", self.data.num_workers, -1, 1024)
        _string_list("data.exclude", self.data.exclude, "image paths relative to the dataset folder")


def check_freeze_schedule(schedule: list[Any], epochs: int) -> None:
    """Raise :class:`ConfigError` naming the first ``freeze.schedule`` entry that is not
    ``{epoch = E, changes = {name = true/false, ...}}`` with E in [1, ``epochs``]. Whether
    the names are layers of the model is checked once the model is built."""
    for number, entry in enumerate(schedule, 1):
        where = f"freeze.schedule entry {number}"
        if not isinstance(entry, dict) or set(entry) != {"epoch", "changes"}:
            raise ConfigError(
                f"{where} must be a table with exactly the keys epoch and changes, e.g. "
                '{ epoch = 3, changes = { "backbone.blocks" = true } }; got ' + repr(entry)
            )
        epoch, changes = entry["epoch"], entry["changes"]
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise ConfigError(f"{where}: epoch = {epoch!r} must be a whole number (counted from 1)")
        if not 1 <= epoch <= epochs:
            raise ConfigError(
                f"{where}: epoch = {epoch} is outside the run's epochs 1 to {epochs} (train.epochs); "
                "change the entry's epoch or train.epochs"
            )
        if not isinstance(changes, dict) or not changes:
            raise ConfigError(
                f"{where} (epoch {epoch}): changes must be a non-empty table of layer names to "
                "true (trainable) or false (frozen)"
            )
        for name, trainable in changes.items():
            if not isinstance(trainable, bool):
                raise ConfigError(
                    f"{where} (epoch {epoch}): changes[{name!r}] = {trainable!r} must be true "
                    "(trainable) or false (frozen)"
                )


def parse_freeze_preset(preset: str) -> tuple[str, int]:
    """Split a freeze preset into (kind, n): ``"last:2"`` -> ``("last", 2)``."""
    if preset in ("head-only", "none", "custom"):
        return preset, 0
    if preset.startswith("last:"):
        try:
            n = int(preset.split(":", 1)[1])
        except ValueError:
            n = -1
        if n >= 1:
            return "last", n
    raise ConfigError(f"freeze preset {preset!r} is not one of head-only, none, last:N (N >= 1), custom")


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} = {value!r} is not one of: {', '.join(allowed)}")


def _string_list(key: str, value: Any, what: str) -> None:
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be a list of {what}, e.g. [\"cats/img001.jpg\"]; got {value!r}")
    for position, entry in enumerate(value):
        if not isinstance(entry, str) or not entry.strip():
            raise ConfigError(f"{key}[{position}] = {entry!r} must be a non-empty text: one of the {what}")


def _range(key: str, value: Any, low: float, high: float, exclusive_low: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    # NaN compares false with everything, so it would pass the range test below.
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(
            f"{key} = {value!r} is not a finite number; give a value in [{_number(low)}, {_number(high)}]"
        )
    if value < low or value > high or (exclusive_low and value == low):
        raise ConfigError(f"{key} = {value!r} is out of range [{_number(low)}, {_number(high)}]")


def _number(value: float) -> str:
    # whole bounds as integers (a seed's 4294967295, not 4.29497e+09)
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _merge_into(obj: Any, data: dict[str, Any], prefix: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"[{prefix.rstrip('.')}] must be a table")
    known = {f.name: f for f in fields(obj)}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in known:
            allowed = ", ".join(sorted(known))
            raise ConfigError(f"unknown setting {name!r}; allowed here: {allowed}")
        current = getattr(obj, key)
        if is_dataclass(current):
            _merge_into(current, value, f"{name}.")
        elif isinstance(current, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{name} must be a table")
            setattr(obj, key, dict(value))
        elif isinstance(current, list):
            # The entries' own shape is checked by validate(), which knows what they hold.
            if not isinstance(value, list):
                raise ConfigError(f"{name} must be a list (in TOML: [ ... ] or [[{name}]] tables)")
            setattr(obj, key, list(value))
        else:
            setattr(obj, key, _coerce(name, current, value))


def _coerce(name: str, current: Any, value: Any) -> Any:
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(current, str):
        if isinstance(value, str):
            return value
    else:  # pragma: no cover
        return value
    raise ConfigError(f"{name} must be {type(current).__name__}, got {value!r}")


def _drop_none(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _drop_none(v) for k, v in data.items() if v is not None}
    return data
