"""The backbone as a chain of stages, and the frozen stretch at its start run fast.

Everything before the first trainable stage is a fixed function while it stays frozen:
it runs under ``inference_mode`` and autocast, as one module with every BatchNorm that
follows a convolution folded into it (checked against the plain stages on real inputs).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .device import autocast
from .layers import backbone_chain, set_train_mode


def fold_batchnorm(modules: list[nn.Module]) -> nn.Module | None:
    """``nn.Sequential(*modules)`` for inference with every BatchNorm that directly follows
    a convolution folded into it: one op fewer per layer (on EfficientNet-Lite0 on a CPU,
    about a fifth less time). The originals are untouched (the folded convolutions are
    copies). ``None`` when nothing folds or the modules cannot be traced (control flow
    that depends on the data)."""
    from torch import fx
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    class LeafConvTracer(fx.Tracer):  # convolution subclasses (e.g. "same" padding) stay whole
        def is_leaf_module(self, module: nn.Module, name: str) -> bool:
            return isinstance(module, (nn.Conv2d, nn.BatchNorm2d)) or super().is_leaf_module(module, name)

    sequence = nn.Sequential(*modules).eval()
    try:
        graph = LeafConvTracer().trace(sequence)
        folded = fx.GraphModule(sequence, graph)
    except Exception:
        return None
    targets = dict(folded.named_modules())
    changed = False
    for node in list(folded.graph.nodes):
        if node.op != "call_module" or type(targets.get(node.target)) is not nn.BatchNorm2d:
            continue
        source = node.args[0] if node.args else None
        if not isinstance(source, fx.Node) or source.op != "call_module" or len(source.users) != 1:
            continue
        conv, bn = targets.get(source.target), targets[node.target]
        if not isinstance(conv, nn.Conv2d) or bn.running_mean is None or len(node.args) != 1 or node.kwargs:
            continue
        parent_name, _, attr = source.target.rpartition(".")
        parent = folded.get_submodule(parent_name) if parent_name else folded
        setattr(parent, attr, fuse_conv_bn_eval(conv.eval(), bn.eval()))
        node.replace_all_uses_with(source)
        folded.graph.erase_node(node)
        changed = True
    if not changed:
        return None
    folded.graph.lint()
    folded.recompile()
    folded.delete_all_unused_submodules()
    return folded.eval()


class ChainRunner:
    """Runs a stretch of chain stages in order (a callable without a reference to its
    owner, so that the owner is freed, with its caches and workers, when a run ends)."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.modules = modules

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.modules:
            x = module(x)
        return x


class FrozenPrefix:
    """The model's backbone chain: which stage trains first, and running stretches of it."""

    def __init__(
        self, model: nn.Module, device: torch.device, precision: str, log: Callable[[str, str], None]
    ) -> None:
        chain = backbone_chain(model)
        self.model = model
        self.modules = [module for _, module in chain]
        self.names = [name for name, _ in chain]
        self.device = device
        self.precision = precision
        self._log = log
        # (start, stop) -> (runner, "unchecked" | "folded" | "plain" | "unprepared")
        self._runners: dict[tuple[int, int], tuple[Callable[[torch.Tensor], torch.Tensor], str]] = {}
        self._row_numel: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.modules)

    def first_trainable(self) -> int:
        for index, module in enumerate(self.modules):
            if any(p.requires_grad for p in module.parameters()):
                return index
        return len(self.modules)

    def set_modes(self) -> None:
        """Train mode where parameters learn; the frozen prefix (parameter-free stages such
        as dropout included) in eval mode, so it is the fixed function a cache holds."""
        set_train_mode(self.model)
        self.eval_stages(self.first_trainable())

    def eval_stages(self, stop: int) -> None:
        for module in self.modules[:stop]:
            module.eval()  # frozen stages: eval mode is theirs anyway (no statistics updates)

    def forget_runners(self) -> None:
        """After a freeze change: a stage frozen again may have been trained meanwhile."""
        self._runners.clear()

    def row_numel(self, k: int, crop: int) -> int:
        """Values per image in the output of stage ``k - 1`` (found once by running the
        frozen stages on one blank ``crop`` x ``crop`` image)."""
        if k not in self._row_numel:
            probe = torch.zeros(1, 3, crop, crop, device=self.device)
            self.eval_stages(k)
            with torch.inference_mode():
                self._row_numel[k] = int(self.run(probe, 0, k).numel())
        return self._row_numel[k]

    def run(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for module in self.modules[start:stop]:
            x = module(x)
        return x

    def prepare(self, start: int, stop: int) -> None:
        """Fold the BatchNorm of stages ``start:stop`` now, ahead of running them.

        Tracing patches ``nn.Module.__call__`` for every thread while it runs, so it must
        not overlap a loader decoding (and transforming) images on other threads: callers
        prepare a stretch before a pass over images starts. A stretch run unprepared (a
        freeze change mid-epoch) runs unfolded until it is prepared.
        """
        key = (start, stop)
        if stop <= start or (key in self._runners and self._runners[key][1] != "unprepared"):
            return
        modules = self.modules[start:stop]
        for module in modules:
            module.eval()
        folded = fold_batchnorm(modules)
        if folded is not None and self.device.type != "mps":
            folded = folded.to(memory_format=torch.channels_last)
        self._runners[key] = (folded, "unchecked") if folded is not None else (ChainRunner(modules), "plain")

    def prepare_from(self, start: int) -> None:
        """:meth:`prepare` the frozen stretch from stage ``start`` to the first trainable one."""
        self.prepare(start, max(start, self.first_trainable()))

    def run_frozen(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Frozen stages ``start:stop`` under inference_mode and autocast, as one module
        with BatchNorm folded into the convolutions where that computes the same."""
        key = (start, stop)
        runner, state = self._runners.get(key, (None, None))
        if runner is None:
            for module in self.modules[start:stop]:
                module.eval()
            runner, state = self._runners[key] = (ChainRunner(self.modules[start:stop]), "unprepared")
        elif state == "unchecked":
            runner = self._checked(runner, x, start, stop)
        with torch.inference_mode(), autocast(self.device, self.precision):
            return runner(x)

    def _checked(self, folded: nn.Module, sample: torch.Tensor, start: int, stop: int):
        """The folded stages if they compute what the plain ones do on real inputs (fp32)."""
        plain = ChainRunner(self.modules[start:stop])
        with torch.inference_mode():
            probe = sample[:2].float() if sample.is_floating_point() else sample[:2]
            expected = plain(probe).float()
            error = (folded(probe).float() - expected).norm() / expected.norm().clamp_min(1e-12)
        if not bool(torch.isfinite(error)) or float(error) > 1e-3:
            self._log(
                "info",
                f"frozen stages {self.names[start]}..{self.names[stop - 1]} "
                "run without BatchNorm folding (it changed their output)",
            )
            self._runners[(start, stop)] = (plain, "plain")
            return plain
        self._runners[(start, stop)] = (folded, "folded")
        return folded

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of images or cached rows, on the device in the layout and dtype compute wants."""
        x = x.to(self.device, non_blocking=True)
        if x.is_floating_point() and x.dtype != torch.float32:
            # cached rows: fp16 features feed fp32 (or CPU) compute as fp32
            if self.precision == "fp32" or (x.dtype == torch.float16 and self.device.type == "cpu"):
                x = x.float()
        if x.dim() == 4 and self.device.type != "mps":
            x = x.contiguous(memory_format=torch.channels_last)
        return x
