"""One run on several processes, started by PyTorch's own launcher (torchrun).

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT in each worker's
environment; :func:`start` joins the process group they describe (nccl on CUDA, gloo on
the CPU) and returns the :class:`Distributed` the engine consults. Without that
environment it returns the single-process one, whose every method is a no-op, so the
engine has one code path.

How a run is split:

* Training: each epoch's order (from the seed and the epoch alone) is dealt out
  ``order[rank::world]``; every image is used once per epoch, by one process. Each process
  takes ``ceil(batch_size / world)`` images a step, so a step covers the same positions of
  the order as one step of a single process, and the gradients DistributedDataParallel
  averages are those of that batch. Shards differ by at most one image; DDP's ``Join``
  covers a process that runs out of batches first.
* Validation, the test split and feature extraction are dealt out the same way and their
  outputs gathered, so each image is scored or extracted once and every process holds the
  whole result (they all decide early stopping and the best epoch alike).
* Only rank 0 writes the run folder and keeps the feature cache for later runs.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import UserError


#: Batches each process extracts before the processes trade their features: a distributed
#: extraction holds one round outside the feature cache's budget, and trades that often.
GATHER_ROUND_BATCHES = 16


class DistributedSetupError(UserError):
    """The processes of a distributed run cannot agree on what to train."""


def launched_by_torchrun() -> bool:
    """Whether this process is one of several workers that torchrun started."""
    return (
        torch.distributed.is_available()
        and torch.distributed.is_torchelastic_launched()
        and int(os.environ.get("WORLD_SIZE", "1")) > 1
    )


#: What torchrun sets in each worker's environment (with TORCHELASTIC_RUN_ID).
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def in_torchrun_environment() -> bool:
    """Whether torchrun started this process, one worker or several."""
    return (
        torch.distributed.is_available()
        and torch.distributed.is_torchelastic_launched()
        and all(name in os.environ for name in TORCHRUN_VARIABLES)
    )


def torchrun_command(train_args: str) -> str:
    """The command line that starts ``desktop-tl train`` with ``train_args`` on N processes."""
    return f"torchrun --nproc-per-node N -m desktop_tl train --distributed {train_args}"


def not_launched_message(train_args: str) -> str:
    """Why a ``--distributed`` run cannot start outside torchrun, and how to start it."""
    missing = [name for name in ("TORCHELASTIC_RUN_ID", *TORCHRUN_VARIABLES) if name not in os.environ]
    return (
        "--distributed trains as one of the processes PyTorch's launcher starts, and this "
        f"process was not started by it ({', '.join(missing)} not set). Start the run with\n"
        f"    {torchrun_command(train_args)}\n"
        "where N is the number of processes on this machine (one per GPU, or 2 or more on "
        "the CPU); on several machines add --nnodes M --rdzv-backend c10d --rdzv-endpoint "
        "HOST:29500 on each. To train in this one process instead, leave out --distributed"
    )


def environment_rank() -> int:
    """This worker's rank as torchrun set it (0 outside torchrun), before any set-up."""
    return int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0


def restarted_by_torchrun() -> bool:
    """Whether torchrun started these workers again after one of them died (--max-restarts)."""
    return launched_by_torchrun() and int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def backend_for(device: torch.device) -> str:
    """nccl between GPUs, gloo on the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


class LoopForward(nn.Module):
    """The loop's forward (frozen prefix, trainable stages, head) as one module, so that
    DistributedDataParallel sees the model's parameters and hooks their gradients."""

    def __init__(self, model: nn.Module, forward) -> None:
        super().__init__()
        self.model = model
        self._forward = forward

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        return self._forward(x, start)


@dataclass
class Distributed:
    """This process's place in the run; with ``world_size`` 1 every method is a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device | None = None  # the device this process trains on, when started

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run folder."""
        return self.rank == 0

    def describe(self) -> str:
        host = socket.gethostname()
        return f"{self.world_size} processes ({self.backend}), this one rank {self.rank} on {host}"

    def close(self) -> None:
        if self.active and torch.distributed.is_initialized():
            # What still holds the group (a DDP wrapper in a reference cycle) goes first, so
            # that gloo's threads end here: left to interpreter shutdown they can abort the
            # process ("terminate called without an active exception") after a finished run.
            gc.collect()
            torch.distributed.destroy_process_group()

    # ---- splitting the work

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This process's share of ``order``: every ``world_size``-th item from its rank."""
        return order[self.rank :: self.world_size] if self.active else order

    def batch_size(self, batch_size: int) -> int:
        """Images per process and step, so that a step of all of them is ``batch_size``."""
        return max(1, math.ceil(batch_size / self.world_size))

    def wrap(self, model: nn.Module, forward) -> nn.Module | None:
        """The DistributedDataParallel module that trains ``model`` through ``forward``
        (``forward(x, start)``); None in a single process."""
        if not self.active:
            return None
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device] if self.device is not None and self.device.type == "cuda" else None
        return DistributedDataParallel(LoopForward(model, forward), device_ids=ids)

    def join(self, ddp: nn.Module | None):
        """Lets a process whose shard ran out of batches shadow the others' gradient
        reductions until they finish the epoch too."""
        if ddp is None:
            return contextlib.nullcontext()
        from torch.distributed.algorithms.join import Join

        return Join([ddp])

    # ---- agreeing

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (picklable), on every process."""
        if not self.active:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value`` (picklable), in rank order."""
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, value)
        return out

    def sum(self, values: list[float]) -> list[float]:
        """The element-wise sum of ``values`` over the processes."""
        if not self.active:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    def all_true(self, flag: bool) -> bool:
        return all(self.gather(bool(flag)))

    def check_everywhere(self, problem: str | None) -> None:
        """Raise on every process when any process found ``problem`` (a message, or None),
        naming each rank and host that did, so a bad node fails at once, not in a hang."""
        problems = self.gather((self.rank, socket.gethostname(), problem))
        bad = [f"rank {rank} (on {host}): {text}" for rank, host, text in problems if text]
        if bad:
            raise DistributedSetupError("; ".join(bad))

    def broadcast_module(self, module: nn.Module) -> None:
        """Give every process rank 0's parameters and buffers of ``module``."""
        if not self.active:
            return
        with torch.no_grad():
            for tensor in module.state_dict().values():
                buffer = tensor.contiguous()  # channels_last weights are not contiguous
                torch.distributed.broadcast(buffer, src=0)
                if buffer is not tensor:
                    tensor.copy_(buffer)

    # ---- gathering

    def coverage(self, used: list[torch.Tensor]) -> tuple[str, str]:
        """(level, message): how the training items of an epoch were spread over the
        processes; a warning when any item was used more than once."""
        local = torch.cat(used).tolist() if used else []
        shares = self.gather(local)
        every = [item for share in shares for item in share]
        distinct = len(set(every))
        counts = " + ".join(str(len(share)) for share in shares)
        if distinct == len(every):
            return "info", (
                f"{distinct} training images, each used once, over {self.world_size} processes ({counts})"
            )
        return "warning", (
            f"{len(every) - distinct} of {distinct} training images were used more "
            f"than once over {self.world_size} processes ({counts})"
        )

    def gather_outputs(self, outputs: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
        """Per-item outputs (equal-length CPU tensors, ``indices`` among them) of every
        process, joined and put in item order; None when no process had any."""
        if not self.active:
            return outputs
        parts = [part for part in self.gather(outputs) if part is not None]
        if not parts:
            return None
        joined = {name: torch.cat([part[name] for part in parts]) for name in parts[0]}
        order = torch.argsort(joined["indices"])
        return {name: value[order] for name, value in joined.items()}

    def shared_extraction(self, extract, count: int, *, batch_items: int, rows_per_item: int = 1):
        """Batches of (features, labels, item indices) over items ``0..count-1``, in item
        order with each item's ``rows_per_item`` rows together, where this process ran
        ``extract`` on its share of the items only.

        ``extract(share)`` is called once with this process's item indices and yields
        (features, labels, positions in ``share``), a row per feature, each batch holding
        whole items of at most ``batch_items``. The processes trade what they made every
        ``GATHER_ROUND_BATCHES`` batches, so what is held outside the feature cache (and
        its memory budget) is one round's, not a whole share's: round ``r`` covers items
        ``r * round * world`` up to the next round's, the same on every process."""
        share = self.shard(torch.arange(count))
        round_items = max(1, batch_items) * GATHER_ROUND_BATCHES
        rounds = math.ceil(math.ceil(count / self.world_size) / round_items)
        step = max(1, batch_items) * rows_per_item
        made = iter(extract(share))
        ahead = None  # a batch of the next round, read while finishing this one
        for r in range(rounds):
            feats, labels, rows = [], [], []
            while True:
                batch = ahead if ahead is not None else next(made, None)
                ahead = None
                if batch is None:
                    break
                features, batch_labels, positions = batch
                if int(positions[0]) // round_items > r:  # batches never straddle a round
                    ahead = batch
                    break
                feats.append(features.cpu())
                labels.append(batch_labels.cpu())
                # one number per row: an item's rows stay together and in their order
                rows.append(share[positions] * rows_per_item + torch.arange(len(positions)) % rows_per_item)
            local = None
            if feats:
                local = {
                    "features": torch.cat(feats),
                    "labels": torch.cat(labels),
                    "indices": torch.cat(rows),
                }
            joined = self.gather_outputs(local)
            if joined is None:
                continue
            for start in range(0, len(joined["indices"]), step):
                end = start + step
                yield (
                    joined["features"][start:end],
                    joined["labels"][start:end],
                    joined["indices"][start:end] // rows_per_item,
                )


SINGLE = Distributed()


def _restart_store() -> dict[str, Any]:
    """After torchrun restarted the workers, a store whose keys carry the restart count.

    The agent's store keeps the addresses the dead workers published, and a new worker can
    read one of those before its peer replaces it (gloo then fails with "Connection
    refused"); keys of this attempt's own cannot be stale. The first start uses the
    environment as it is."""
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if restart == 0:
        return {}
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = torch.distributed.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world,
        is_master=not agent_store and rank == 0,
        multi_tenant=not agent_store,
    )
    return {
        "store": torch.distributed.PrefixStore(f"desktop_tl/restart_{restart}", store),
        "rank": rank,
        "world_size": world,
    }


def start(device_choice: str) -> Distributed:
    """Join the process group torchrun describes in the environment; the single-process
    :data:`SINGLE` when this process was not started by torchrun (or alone)."""
    if not launched_by_torchrun():
        return SINGLE
    from .device import resolve_device

    device = resolve_device(device_choice)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "mps":
        raise DistributedSetupError(
            "a distributed run trains on CUDA GPUs or on the CPU, not on "
            "Apple MPS; set [train] device to cpu or cuda"
        )
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DistributedSetupError(
                f"rank {os.environ.get('RANK')} has local rank {local_rank} but this machine shows "
                f"{torch.cuda.device_count()} GPU(s); start at most that many processes per node "
                "(torchrun --nproc-per-node)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = backend_for(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend, **_restart_store())
    return Distributed(
        torch.distributed.get_rank(), torch.distributed.get_world_size(), local_rank, backend, device
    )
