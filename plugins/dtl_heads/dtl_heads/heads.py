"""Building the linear and MLP heads, with every option checked first.

Layer names are fixed (``dropout``, ``fc``; ``fc1``, ``act1``, ``dropout1``, ...,
``out``) whatever the option values, so checkpoints and the layer tree stay readable.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Sequence

from desktop_tl.errors import UserError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from torch import nn

ACTIVATIONS = {"relu": "ReLU", "gelu": "GELU", "silu": "SiLU"}


class HeadOptionError(UserError, ValueError):
    """A head option has an unknown name or a value outside what it allows."""


def build_linear(in_features: int, num_classes: int, **options: Any) -> "nn.Module":
    """Dropout (p = ``dropout``, default 0) then Linear(in_features, num_classes)."""
    from torch import nn

    _check_sizes("linear", in_features, num_classes)
    _check_names("linear", options, ("dropout",))
    dropout = _dropout("linear", options.get("dropout", 0.0))
    return nn.Sequential(
        OrderedDict([("dropout", nn.Dropout(dropout)), ("fc", nn.Linear(in_features, num_classes))])
    )


def build_mlp(in_features: int, num_classes: int, **options: Any) -> "nn.Module":
    """For each hidden size: Linear, activation, dropout; then the output Linear."""
    from torch import nn

    _check_sizes("mlp", in_features, num_classes)
    _check_names("mlp", options, ("hidden_sizes", "dropout", "activation"))
    hidden = _hidden_sizes(options.get("hidden_sizes", [256]))
    dropout = _dropout("mlp", options.get("dropout", 0.2))
    activation = options.get("activation", "relu")
    if not isinstance(activation, str) or activation.lower() not in ACTIVATIONS:
        raise HeadOptionError(
            f"head 'mlp': activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}"
        )
    activation_class = getattr(nn, ACTIVATIONS[activation.lower()])

    layers: list[tuple[str, nn.Module]] = []
    width = in_features
    for number, size in enumerate(hidden, start=1):
        layers += [
            (f"fc{number}", nn.Linear(width, size)),
            (f"act{number}", activation_class()),
            (f"dropout{number}", nn.Dropout(dropout)),
        ]
        width = size
    layers.append(("out", nn.Linear(width, num_classes)))
    return nn.Sequential(OrderedDict(layers))


def _check_sizes(head: str, in_features: Any, num_classes: Any) -> None:
    for name, value in (("in_features", in_features), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise HeadOptionError(f"head {head!r}: {name} must be a positive whole number, got {value!r}")


def _check_names(head: str, options: dict[str, Any], known: Sequence[str]) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise HeadOptionError(
            f"head {head!r} has no option {', '.join(repr(u) for u in unknown)}; "
            f"its options are: {', '.join(known)}"
        )


def _dropout(head: str, value: Any) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError
        dropout = float(value)
    except (TypeError, ValueError):
        raise HeadOptionError(
            f"head {head!r}: dropout must be a number from 0 up to (not including) 1, got {value!r}"
        ) from None
    if not 0.0 <= dropout < 1.0:
        raise HeadOptionError(
            f"head {head!r}: dropout must be from 0 up to (not including) 1, got {dropout:g}"
        )
    return dropout


def _hidden_sizes(value: Any) -> list[int]:
    """A list of positive ints; a string such as ``"512, 256"`` is accepted too (from a
    command line or a text field)."""
    items: Any = value
    if isinstance(value, str):
        items = [part for part in value.replace(";", ",").split(",") if part.strip()]
    if isinstance(items, (int, float)) and not isinstance(items, bool):
        items = [items]
    if not isinstance(items, (list, tuple)) or not items:
        raise HeadOptionError(
            "head 'mlp': hidden_sizes must be a non-empty list of layer widths such as "
            f"[512, 256], got {value!r} (use the 'linear' head for no hidden layer)"
        )
    sizes = []
    for item in items:
        try:
            if isinstance(item, bool) or (isinstance(item, float) and not item.is_integer()):
                raise ValueError
            size = int(str(item).strip()) if isinstance(item, str) else int(item)
        except (TypeError, ValueError):
            raise HeadOptionError(
                f"head 'mlp': hidden_sizes must hold whole numbers, got {item!r} in {value!r}"
            ) from None
        if size < 1:
            raise HeadOptionError(
                f"head 'mlp': every hidden size must be at least 1, got {size} in {value!r}"
            )
        sizes.append(size)
    return sizes
