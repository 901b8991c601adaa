"""The optimiser, learning-rate schedule and gradient scaler of a run, built from its
configuration and restored from a checkpoint's training state.

Every parameter stays in the optimiser (backbone and head in two groups, the backbone's
learning rate scaled); a frozen one simply has no gradient, so a freeze change mid-run
needs no new optimiser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import RunConfig


def make_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    head = [p for p in model.head.parameters()]
    backbone = [p for p in model.backbone.parameters()]
    lr = cfg.train.lr
    groups = [
        {"params": backbone, "lr": lr * cfg.train.backbone_lr_mult, "name": "backbone"},
        {"params": head, "lr": lr, "name": "head"},
    ]
    wd = cfg.train.weight_decay
    if cfg.train.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd)
    if cfg.train.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.train.momentum, weight_decay=wd)


def make_scheduler(cfg: RunConfig, optimizer: torch.optim.Optimizer):
    if cfg.train.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.train.epochs)
    if cfg.train.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=cfg.train.step_size, gamma=cfg.train.gamma
        )
    return None


@dataclass
class Optimisation:
    """What changes the weights: optimiser, schedule (or None) and gradient scaler."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler

    @classmethod
    def build(cls, cfg: RunConfig, model: nn.Module, device: torch.device, precision: str) -> Optimisation:
        optimizer = make_optimizer(cfg, model)
        return cls(
            optimizer,
            make_scheduler(cfg, optimizer),
            torch.amp.GradScaler(device.type, enabled=(precision == "fp16")),
        )

    @property
    def lr(self) -> float:
        """The head's learning rate now (the one the plots and metrics show)."""
        return self.optimizer.param_groups[-1]["lr"]

    def end_epoch(self) -> None:
        if self.scheduler is not None:
            self.scheduler.step()

    def state(self) -> dict[str, Any]:
        """The entries of a checkpoint's training state that restore these."""
        state: dict[str, Any] = {"optimizer": self.optimizer.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        return state

    def restore(self, state: dict[str, Any], epochs: int) -> None:
        """Continue from a checkpoint's training state; ``epochs`` is the run's length now."""
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
            if isinstance(self.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
                self.scheduler.T_max = epochs  # --epochs may have lengthened the run
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
