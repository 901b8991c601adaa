"""The layer tree and freezing.

Freezing a module sets ``requires_grad=False`` on its parameters. A module whose
parameters are all frozen also runs in eval mode during training: frozen BatchNorm keeps
its running statistics, and a frozen stage computes a fixed function (no dropout or
drop-connect noise), which is what makes caching its output exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from torch import nn

from ..errors import UserError
from .config import parse_freeze_preset


class FreezeError(UserError):
    """A freeze change names a module that does not exist."""


@dataclass
class LayerNode:
    name: str  # qualified name from the model root; "" for the root
    type_name: str
    total_params: int
    trainable_params: int
    children: list["LayerNode"] = field(default_factory=list)

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1] if self.name else "model"

    @property
    def state(self) -> str:
        """``trainable``, ``frozen``, ``partial`` or ``none`` (no parameters)."""
        if self.total_params == 0:
            return "none"
        if self.trainable_params == self.total_params:
            return "trainable"
        if self.trainable_params == 0:
            return "frozen"
        return "partial"

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


def layer_tree(model: nn.Module) -> LayerNode:
    """Every module by qualified name with type, parameter count and trainable count."""

    def build(name: str, module: nn.Module) -> LayerNode:
        total = trainable = 0
        for param in module.parameters():
            total += param.numel()
            if param.requires_grad:
                trainable += param.numel()
        node = LayerNode(name, type(module).__name__, total, trainable)
        for child_name, child in module.named_children():
            node.children.append(build(f"{name}.{child_name}" if name else child_name, child))
        return node

    return build("", model)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = trainable = 0
    for param in model.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return trainable, total


def _is_chain(module: nn.Module) -> bool:
    return type(module) is nn.Sequential


def backbone_chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The backbone's stages in execution order, as (qualified name, module).

    Top-level stages of the backbone, with a plain ``nn.Sequential`` stage of blocks
    expanded one level (ResNet's ``layer4`` becomes ``layer4.0``, ``layer4.1``) so that
    presets and the feature cache work at block granularity. A stage of single layers
    (a stem of conv, norm, activation) stays whole: "last block" never means a lone
    BatchNorm. Running the chain in order equals running the backbone.
    """
    backbone = model.get_submodule("backbone")
    chain: list[tuple[str, nn.Module]] = []
    for name, stage in backbone.named_children():
        if _is_chain(stage) and len(stage) > 1 and all(any(True for _ in c.children()) for c in stage):
            for sub_name, sub in stage.named_children():
                chain.append((f"backbone.{name}.{sub_name}", sub))
        else:
            chain.append((f"backbone.{name}", stage))
    return chain


def backbone_stage_names(model: nn.Module) -> list[str]:
    """Names of the chain's stages that have parameters (what "last N blocks" counts)."""
    return [name for name, module in backbone_chain(model) if _has_params(module)]


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def freeze_map(model: nn.Module, preset: str, overrides: dict[str, bool] | None = None) -> dict[str, bool]:
    """The preset as a {qualified name: trainable} map, followed by the overrides."""
    kind, n = parse_freeze_preset(preset)
    if kind == "none":
        result = {"backbone": True, "head": True}
    else:  # head-only, custom (overrides say the rest) and last:N start from head-only
        result = {"backbone": False, "head": True}
        if kind == "last":
            stages = backbone_stage_names(model)
            if n > len(stages):
                raise FreezeError(
                    f"freeze preset last:{n} asks for more blocks than this backbone has "
                    f"({len(stages)}); use last:{len(stages)} or less, or 'none' to train everything"
                )
            for name in stages[-n:]:
                result[name] = True
    # The overrides come after the preset: an override of a module replaces what the
    # preset said about that module and everything inside it.
    return ordered_freeze_map([result, overrides or {}])


def _depth_key(name: str) -> tuple[int, str]:
    return (name.count(".") if name else -1, name)


def _covers(outer: str, inner: str) -> bool:
    """Whether module ``outer`` is ``inner`` or one of its ancestors ("" is the root)."""
    return outer == "" or inner == outer or inner.startswith(outer + ".")


def ordered_freeze_map(changes: Iterable[dict[str, bool]]) -> dict[str, bool]:
    """One map that :func:`apply_freeze_map` turns into the state that applying each of
    ``changes`` in turn gives.

    A later change to a module replaces every earlier change to it or to a module inside
    it, so in the result an outer module always precedes the modules inside it; applying
    it shallowest first is then the same as applying the changes in their order. Within
    one change, deeper names win (as in :func:`apply_freeze_map`).
    """
    result: dict[str, bool] = {}
    for change in changes:
        for name in sorted(change, key=_depth_key):
            for earlier in [n for n in result if _covers(name, n)]:
                del result[earlier]
            result[name] = bool(change[name])
    return result


def check_freeze_names(model: nn.Module, mapping: dict[str, bool]) -> None:
    """Raise :class:`FreezeError` unless every name in ``mapping`` is a module of ``model``."""
    modules = dict(model.named_modules())
    missing = [name for name in mapping if name not in modules]
    if missing:
        raise FreezeError(
            f"no layer named {', '.join(repr(m) for m in missing[:3])} in this model; "
            "use qualified module names as the layer tree shows them, e.g. backbone.layer4 or head"
        )


def apply_freeze_map(model: nn.Module, mapping: dict[str, bool]) -> None:
    """Set ``requires_grad`` by subtree, shallowest names first so deeper ones win."""
    check_freeze_names(model, mapping)
    modules = dict(model.named_modules())
    for name in sorted(mapping, key=_depth_key):
        for param in modules[name].parameters():
            param.requires_grad_(bool(mapping[name]))


def apply_freeze(model: nn.Module, preset: str, overrides: dict[str, bool] | None = None) -> dict[str, bool]:
    """Apply a preset plus overrides; returns the map that was applied."""
    mapping = freeze_map(model, preset, overrides)
    apply_freeze_map(model, mapping)
    return mapping


def set_train_mode(model: nn.Module) -> None:
    """Train mode for modules that learn; eval mode for every fully frozen subtree.

    Frozen BatchNorm layers thus keep their running statistics untouched, and dropout
    inside a frozen block stays off.
    """
    model.train()
    for module in model.modules():
        flags = [p.requires_grad for p in module.parameters()]
        if flags and not any(flags):
            module.eval()


def trainable_state(model: nn.Module) -> dict[str, bool]:
    """A compact map that reproduces the model's current trainable state.

    Lists the shallowest modules whose parameters are uniformly trainable or frozen; a
    mixed module is listed by the state of its own parameters and its children follow
    (deeper names win when the map is applied).
    """
    result: dict[str, bool] = {}

    def visit(name: str, module: nn.Module) -> None:
        flags = {p.requires_grad for p in module.parameters()}
        if not flags:
            return
        if len(flags) == 1:
            result[name] = flags.pop()
            return
        own = {p.requires_grad for p in module.parameters(recurse=False)}
        if len(own) == 1:
            result[name] = own.pop()
        for child_name, child in module.named_children():
            visit(f"{name}.{child_name}" if name else child_name, child)

    visit("", model)
    return result
