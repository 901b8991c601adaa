"""Helpers for turning a classification network into a backbone of named stages.

The engine splits a backbone at stage boundaries: everything before the first trainable
stage runs once and its output can be cached. A provider stages its network as an
``nn.Sequential`` whose children are the original module objects under their original
names, with the final classifier left out. These are the pieces every family needs;
which children form the stages is the provider's own knowledge.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:  # pragma: no cover - typing only
    from torch import nn

#: Attributes that hold auxiliary classifiers used only in training (Inception v3,
#: GoogLeNet); they are dropped so that training forward returns one tensor.
AUX_CLASSIFIER_ATTRIBUTES = ("AuxLogits", "aux1", "aux2")


def drop_aux_classifiers(model: "nn.Module") -> None:
    """Remove Inception-style auxiliary classifiers: they only add outputs in training
    and are not needed to transfer the features."""
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
    for name in AUX_CLASSIFIER_ATTRIBUTES:
        if getattr(model, name, None) is not None:
            setattr(model, name, None)


def final_linear(model: "nn.Module") -> tuple[str, "nn.Linear"]:
    """The qualified name and module of the last ``nn.Linear`` registered in ``model``:
    the classifier of a classification network."""
    from torch import nn

    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer, so its classifier cannot be found and removed"
        )
    return found[-1]


def sequential(stages: Iterable[tuple[str, "nn.Module"]]) -> "nn.Sequential":
    """``nn.Sequential`` with the given stage names (keeps the modules' own objects)."""
    from torch import nn

    return nn.Sequential(OrderedDict(stages))
